//! Every migration goes up, down and up again, on a new SQLite file by default and on a fresh
//! PostgreSQL database when `TEST_DATABASE_URL` names one, and status reports what is applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use migrations::{AuthMigrator, MigratorTrait, TaskMigrator};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

#[derive(Parser)]
struct Pool {
    #[command(flatten)]
    pool: service_db::PoolArgs,
}

/// A pool to a fresh database (the SQLite file is created, as the services create theirs).
async fn fresh(prefix: &str) -> DatabaseConnection {
    let url = test_support::fresh_database_url(prefix).await.unwrap();
    let pool = Pool::parse_from(["test"]).pool;
    service_db::connect("TEST_DATABASE_URL", &url, &pool)
        .await
        .unwrap()
}

/// The columns of `table`, as the database reports them.
async fn columns(db: &DatabaseConnection, table: &str) -> Vec<String> {
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Sqlite => {
            format!("SELECT name FROM pragma_table_info('{table}')")
        }
        _ => format!(
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = '{table}'"
        ),
    };
    db.query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "name").unwrap())
        .collect()
}

async fn applied<M: MigratorTrait>(db: &DatabaseConnection) -> usize {
    M::get_applied_migrations(db).await.unwrap().len()
}

#[tokio::test]
async fn auth_migrations_go_up_down_and_up_again() {
    let db = fresh("auth_test_migrate").await;
    AuthMigrator::up(&db, None).await.unwrap();
    let all = AuthMigrator::migrations().len();
    assert_eq!(applied::<AuthMigrator>(&db).await, all);
    let has = |columns: &[String], name: &str| columns.iter().any(|c| c == name);
    let sessions = columns(&db, "sessions").await;
    assert!(has(&sessions, "refresh_generation"), "{sessions:?}");
    assert!(has(&sessions, "user_agent"), "{sessions:?}");

    assert!(has(&columns(&db, "users").await, "password_version"));
    assert!(has(
        &columns(&db, "account_deletions").await,
        "next_attempt_at"
    ));

    // One down at a time: each migration's columns go, the table and the rest stay.
    AuthMigrator::down(&db, Some(1)).await.unwrap();
    assert!(columns(&db, "account_deletions").await.is_empty());
    AuthMigrator::up(&db, None).await.unwrap();
    AuthMigrator::down(&db, Some(1)).await.unwrap();
    assert_eq!(applied::<AuthMigrator>(&db).await, all - 1);
    AuthMigrator::down(&db, Some(1)).await.unwrap();
    assert_eq!(applied::<AuthMigrator>(&db).await, all - 2);
    let users = columns(&db, "users").await;
    assert!(!has(&users, "password_version"), "{users:?}");
    assert!(has(&users, "password_hash"), "{users:?}");
    let pending = AuthMigrator::get_pending_migrations(&db).await.unwrap();
    assert_eq!(pending.len(), 2, "status lists the ones that went down");

    AuthMigrator::down(&db, Some(1)).await.unwrap();
    assert_eq!(applied::<AuthMigrator>(&db).await, all - 3);
    let sessions = columns(&db, "sessions").await;
    assert!(!has(&sessions, "user_agent"), "{sessions:?}");
    assert!(!has(&sessions, "client_address"), "{sessions:?}");
    assert!(has(&sessions, "refresh_generation"), "{sessions:?}");

    AuthMigrator::down(&db, Some(1)).await.unwrap();
    assert_eq!(applied::<AuthMigrator>(&db).await, all - 4);
    let sessions = columns(&db, "sessions").await;
    assert!(has(&sessions, "rotation_secret"), "{sessions:?}");
    assert!(!has(&sessions, "refresh_generation"), "{sessions:?}");

    // Everything down, then up again.
    AuthMigrator::down(&db, None).await.unwrap();
    assert_eq!(applied::<AuthMigrator>(&db).await, 0);
    AuthMigrator::up(&db, None).await.unwrap();
    assert_eq!(applied::<AuthMigrator>(&db).await, all);
}

#[tokio::test]
async fn task_migrations_go_up_down_and_up_again() {
    let db = fresh("task_test_migrate").await;
    TaskMigrator::up(&db, None).await.unwrap();
    let all = TaskMigrator::migrations().len();
    assert_eq!(applied::<TaskMigrator>(&db).await, all);
    let tombstones = columns(&db, "purged_owners").await;
    assert!(
        tombstones.iter().any(|c| c == "forget_after"),
        "{tombstones:?}"
    );
    TaskMigrator::down(&db, Some(1)).await.unwrap();
    assert!(columns(&db, "purged_owners").await.is_empty());
    assert!(!columns(&db, "tasks").await.is_empty());
    TaskMigrator::down(&db, None).await.unwrap();
    assert_eq!(applied::<TaskMigrator>(&db).await, 0);
    TaskMigrator::up(&db, None).await.unwrap();
    assert_eq!(applied::<TaskMigrator>(&db).await, all);
}
