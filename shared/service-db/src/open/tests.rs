#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{OpenError, PoolArgs, connect, open};
use sea_orm::{ConnectionTrait, DbErr};

fn pool() -> PoolArgs {
    PoolArgs {
        database_max_connections: Some(4),
        database_acquire_timeout_secs: 2,
        migrate_on_start: true,
    }
}

#[tokio::test]
async fn a_url_of_no_known_kind_names_the_setting_and_shows_examples() {
    let error = connect("TASK_DATABASE_URL", "x", &pool())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, OpenError::InvalidUrl { .. }), "{message}");
    assert!(message.starts_with("TASK_DATABASE_URL=x "), "{message}");
    assert!(message.contains("postgres://user:password@"), "{message}");
}

#[tokio::test]
async fn a_refused_postgres_connection_says_connection_refused_and_where() {
    // Bind a port and close it again, so nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/todo");
    let error = connect("AUTH_DATABASE_URL", &url, &pool())
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, OpenError::Unreachable { .. }), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
    assert!(message.contains("AUTH_DATABASE_URL"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn every_serving_connection_of_a_new_sqlite_file_sees_the_whole_migrated_schema() {
    let dir = std::env::temp_dir().join(format!("open-{}", uuid::Uuid::now_v7().simple()));
    let url = format!("sqlite://{}/nested/app.db", dir.display());
    let db = open("TASK_DATABASE_URL", &url, &pool(), |db| async move {
        // Statement by statement, as sea-orm-migration runs on SQLite.
        db.execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY, o INT, r INT)")
            .await?;
        db.execute_unprepared("CREATE UNIQUE INDEX t_o_r ON t (o, r)")
            .await?;
        Ok::<_, DbErr>(())
    })
    .await
    .unwrap();
    // Use every connection of the pool at once: each must resolve the upsert target.
    let inserts: Vec<_> = (0..4)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.execute_unprepared(&format!(
                    "INSERT INTO t (o, r) VALUES ({i}, 1) ON CONFLICT (o, r) DO NOTHING"
                ))
                .await
            })
        })
        .collect();
    for insert in inserts {
        insert.await.unwrap().unwrap();
    }
    db.close().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_failed_migration_is_reported_with_the_setting() {
    let error = open("AUTH_DATABASE_URL", "sqlite::memory:", &pool(), |_| async {
        Err::<(), _>(DbErr::Custom("boom".into()))
    })
    .await
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "AUTH_DATABASE_URL=sqlite::memory:: migrating the schema failed: Custom Error: boom"
    );
}
