//! The outbox of account deletions: written in the same transaction that deletes the account,
//! read by the delivery worker, which asks the task-service to purge the account's tasks and
//! deletes the row once it has. A row is claimed (`claimed_until`, `claim_token`) by one
//! replica at a time, and only the claim's holder settles it; failed deliveries wait
//! `next_attempt_at`, doubling.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The longest kept delivery error, in characters.
const LAST_ERROR_MAX_CHARS: u32 = 512;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(AccountDeletions::Table)
            .if_not_exists()
            .col(uuid(AccountDeletions::Id).primary_key())
            .col(uuid(AccountDeletions::UserId))
            .col(timestamp_with_time_zone(AccountDeletions::RequestedAt))
            .col(integer(AccountDeletions::Attempts).default(0))
            .col(timestamp_with_time_zone(AccountDeletions::NextAttemptAt))
            .col(timestamp_with_time_zone_null(
                AccountDeletions::ClaimedUntil,
            ))
            .col(uuid_null(AccountDeletions::ClaimToken))
            .col(string_len_null(
                AccountDeletions::LastError,
                LAST_ERROR_MAX_CHARS,
            ))
            .to_owned();
        let index = Index::create()
            .name("idx_account_deletions_next_attempt_at")
            .table(AccountDeletions::Table)
            .col(AccountDeletions::NextAttemptAt)
            .to_owned();
        crate::create_indexed_table(manager, table, index).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccountDeletions::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AccountDeletions {
    Table,
    Id,
    UserId,
    RequestedAt,
    Attempts,
    NextAttemptAt,
    ClaimedUntil,
    ClaimToken,
    LastError,
}
