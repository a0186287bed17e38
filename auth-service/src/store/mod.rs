//! Auth storage: every statement the auth-service runs, one module per table group. The
//! SeaORM entities are private to this module; its functions take a connection (or a
//! transaction) and return domain values, so the rules above it (rotation, grace window,
//! throttling policy, key rotation) never see a row and read without SQL.
//!
//! Each operation is one statement where it can be; `sessions::spend_refresh_token` is the
//! one transaction (spend, store the successor, touch the session).

pub(crate) mod deletions;
mod entity;
pub(crate) mod keys;
pub(crate) mod sessions;
pub(crate) mod throttle;
pub(crate) mod users;

/// A migrated in-memory auth database, for unit tests of the rules above the store.
#[cfg(test)]
pub(crate) async fn test_database() -> sea_orm::DatabaseConnection {
    use migrations::{AuthMigrator, MigratorTrait};
    let pool = service_db::PoolArgs {
        database_max_connections: Some(1),
        database_acquire_timeout_secs: 5,
        migrate_on_start: true,
    };
    let migrate =
        |db: sea_orm::DatabaseConnection| async move { AuthMigrator::up(&db, None).await };
    match service_db::open("AUTH_DATABASE_URL", "sqlite::memory:", &pool, migrate).await {
        Ok(db) => db,
        Err(error) => panic!("test database: {error}"),
    }
}
