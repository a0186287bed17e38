//! `health-probe`: asks a server's `grpc.health.v1` whether a service is SERVING; exits 0 if
//! it is, 1 if not or unreachable. For container health checks (see docker-compose.yml).
//! Speaks TLS to an `https://` address, verifying it with `--ca-file` (or the system's CA
//! certificates) and presenting `--cert-file`/`--key-file` to a server that requires them.

use clap::Parser;
use grpc_edge::tls::ClientTls;
use std::{path::PathBuf, process::ExitCode, time::Duration};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Exit 0 when the service at ADDR reports SERVING.
#[derive(Debug, Parser)]
#[command(name = "health-probe", version)]
struct Cli {
    /// The server, e.g. http://127.0.0.1:50051 or https://127.0.0.1:50051.
    #[arg(long)]
    addr: String,
    /// With https://: the only CA (PEM) to trust for the server's certificate. Unset: the
    /// system's CA certificates.
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// With https://: a client certificate (PEM) to present, with --key-file (for a server
    /// with TLS_CLIENT_CA_FILE).
    #[arg(long, value_name = "PATH")]
    cert_file: Option<PathBuf>,
    /// The private key of --cert-file (PEM).
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// The gRPC service to ask about; empty for the server as a whole.
    #[arg(long, default_value = "")]
    service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    grpc_edge::tls::install_crypto_provider();
    let cli = Cli::parse();
    let timeout = Duration::from_secs(cli.timeout_secs);
    let status = async {
        let tls = ClientTls::new(
            ["--ca-file", "--cert-file", "--key-file"],
            cli.ca_file.clone(),
            cli.cert_file.clone(),
            cli.key_file.clone(),
        )
        .map_err(|e| e.to_string())?;
        let channel = tls
            .endpoint("--addr", &cli.addr)
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| grpc_edge::tls::error_chain(&e))?;
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
