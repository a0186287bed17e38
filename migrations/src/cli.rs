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
    /// Database URL (SQLite or PostgreSQL).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    #[command(flatten)]
    pub pool: shared::config::PoolArgs,
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
    let pool = shared::config::PoolArgs {
        database_max_connections: 1,
        ..cli.pool
    };
    let db = shared::db::connect("--database-url", &cli.database_url, &pool).await?;
    match cli.service {
        Service::Auth => run::<AuthMigrator>(&db, cli.command).await,
        Service::Task => run::<TaskMigrator>(&db, cli.command).await,
    }
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
