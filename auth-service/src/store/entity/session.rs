//! `sessions`: one row per sign-in; revoking it ends every token it issued.
use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// Key that derives each next refresh token from the current one (see `sessions.rs`).
    pub rotation_secret: Vec<u8>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub last_used_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    /// The generation of the session's current refresh token (see `rules/sessions.rs`).
    pub refresh_generation: i64,
    /// When the previous generation was exchanged for the current one.
    pub refreshed_at: Option<DateTimeUtc>,
    /// The key that signed the access token issued at that exchange.
    pub refreshed_kid: Option<String>,
    /// The client's address at sign-in or the last refresh; erased at sign-out.
    pub client_address: Option<String>,
    /// The client's user agent at sign-in or the last refresh; erased at sign-out.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id"
    )]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
