//! SeaORM migrations, one migrator per service: each service owns its own tables and its own
//! migration history table, so both can share one PostgreSQL database or use separate ones.
//! The same migrations run on SQLite and PostgreSQL. Services run them at start-up; the
//! `migrate` binary runs them by hand (`up`, `down`, `status`).

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DatabaseConnection, Statement},
};
use std::collections::HashSet;

mod auth;
pub mod cli;
mod task;

/// Adds `columns` to `table`, one statement per column: SQLite's ALTER TABLE adds one at a
/// time.
async fn add_columns(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    columns: impl IntoIterator<Item = ColumnDef>,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    for column in columns {
        let mut alter = Table::alter();
        alter.table(table.clone()).add_column(column);
        manager.alter_table(alter).await?;
    }
    Ok(())
}

/// Creates `table` and then `index` on it.
async fn create_indexed_table(
    manager: &SchemaManager<'_>,
    table: TableCreateStatement,
    index: IndexCreateStatement,
) -> Result<(), DbErr> {
    manager.create_table(table).await?;
    manager.create_index(index).await
}

/// Creates each index `(name, columns, unique)` on `table`.
async fn create_indexes<C: IntoIden + Copy>(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    indexes: &[(&str, &[C], bool)],
) -> Result<(), DbErr> {
    let table = table.into_iden();
    for (name, columns, unique) in indexes {
        let mut index = Index::create();
        index.if_not_exists().name(*name).table(table.clone());
        for column in *columns {
            index.col(*column);
        }
        if *unique {
            index.unique();
        }
        manager.create_index(index.to_owned()).await?;
    }
    Ok(())
}

/// Drops `columns` from `table`, one statement per column (as [`add_columns`] added them).
async fn drop_columns<C: IntoIden>(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    columns: impl IntoIterator<Item = C>,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    for column in columns {
        let mut alter = Table::alter();
        alter.table(table.clone()).drop_column(column);
        manager.alter_table(alter).await?;
    }
    Ok(())
}

/// The auth-service's tables: users, sessions, refresh tokens, signing keys, sign-in throttle,
/// and the outbox of account deletions.
pub struct AuthMigrator;

#[async_trait::async_trait]
impl MigratorTrait for AuthMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(auth::m20261123_000001_create_auth_tables::Migration),
            Box::new(auth::m20261203_000001_refresh_generations::Migration),
            Box::new(auth::m20261203_000002_session_devices::Migration),
            Box::new(auth::m20261203_000003_password_versions::Migration),
            Box::new(auth::m20261203_000004_account_deletions::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "auth_migrations".into_iden()
    }
}

/// The task-service's tables: tasks, tombstones of deleted accounts, and each owner's change
/// log.
pub struct TaskMigrator;

#[async_trait::async_trait]
impl MigratorTrait for TaskMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(task::m20261123_000001_create_tasks::Migration),
            Box::new(task::m20261203_000001_purged_owners::Migration),
            Box::new(task::m20261204_000001_task_changes::Migration),
            Box::new(task::m20261204_000002_task_change_triggers::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "task_migrations".into_iden()
    }
}

/// What a service does with its schema at start-up: applies `M`'s pending migrations when
/// `migrate` is true; otherwise only checks, without writing, that every one is applied (for
/// a database role that may not change the schema; `service` names it in the message).
pub async fn prepare<M: MigratorTrait>(
    db: DatabaseConnection,
    migrate: bool,
    service: &str,
) -> Result<(), DbErr> {
    if migrate {
        return M::up(&db, None).await;
    }
    let table = M::migration_table_name().to_string();
    let run_it = format!(
        "run `migrate --service {service} up` as the schema's owner first, or set \
         MIGRATE_ON_START=true if this database role may change the schema"
    );
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT version FROM {table}"),
        ))
        .await
        .map_err(|e| DbErr::Custom(format!("cannot read {table} ({e}): {run_it}")))?;
    let applied: HashSet<String> = rows
        .iter()
        .filter_map(|row| row.try_get::<String>("", "version").ok())
        .collect();
    let missing: Vec<String> = M::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .filter(|name| !applied.contains(name))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DbErr::Custom(format!(
            "the schema is not up to date ({} not applied): {run_it}",
            missing.join(", ")
        )))
    }
}
