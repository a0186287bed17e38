use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .if_not_exists()
                    // UUIDv7: time-ordered, so `ORDER BY id DESC` is newest first and the
                    // list's keyset pagination needs no second column.
                    .col(uuid(Tasks::Id).primary_key())
                    // The user id from the access token's `sub`; users live in the
                    // auth-service's database, so there is no foreign key.
                    .col(uuid(Tasks::OwnerId))
                    .col(string_len(Tasks::Title, 200))
                    .col(text(Tasks::Description))
                    .col(boolean(Tasks::Completed))
                    .col(timestamp_with_time_zone_null(Tasks::CompletedAt))
                    .col(timestamp_with_time_zone(Tasks::CreatedAt))
                    .col(timestamp_with_time_zone(Tasks::UpdatedAt))
                    // Bumped by every write; the etag is derived from it.
                    .col(big_integer(Tasks::Version))
                    // The client's idempotency key of CreateTask (AIP-155), if it sent one.
                    .col(uuid_null(Tasks::RequestId))
                    .to_owned(),
            )
            .await?;
        let indexes: [(&str, &[Tasks], bool); 3] = [
            ("idx_tasks_owner_id", &[Tasks::OwnerId, Tasks::Id], false),
            (
                "idx_tasks_owner_completed_id",
                &[Tasks::OwnerId, Tasks::Completed, Tasks::Id],
                false,
            ),
            (
                "idx_tasks_owner_request_id",
                &[Tasks::OwnerId, Tasks::RequestId],
                true,
            ),
        ];
        crate::create_indexes(manager, Tasks::Table, &indexes).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tasks::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Tasks {
    Table,
    Id,
    OwnerId,
    Title,
    Description,
    Completed,
    CompletedAt,
    CreatedAt,
    UpdatedAt,
    Version,
    RequestId,
}
