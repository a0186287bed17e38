//! `health-probe`: asks a server's `grpc.health.v1` whether a service is SERVING; exits 0 if
//! it is, 1 if not or unreachable. For container health checks (see docker-compose.yml).

use clap::Parser;
use std::{process::ExitCode, time::Duration};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Exit 0 when the service at ADDR reports SERVING.
#[derive(Debug, Parser)]
#[command(name = "health-probe", version)]
struct Cli {
    /// The server, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    addr: String,
    /// The gRPC service to ask about; empty for the server as a whole.
    #[arg(long, default_value = "")]
    service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let timeout = Duration::from_secs(cli.timeout_secs);
    let status = async {
        let channel = tonic::transport::Endpoint::from_shared(cli.addr.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let request = HealthCheckRequest {
            service: cli.service.clone(),
        };
        HealthClient::new(channel)
            .check(request)
            .await
            .map(|r| r.into_inner().status())
            .map_err(|s| s.to_string())
    }
    .await;
    match status {
        Ok(ServingStatus::Serving) => ExitCode::SUCCESS,
        Ok(other) => {
            eprintln!("{} {:?}: {}", cli.addr, cli.service, other.as_str_name());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{} unreachable: {error}", cli.addr);
            ExitCode::FAILURE
        }
    }
}
