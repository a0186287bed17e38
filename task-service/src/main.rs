//! task-service binary: parse configuration, set up logging, serve until SIGINT/SIGTERM.

use clap::Parser;
use clock::SystemClock;
use grpc_edge::server::shutdown_signal;
use std::{process::ExitCode, sync::Arc};
use task_service::{Application, config::TaskConfig};

/// mimalloc: with glibc malloc, list100 took ~18% more CPU per call (BENCHMARKS.md, "list100").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    grpc_edge::tls::install_crypto_provider();
    let config = TaskConfig::parse();
    grpc_edge::telemetry::init(config.server.log_format);
    let result = async {
        Application::build(config, Arc::new(SystemClock))
            .await?
            .run(shutdown_signal())
            .await
    }
    .await;
    grpc_edge::telemetry::exit_code("task-service", result)
}
