//! `deploy/postgres/least-privilege.sql`, as docker-compose.yml applies it, against a real
//! PostgreSQL (the server `TEST_DATABASE_URL` names; skipped on SQLite): the migrator owns
//! the schemas, each service's role reads and writes rows of its own database only, the
//! task-service's role cannot connect to the auth database, and both services run on their
//! roles with MIGRATE_ON_START=false after `migrate` ran as the migrator.

use crate::client::sign_up;
use auth_service::config::AuthConfig;
use clap::Parser;
use clock::SystemClock;
use std::{path::Path, process::Command, sync::Arc, time::Duration};
use task_service::config::TaskConfig;
use test_support::{channel, with_bearer};
use todo_api::{
    todo::task::v1::CreateTaskRequest, todo::task::v1::ListTasksRequest,
    todo::task::v1::task_service_client::TaskServiceClient,
};

/// Names made for one run, dropped again when it ends.
struct Cluster {
    admin: String,
    server: String,
    migrator: String,
    auth_role: String,
    task_role: String,
    auth_db: String,
    task_db: String,
}

impl Cluster {
    fn new(admin: &str) -> Self {
        let suffix = &uuid::Uuid::now_v7().simple().to_string()[20..];
        let rest = admin.split_once("://").map_or(admin, |(_, rest)| rest);
        let host = rest.split('/').next().unwrap_or(rest);
        let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
        Self {
            admin: admin.to_owned(),
            server: host.to_owned(),
            migrator: format!("lp_{suffix}_migrator"),
            auth_role: format!("lp_{suffix}_auth"),
            task_role: format!("lp_{suffix}_task"),
            auth_db: format!("lp_{suffix}_auth_db"),
            task_db: format!("lp_{suffix}_task_db"),
        }
    }

    fn url(&self, role: &str, db: &str) -> String {
        format!("postgres://{role}:pw@{}/{db}", self.server)
    }

    /// Runs `sql` as `role` on `db`; the error text if it failed.
    fn psql(&self, role: &str, db: &str, sql: &str) -> Result<(), String> {
        let out = Command::new("psql")
            .args([&self.url(role, db), "-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .expect("psql runs");
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for sql in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.auth_db),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.task_db),
            format!(
                "DROP ROLE IF EXISTS {}, {}, {}",
                self.auth_role, self.task_role, self.migrator
            ),
        ] {
            let _ = Command::new("psql")
                .args([&self.admin, "-qc", &sql])
                .output();
        }
    }
}

// Reported as ignored without PostgreSQL; the PostgreSQL run includes it (README).
#[tokio::test]
#[ignore = "needs PostgreSQL: TEST_DATABASE_URL=postgres://… cargo test --workspace -- --include-ignored"]
async fn each_service_reaches_only_its_own_rows_and_only_the_migrator_changes_schemas() {
    let admin = test_support::require_postgres();
    let c = Cluster::new(&admin);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/postgres/least-privilege.sql");
    let out = Command::new("psql")
        .arg(&admin)
        .args(["-v", &format!("migrator={}", c.migrator)])
        .args(["-v", &format!("auth_role={}", c.auth_role)])
        .args(["-v", &format!("task_role={}", c.task_role)])
        .args(["-v", &format!("auth_db={}", c.auth_db)])
        .args(["-v", &format!("task_db={}", c.task_db)])
        .args(["-v", "migrator_password=pw", "-v", "auth_password=pw"])
        .args(["-v", "task_password=pw", "-q", "-f"])
        .arg(&script)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let any_port = "127.0.0.1:0".parse().unwrap();
    let mut auth = AuthConfig::for_database(any_port, &c.url(&c.auth_role, &c.auth_db));
    let mut task =
        TaskConfig::for_database(any_port, &c.url(&c.task_role, &c.task_db), "http://unused");
    auth.pool.migrate_on_start = false;
    task.pool.migrate_on_start = false;

    // Before `migrate`, a service on its own role refuses to start and says what to run.
    let clock = Arc::new(SystemClock);
    let refused = task_service::Application::build(task.clone(), clock.clone())
        .await
        .err()
        .expect("refused before migrate");
    assert!(
        refused.to_string().contains("migrate --service task up"),
        "{refused}"
    );
    // Nor can it create the schema itself.
    let denied = c
        .psql(&c.task_role, &c.task_db, "CREATE TABLE intruder (i int)")
        .unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");

    // `migrate`, as the compose job runs it: the migrator, through each service's own
    // variable (AUTH_DATABASE_URL / TASK_DATABASE_URL).
    for (service, url) in [
        ("auth", c.url(&c.migrator, &c.auth_db)),
        ("task", c.url(&c.migrator, &c.task_db)),
    ] {
        let mut cli =
            migrations::cli::Cli::try_parse_from(["migrate", "--service", service, "up"]).unwrap();
        // As compose sets them (not from this process's environment).
        (
            cli.database_url,
            cli.auth_database_url,
            cli.task_database_url,
        ) = match service {
            "auth" => (None, Some(url), None),
            _ => (None, None, Some(url)),
        };
        migrations::cli::run_cli(cli).await.expect("migrate up");
    }

    // Both services now run on their own roles.
    let stack = todo_stack::Stack::build(auth, task, clock)
        .await
        .expect("the pair starts");
    let (auth_addr, task_addr) = (stack.auth_addr(), stack.task_addr());
    let (_stop, stopped) = test_support::shutdown_on_drop();
    tokio::spawn(stack.run(stopped));
    let token = sign_up(auth_addr, "least@example.com")
        .await
        .expect("sign-up writes with the auth role");
    let mut tasks = TaskServiceClient::new(channel(task_addr).await);
    let create = CreateTaskRequest {
        title: "least privilege".into(),
        ..Default::default()
    };
    let mut created = None;
    for _ in 0..100 {
        // UNAVAILABLE until the task-service has fetched the signing keys.
        match tasks.create_task(with_bearer(create.clone(), &token)).await {
            Ok(task) => {
                created = Some(task.into_inner());
                break;
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("CreateTask: {status:?}"),
        }
    }
    let created = created.expect("a task created with the task role");
    let listed = tasks
        .list_tasks(with_bearer(ListTasksRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tasks[0].id, created.id);

    // What each role may not do.
    let denied = c.psql(&c.task_role, &c.auth_db, "SELECT 1").unwrap_err();
    assert!(
        denied.contains("permission denied for database"),
        "{denied}"
    );
    c.psql(&c.auth_role, &c.auth_db, "SELECT count(*) FROM users")
        .expect("the auth role reads its rows");
    for sql in [
        "CREATE TABLE intruder (i int)",
        "DROP TABLE users",
        "ALTER TABLE users ADD COLUMN x int",
    ] {
        let denied = c.psql(&c.auth_role, &c.auth_db, sql).unwrap_err();
        assert!(
            denied.contains("permission denied") || denied.contains("must be owner"),
            "{sql}: {denied}"
        );
    }
    let denied = c
        .psql(&c.task_role, &c.task_db, "DROP TABLE tasks")
        .unwrap_err();
    assert!(denied.contains("must be owner"), "{denied}");
    let denied = c.psql(&c.auth_role, &c.task_db, "SELECT 1").unwrap_err();
    assert!(
        denied.contains("permission denied for database"),
        "{denied}"
    );
}
