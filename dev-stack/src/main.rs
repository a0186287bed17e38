//! `todo-stack`: the whole product in one command, on SQLite files under `./data` by default.
//! Reads the same environment variables as the two services (see `.env.example`).
//! `todo-stack dev-certs` makes a development CA and certificates for trying TLS.

use auth_service::config::AuthConfig;
use clap::{Parser, Subcommand};
use clock::SystemClock;
use dev_pki::DevPki;
use grpc_edge::server::shutdown_signal;
use std::{path::PathBuf, process::ExitCode, sync::Arc};
use task_service::config::TaskConfig;
use todo_stack::{Stack, connectable};

/// Starts the auth-service and the task-service in one process; Ctrl-C stops both.
///
/// Configuration comes from the services' environment variables (.env.example), e.g.
/// AUTH_LISTEN_ADDR, TASK_LISTEN_ADDR, AUTH_DATABASE_URL, TASK_DATABASE_URL, and for TLS
/// TLS_CERT_FILE, TLS_KEY_FILE and AUTH_SERVICE_CA_FILE.
#[derive(Debug, Parser)]
#[command(name = "todo-stack", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Makes a development CA, a server certificate (localhost, 127.0.0.1, ::1 and any
    /// --san) and a client certificate for the task-service: ca.pem, server.pem,
    /// server-key.pem, client.pem, client-key.pem. For development only.
    DevCerts {
        /// Directory to write them to (made if missing).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// A further name (DNS name or IP address) the server certificate is valid for, e.g.
        /// `--san auth-service --san task-service` for docker compose. Repeatable.
        #[arg(long = "san", value_name = "NAME")]
        sans: Vec<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

/// mimalloc, as the task-service binary (list100 ~18% less CPU per call, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    grpc_edge::tls::install_crypto_provider();
    match Cli::parse().command {
        Some(Command::DevCerts { out, sans, force }) => dev_certs(&out, &sans, force),
        None => run().await,
    }
}

fn dev_certs(out: &std::path::Path, sans: &[String], force: bool) -> ExitCode {
    let written = DevPki::generate(sans)
        .map_err(|e| format!("cannot make the certificates: {e}"))
        .and_then(|pki| pki.write(out, force).map_err(|e| e.to_string()));
    match written {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            let dir = out.display();
            println!(
                "\nServe both services over TLS:\n\n  \
                 TLS_CERT_FILE={dir}/server.pem TLS_KEY_FILE={dir}/server-key.pem \
                 AUTH_SERVICE_CA_FILE={dir}/ca.pem cargo run -p todo-stack\n\n\
                 Clients trust {dir}/ca.pem (grpcurl -cacert {dir}/ca.pem ...). For development only."
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("todo-stack dev-certs: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let auth = AuthConfig::parse_from(["auth-service"]);
    let task = TaskConfig::parse_from(["task-service"]);
    let format = auth.server.log_format;
    let telemetry = grpc_edge::telemetry::init("todo-stack", format);
    let databases = [
        service_db::redact_url(&auth.database_url),
        service_db::redact_url(&task.database_url),
    ];
    // With TLS, grpcurl verifies the server with the CA (the one the task-service trusts).
    let grpcurl_trust = match &task.auth_service_ca_file {
        Some(ca) if auth.server.tls.enabled() => format!("-cacert {}", ca.display()),
        _ => "-plaintext".to_owned(),
    };
    // Listen for Ctrl-C before anything is printed, so it is never missed.
    let shutdown = shutdown_signal();
    let result = async {
        let stack = Stack::build(auth, task, Arc::new(SystemClock)).await?;
        let (auth_addr, task_addr) = (connectable(stack.auth_addr()), connectable(stack.task_addr()));
        let (auth_url, task_url) = (stack.auth_url(), stack.task_url());
        println!(
            "\n  auth-service  {auth_url}   database {}\n  task-service  {task_url}   database {}\n\n  \
             Both speak gRPC and grpc-web, with reflection. Try:\n\n    \
             grpcurl {grpcurl_trust} -d '{{\"email\":\"you@example.com\",\"password\":\"correct horse battery staple\"}}' \\\n      \
             {auth_addr} todo.auth.v1.AuthService/SignUp\n\n  \
             then call {task_addr} todo.task.v1.TaskService/CreateTask with -H \"authorization: Bearer <accessToken>\".\n  \
             Ctrl-C stops both.\n",
            databases[0], databases[1]
        );
        stack.run(shutdown).await
    }
    .await;
    telemetry.shutdown().await;
    grpc_edge::telemetry::exit_code("todo-stack", format, result)
}
