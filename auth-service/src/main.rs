//! auth-service binary: parse configuration, set up logging, serve until SIGINT/SIGTERM.

use auth_service::{Application, config::AuthConfig};
use clap::Parser;
use clock::SystemClock;
use grpc_edge::server::shutdown_signal;
use std::{process::ExitCode, sync::Arc};

// glibc's allocator, on purpose (the task-service uses mimalloc). The one 19 MiB argon2 block
// the auth-service frees, the start-up dummy hash's, glibc returns to the system at once
// (mimalloc kept it: idle RSS 41 MiB instead of 16, BENCHMARKS.md). The hash permits' working
// memory is never freed but reused (rules/password.rs): freeing such blocks after every hash
// is what made glibc raise its mmap threshold and keep them.

#[tokio::main]
async fn main() -> ExitCode {
    let config = AuthConfig::parse();
    let format = config.server.log_format;
    grpc_edge::telemetry::serve_main("auth-service", format, async {
        let app = Application::build(config, Arc::new(SystemClock)).await?;
        app.run(shutdown_signal()).await
    })
    .await
}
