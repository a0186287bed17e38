//! `migrate`: runs a service's migrations by hand.
//!
//! ```text
//! migrate --service auth --database-url postgres://… up
//! migrate --service auth status
//! migrate --service auth down --steps 1
//! migrate --service task --database-url sqlite://data/tasks.db up
//! ```

use clap::{Parser, Subcommand, ValueEnum};
use migrations::{AuthMigrator, MigratorTrait, TaskMigrator};
use sea_orm_migration::{MigrationStatus, sea_orm::DatabaseConnection};

#[derive(Debug, Parser)]
#[command(about = "Run the database migrations of one service")]
struct Cli {
    /// Whose tables to migrate.
    #[arg(long, value_enum)]
    service: Service,
    /// Database URL (SQLite or PostgreSQL).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[command(flatten)]
    pool: shared::config::PoolArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Service {
    Auth,
    Task,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations.
    Up {
        /// Apply at most this many.
        #[arg(long)]
        steps: Option<u32>,
    },
    /// Roll back applied migrations (the last one unless --steps says more).
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let db = shared::db::connect(&cli.database_url, &cli.pool).await?;
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
