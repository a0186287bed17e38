//! `account_deletions`: the outbox of deleted accounts whose tasks the task-service has not
//! purged yet.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_deletions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub requested_at: DateTimeUtc,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    /// A replica delivering it holds it until then.
    pub claimed_until: Option<DateTimeUtc>,
    /// Names the claim: only its holder settles the row.
    pub claim_token: Option<Uuid>,
    /// Why the last delivery failed, for operators.
    pub last_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
