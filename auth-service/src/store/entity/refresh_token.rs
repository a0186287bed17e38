//! `refresh_tokens`: every refresh token a session was given, by SHA-256 hash only.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    pub session_id: Uuid,
    pub created_at: DateTimeUtc,
    /// When it was exchanged by Refresh; a spent token presented after the grace window
    /// revokes its session.
    pub spent_at: Option<DateTimeUtc>,
    /// The key that signed the access token issued when it was spent.
    pub spent_kid: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
