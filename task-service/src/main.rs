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
    let config = TaskConfig::parse();
    let format = config.server.log_format;
    grpc_edge::telemetry::serve_main("task-service", format, async {
        let app = Application::build(config, Arc::new(SystemClock)).await?;
        app.run(shutdown_signal()).await
    })
    .await
}
