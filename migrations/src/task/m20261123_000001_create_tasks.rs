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
        let indexes = [
            ("idx_tasks_owner_id", vec![Tasks::OwnerId, Tasks::Id], false),
            (
                "idx_tasks_owner_completed_id",
                vec![Tasks::OwnerId, Tasks::Completed, Tasks::Id],
                false,
            ),
            (
                "idx_tasks_owner_request_id",
                vec![Tasks::OwnerId, Tasks::RequestId],
                true,
            ),
        ];
        for (name, columns, unique) in indexes {
            let mut index = Index::create();
            index.if_not_exists().name(name).table(Tasks::Table);
            for column in columns {
                index.col(column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tasks::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
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
