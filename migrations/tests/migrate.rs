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
    let changes = columns(&db, "task_changes").await;
    assert!(changes.iter().any(|c| c == "position"), "{changes:?}");
    TaskMigrator::down(&db, Some(1)).await.unwrap();
    assert!(columns(&db, "task_change_settings").await.is_empty());
    assert!(!columns(&db, "task_changes").await.is_empty());
    TaskMigrator::down(&db, Some(1)).await.unwrap();
    assert!(columns(&db, "task_changes").await.is_empty());
    assert!(columns(&db, "task_change_heads").await.is_empty());
    TaskMigrator::down(&db, Some(1)).await.unwrap();
    assert!(columns(&db, "purged_owners").await.is_empty());
    assert!(!columns(&db, "tasks").await.is_empty());
    TaskMigrator::down(&db, None).await.unwrap();
    assert_eq!(applied::<TaskMigrator>(&db).await, 0);
    TaskMigrator::up(&db, None).await.unwrap();
    assert_eq!(applied::<TaskMigrator>(&db).await, all);
}

/// Inserts a task row of `owner` with `id`, as the task-service writes one.
async fn insert_task(
    db: &DatabaseConnection,
    id: uuid::Uuid,
    owner: uuid::Uuid,
) -> Result<(), sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let now = chrono::Utc::now();
    let sql = match backend {
        sea_orm::DatabaseBackend::Sqlite => {
            "INSERT INTO tasks (id, owner_id, title, description, completed, completed_at, created_at, updated_at, version, request_id) VALUES (?, ?, 'kept', '', false, NULL, ?, ?, 1, NULL)"
        }
        _ => {
            "INSERT INTO tasks (id, owner_id, title, description, completed, completed_at, created_at, updated_at, version, request_id) VALUES ($1, $2, 'kept', '', false, NULL, $3, $4, 1, NULL)"
        }
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [id.into(), owner.into(), now.into(), now.into()],
    ))
    .await
    .map(|_| ())
}

#[tokio::test]
async fn keying_tasks_by_owner_keeps_every_task_and_lets_ids_repeat_only_across_owners() {
    let db = fresh("task_test_rekey").await;
    // Before the re-keying and the change log's trigger.
    let before = TaskMigrator::migrations().len() - 2;
    TaskMigrator::up(&db, Some(u32::try_from(before).unwrap()))
        .await
        .unwrap();
    let (alice, bob) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let ids: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::now_v7()).collect();
    for id in &ids {
        insert_task(&db, *id, alice).await.unwrap();
    }
    // Keyed by id alone: the same id cannot be another owner's.
    assert!(insert_task(&db, ids[0], bob).await.is_err());

    TaskMigrator::up(&db, None).await.unwrap();
    let count = |owner: uuid::Uuid| {
        let db = db.clone();
        async move {
            let backend = db.get_database_backend();
            let sql = match backend {
                sea_orm::DatabaseBackend::Sqlite => {
                    "SELECT COUNT(*) AS n FROM tasks WHERE owner_id = ?"
                }
                _ => "SELECT COUNT(*) AS n FROM tasks WHERE owner_id = $1",
            };
            db.query_one_raw(Statement::from_sql_and_values(backend, sql, [owner.into()]))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        }
    };
    assert_eq!(count(alice).await, 3, "every task is kept");
    // Keyed by (owner_id, id): unique per owner, and indexes rebuilt.
    insert_task(&db, ids[0], bob).await.unwrap();
    assert!(insert_task(&db, ids[0], alice).await.is_err());
    assert_eq!(count(bob).await, 1);

    // And back: the rows stay; the same id twice cannot (so the test removes Bob's first).
    let backend = db.get_database_backend();
    let delete = match backend {
        sea_orm::DatabaseBackend::Sqlite => "DELETE FROM tasks WHERE owner_id = ?",
        _ => "DELETE FROM tasks WHERE owner_id = $1",
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        delete,
        [bob.into()],
    ))
    .await
    .unwrap();
    TaskMigrator::down(&db, Some(2)).await.unwrap();
    assert_eq!(count(alice).await, 3);
    assert!(insert_task(&db, ids[0], bob).await.is_err());
}
