//! `migrate`: runs a service's migrations by hand.
//!
//! ```text
//! migrate --service auth --database-url postgres://… up
//! migrate --service auth status
//! migrate --service auth down --steps 1
//! migrate --service task --database-url sqlite://data/tasks.db up
//! ```

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    migrations::cli::run_cli(migrations::cli::Cli::parse()).await
}
