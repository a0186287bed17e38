//! The `migrate` command line (the binary is a thin wrapper, so the compose-file test can
//! check which variables it reads).

use crate::{AuthMigrator, MigratorTrait, TaskMigrator};
use clap::{Parser, Subcommand, ValueEnum};
use sea_orm_migration::{MigrationStatus, sea_orm::DatabaseConnection};

/// `migrate` arguments.
#[derive(Debug, Parser)]
#[command(name = "migrate", about = "Run the database migrations of one service")]
pub struct Cli {
    /// Whose tables to migrate.
    #[arg(long, value_enum)]
    pub service: Service,
    /// Database URL (SQLite or PostgreSQL); when unset, the service's own variable below.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The auth-service's database, for `--service auth` without DATABASE_URL.
    #[arg(long, env = "AUTH_DATABASE_URL", hide_env_values = true)]
    pub auth_database_url: Option<String>,
    /// The task-service's database, for `--service task` without DATABASE_URL.
    #[arg(long, env = "TASK_DATABASE_URL", hide_env_values = true)]
    pub task_database_url: Option<String>,
    #[command(flatten)]
    pub pool: service_db::PoolArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// A service whose tables the CLI migrates.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Service {
    /// The auth-service's tables.
    Auth,
    /// The task-service's tables.
    Task,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations.
    Up {
        /// Apply at most this many.
        #[arg(long)]
        steps: Option<u32>,
    },
    /// Roll back applied migrations (the last one unless --steps says more).
    Down {
        /// Roll back this many.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// Runs `cli`: connects, migrates, and prints each migration's state.
pub async fn run_cli(cli: Cli) -> anyhow::Result<()> {
    // One connection: migrations run statement by statement, and a second connection could
    // keep a half-migrated view of a SQLite schema.
    let pool = service_db::PoolArgs {
        database_max_connections: Some(1),
        ..cli.pool
    };
    let (setting, url) = match (&cli.database_url, cli.service) {
        (Some(url), _) => ("DATABASE_URL", url),
        (None, Service::Auth) => ("AUTH_DATABASE_URL", need(&cli.auth_database_url, "AUTH")?),
        (None, Service::Task) => ("TASK_DATABASE_URL", need(&cli.task_database_url, "TASK")?),
    };
    let db = service_db::connect(setting, url, &pool).await?;
    match cli.service {
        Service::Auth => run::<AuthMigrator>(&db, cli.command).await,
        Service::Task => run::<TaskMigrator>(&db, cli.command).await,
    }
}

fn need<'a>(url: &'a Option<String>, service: &str) -> anyhow::Result<&'a String> {
    url.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "no database: pass --database-url (or set DATABASE_URL, or {service}_DATABASE_URL \
             as the service itself reads it), e.g. postgres://user:password@localhost:5432/todo"
        )
    })
}

async fn run<M: MigratorTrait>(db: &DatabaseConnection, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up { steps } => M::up(db, steps).await?,
        Command::Down { steps } => M::down(db, Some(steps)).await?,
        Command::Status => {}
    }
    for migration in M::get_migration_with_status(db).await? {
        let state = match migration.status() {
            MigrationStatus::Applied => "applied",
            MigrationStatus::Pending => "pending",
        };
        println!("{state:8} {}", migration.name());
    }
    Ok(())
}
