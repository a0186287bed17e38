//! auth-service binary: parse configuration, set up logging, serve until SIGINT/SIGTERM.

use auth_service::{Application, config::AuthConfig};
use clap::Parser;
use shared::{clock::SystemClock, server::shutdown_signal};
use std::{process::ExitCode, sync::Arc};

// glibc's allocator, on purpose (the task-service uses mimalloc): the auth-service's big
// allocations are argon2's 19 MiB of working memory, which glibc gives back to the system as
// soon as it is freed, so an idle auth-service holds none (mimalloc kept it: 41 MiB idle).

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
