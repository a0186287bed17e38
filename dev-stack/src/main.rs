//! `todo-stack`: the whole product in one command, on SQLite files under `./data` by default.
//! Reads the same environment variables as the two services (see `.env.example`).

use auth_service::config::AuthConfig;
use clap::Parser;
use shared::{clock::SystemClock, server::shutdown_signal};
use std::{process::ExitCode, sync::Arc};
use task_service::config::TaskConfig;
use todo_stack::{Stack, connectable};

/// Starts the auth-service and the task-service in one process; Ctrl-C stops both.
///
/// Configuration comes from the services' environment variables (.env.example), e.g.
/// AUTH_LISTEN_ADDR, TASK_LISTEN_ADDR, AUTH_DATABASE_URL, TASK_DATABASE_URL.
#[derive(Debug, Parser)]
#[command(name = "todo-stack", version)]
struct Cli {}

/// mimalloc: glibc malloc cost ListTasks ~18% more CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    Cli::parse();
    let auth = AuthConfig::parse_from(["auth-service"]);
    let task = TaskConfig::parse_from(["task-service"]);
    shared::telemetry::init(auth.server.log_format);
    let databases = [
        shared::db::redact_url(&auth.database_url),
        shared::db::redact_url(&task.database_url),
    ];
    // Listen for Ctrl-C before anything is printed, so it is never missed.
    let shutdown = shutdown_signal();
    let result = async {
        let stack = Stack::build(auth, task, Arc::new(SystemClock)).await?;
        let (auth_addr, task_addr) = (connectable(stack.auth_addr()), connectable(stack.task_addr()));
        println!(
            "\n  auth-service  http://{auth_addr}   database {}\n  task-service  http://{task_addr}   database {}\n\n  \
             Both speak gRPC and grpc-web, with reflection. Try:\n\n    \
             grpcurl -plaintext -d '{{\"email\":\"you@example.com\",\"password\":\"correct horse battery staple\"}}' \\\n      \
             {auth_addr} todo.auth.v1.AuthService/SignUp\n\n  \
             then call {task_addr} todo.task.v1.TaskService/CreateTask with -H \"authorization: Bearer <accessToken>\".\n  \
             Ctrl-C stops both.\n",
            databases[0], databases[1]
        );
        stack.run(shutdown).await
    }
    .await;
    shared::telemetry::exit_code("todo-stack", result)
}
