//! Live tasks: each owner's change log, and tasks keyed by owner first.
//!
//! - `task_changes`: one row per committed change of a task (the task as the change left it,
//!   or only its id for a delete), at a position that counts up per owner without gaps.
//!   WatchTasks reads it; it is written in the same transaction as the change.
//! - `task_change_heads`: per owner, the last position given out (`head`, whose row lock
//!   makes an owner's writers take positions one at a time, so a position is never visible
//!   before a smaller one) and the last position swept away (`floor`): the log holds
//!   `(floor, head]`.
//! - `tasks` gets the primary key `(owner_id, id)`, so that every table of the task-service
//!   can be distributed by owner without a redesign. PostgreSQL swaps the key in place;
//!   SQLite cannot change a primary key, so the table is rebuilt with its rows.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In one transaction on SQLite too (its DDL is transactional): a rebuild cut short
    /// leaves the old table as it was.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rekey_tasks(manager, &[Tasks::OwnerId, Tasks::Id]).await?;
        // The primary key now serves every lookup `idx_tasks_owner_id (owner_id, id)` did.
        manager
            .drop_index(
                Index::drop()
                    .name("idx_tasks_owner_id")
                    .table(Tasks::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TaskChangeHeads::Table)
                    .if_not_exists()
                    .col(uuid(TaskChangeHeads::OwnerId).primary_key())
                    .col(big_integer(TaskChangeHeads::Head))
                    .col(big_integer(TaskChangeHeads::Floor))
                    .to_owned(),
            )
            .await?;
        let changes = Table::create()
            .table(TaskChanges::Table)
            .if_not_exists()
            .col(uuid(TaskChanges::OwnerId))
            .col(big_integer(TaskChanges::Position))
            // 1 created, 2 updated, 3 deleted.
            .col(small_integer(TaskChanges::Kind))
            .col(uuid(TaskChanges::TaskId))
            .col(timestamp_with_time_zone(TaskChanges::ChangedAt))
            // The task as the change left it; NULL for a delete.
            .col(string_len_null(TaskChanges::Title, 200))
            .col(text_null(TaskChanges::Description))
            .col(boolean_null(TaskChanges::Completed))
            .col(timestamp_with_time_zone_null(TaskChanges::CompletedAt))
            .col(timestamp_with_time_zone_null(TaskChanges::CreatedAt))
            .col(timestamp_with_time_zone_null(TaskChanges::UpdatedAt))
            .col(big_integer_null(TaskChanges::Version))
            .primary_key(
                Index::create()
                    .col(TaskChanges::OwnerId)
                    .col(TaskChanges::Position),
            )
            .to_owned();
        // The retention sweep finds old changes by time.
        let by_time = Index::create()
            .name("idx_task_changes_changed_at")
            .table(TaskChanges::Table)
            .col(TaskChanges::ChangedAt)
            .to_owned();
        crate::create_indexed_table(manager, changes, by_time).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskChanges::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TaskChangeHeads::Table).to_owned())
            .await?;
        rekey_tasks(manager, &[Tasks::Id]).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_owner_id")
                    .table(Tasks::Table)
                    .col(Tasks::OwnerId)
                    .col(Tasks::Id)
                    .to_owned(),
            )
            .await
    }
}

/// Gives `tasks` the primary key `key`, keeping its rows and its other indexes.
async fn rekey_tasks(manager: &SchemaManager<'_>, key: &[Tasks]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if manager.get_database_backend() == DatabaseBackend::Postgres {
        let columns = key
            .iter()
            .map(|c| format!("\"{}\"", c.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        db.execute_unprepared(&format!(
            "ALTER TABLE tasks DROP CONSTRAINT tasks_pkey, ADD PRIMARY KEY ({columns})"
        ))
        .await?;
        return Ok(());
    }
    // SQLite: a new table with the new key, the rows copied over, the old one replaced.
    let mut primary = Index::create();
    for column in key {
        primary.col(*column);
    }
    manager
        .create_table(
            Table::create()
                .table(TasksRekeyed::Table)
                .col(uuid(Tasks::Id))
                .col(uuid(Tasks::OwnerId))
                .col(string_len(Tasks::Title, 200))
                .col(text(Tasks::Description))
                .col(boolean(Tasks::Completed))
                .col(timestamp_with_time_zone_null(Tasks::CompletedAt))
                .col(timestamp_with_time_zone(Tasks::CreatedAt))
                .col(timestamp_with_time_zone(Tasks::UpdatedAt))
                .col(big_integer(Tasks::Version))
                .col(uuid_null(Tasks::RequestId))
                .primary_key(&mut primary)
                .to_owned(),
        )
        .await?;
    let columns = Tasks::COLUMNS
        .iter()
        .map(|c| format!("\"{}\"", c.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    db.execute_unprepared(&format!(
        "INSERT INTO tasks_rekeyed ({columns}) SELECT {columns} FROM tasks"
    ))
    .await?;
    manager
        .drop_table(Table::drop().table(Tasks::Table).to_owned())
        .await?;
    manager
        .rename_table(
            Table::rename()
                .table(TasksRekeyed::Table, Tasks::Table)
                .to_owned(),
        )
        .await?;
    // Dropping the old table dropped its indexes: the ones every key keeps.
    let indexes: [(&str, &[Tasks], bool); 2] = [
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

impl Tasks {
    /// Every column, in the order the table was created with.
    const COLUMNS: [Tasks; 10] = [
        Tasks::Id,
        Tasks::OwnerId,
        Tasks::Title,
        Tasks::Description,
        Tasks::Completed,
        Tasks::CompletedAt,
        Tasks::CreatedAt,
        Tasks::UpdatedAt,
        Tasks::Version,
        Tasks::RequestId,
    ];
}

#[derive(DeriveIden)]
enum TasksRekeyed {
    Table,
}

#[derive(DeriveIden)]
enum TaskChangeHeads {
    Table,
    OwnerId,
    Head,
    Floor,
}

#[derive(DeriveIden)]
enum TaskChanges {
    Table,
    OwnerId,
    Position,
    Kind,
    TaskId,
    ChangedAt,
    Title,
    Description,
    Completed,
    CompletedAt,
    CreatedAt,
    UpdatedAt,
    Version,
}
