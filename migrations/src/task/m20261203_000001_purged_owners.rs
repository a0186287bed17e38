//! Tombstones of deleted accounts: when the auth-service deletes an account, the task-service
//! deletes its tasks and remembers the owner until every access token the account could still
//! hold has expired (`forget_after`), so none of them can create a task again. CreateTask reads
//! it inside its transaction.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table(PurgedOwners::Table)
            .if_not_exists()
            .col(uuid(PurgedOwners::OwnerId).primary_key())
            .col(timestamp_with_time_zone(PurgedOwners::PurgedAt))
            .col(timestamp_with_time_zone(PurgedOwners::ForgetAfter))
            .to_owned();
        let index = Index::create()
            .name("idx_purged_owners_forget_after")
            .table(PurgedOwners::Table)
            .col(PurgedOwners::ForgetAfter)
            .to_owned();
        crate::create_indexed_table(manager, table, index).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PurgedOwners::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PurgedOwners {
    Table,
    OwnerId,
    PurgedAt,
    ForgetAfter,
}
