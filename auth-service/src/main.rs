//! auth-service binary: parse configuration, set up logging, serve until SIGINT/SIGTERM.

use auth_service::{Application, config::AuthConfig};
use clap::Parser;
use clock::SystemClock;
use grpc_edge::server::shutdown_signal;
use std::{process::ExitCode, sync::Arc};

// glibc's allocator, on purpose (the task-service uses mimalloc): the auth-service's big
// allocations are argon2's 19 MiB of working memory, which glibc gives back to the system as
// soon as it is freed, so an idle auth-service holds none (mimalloc kept it: 41 MiB idle).

#[tokio::main]
async fn main() -> ExitCode {
    grpc_edge::tls::install_crypto_provider();
    let config = AuthConfig::parse();
    grpc_edge::telemetry::init(config.server.log_format);
    let result = async {
        Application::build(config, Arc::new(SystemClock))
            .await?
            .run(shutdown_signal())
            .await
    }
    .await;
    grpc_edge::telemetry::exit_code("auth-service", result)
}
