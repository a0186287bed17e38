//! auth-service binary: parse configuration, set up logging, serve until SIGINT/SIGTERM.

use auth_service::{Application, config::AuthConfig};
use clap::Parser;
use shared::{clock::SystemClock, server::shutdown_signal};
use std::{process::ExitCode, sync::Arc};

/// mimalloc: glibc malloc cost ListTasks ~18% more CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    shared::tls::install_crypto_provider();
    let config = AuthConfig::parse();
    shared::telemetry::init(config.server.log_format);
    let result = async {
        Application::build(config, Arc::new(SystemClock))
            .await?
            .run(shutdown_signal())
            .await
    }
    .await;
    shared::telemetry::exit_code("auth-service", result)
}
