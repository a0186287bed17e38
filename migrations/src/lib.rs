//! SeaORM migrations, one migrator per service: each service owns its own tables and its own
//! migration history table, so both can share one PostgreSQL database or use separate ones.
//! The same migrations run on SQLite and PostgreSQL. Services run them at start-up; the
//! `migrate` binary runs them by hand (`up`, `down`, `status`).

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;

mod auth;
pub mod cli;
mod task;

/// The auth-service's tables: users, sessions, refresh tokens, signing keys, sign-in throttle.
pub struct AuthMigrator;

#[async_trait::async_trait]
impl MigratorTrait for AuthMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(
            auth::m20261123_000001_create_auth_tables::Migration,
        )]
    }

    fn migration_table_name() -> DynIden {
        "auth_migrations".into_iden()
    }
}

/// The task-service's tables: tasks.
pub struct TaskMigrator;

#[async_trait::async_trait]
impl MigratorTrait for TaskMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(task::m20261123_000001_create_tasks::Migration)]
    }

    fn migration_table_name() -> DynIden {
        "task_migrations".into_iden()
    }
}
