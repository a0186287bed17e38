//! Logging set-up and the per-RPC span: method, gRPC status code and latency for every call.
//! Tokens, passwords and secrets are never fields of any span or event.

use crate::settings::LogFormat;
use std::{
    future::Future,
    io::IsTerminal,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};
use tracing_subscriber::{EnvFilter, fmt};

/// Default filter when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn";

/// Installs the global subscriber. Safe to call more than once (later calls do nothing), so
/// a launcher running both services in one process can call it from each.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colour only for a person at a terminal: never in a file or a pipe, nor with NO_COLOR.
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour);
    // An error here only means a subscriber is already installed.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Tower layer giving every request an `rpc` span and one completion event with its gRPC
/// status code and latency.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcTraceLayer;

impl<S> Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTrace { inner }
    }
}

/// The service made by [`RpcTraceLayer`].
#[derive(Debug, Clone)]
pub struct RpcTrace<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for RpcTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The ready service handles this call; a fresh clone takes its place for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let span = tracing::info_span!(
            "rpc",
            method = method_name(request.uri().path()),
            code = Empty,
            latency_ms = Empty,
        );
        Box::pin(
            async move {
                let started = Instant::now();
                let result = inner.call(request).await;
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                let span = tracing::Span::current();
                span.record("latency_ms", latency_ms);
                match &result {
                    Ok(response) => {
                        // Errors are sent trailers-only (grpc-status in the headers); a
                        // successful unary response carries grpc-status 0 in its trailers.
                        let code = response
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<i32>().ok())
                            .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                        span.record("code", tracing::field::debug(code));
                        if is_server_fault(code) {
                            tracing::warn!("rpc failed");
                        } else {
                            tracing::info!("rpc finished");
                        }
                    }
                    Err(_) => tracing::error!("rpc transport error"),
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The path as logged: a gRPC method name (`/package.Service/Method`, at most 128 characters
/// of `[A-Za-z0-9_.]`), or `other`: a client chooses the path, and must not choose what (or
/// how much) goes into the log.
fn method_name(path: &str) -> &str {
    let looks_like_method = path.len() <= 128
        && path.starts_with('/')
        && path.bytes().filter(|b| *b == b'/').count() == 2
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_'));
    if looks_like_method { path } else { "other" }
}

fn is_server_fault(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::DataLoss
    )
}

/// The process exit code for a service's result; a failure is reported once (see below).
pub fn exit_code<E: std::fmt::Display>(
    service: &str,
    format: LogFormat,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Once: a plain line for a person at a terminal (text logs), a log event for a
            // log collector (JSON logs), never both.
            match format {
                LogFormat::Text => eprintln!("{service}: {error}"),
                LogFormat::Json => tracing::error!(%error, service, "stopped with an error"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The whole `main` of a service binary after its configuration is parsed: installs the TLS
/// crypto provider and logging (in `format`), runs `serve`, and turns the outcome into the
/// exit code, reporting an error once.
pub async fn serve_main<E: std::fmt::Display>(
    service: &'static str,
    format: LogFormat,
    serve: impl Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    crate::tls::install_crypto_provider();
    init(format);
    exit_code(service, format, serve.await)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_method_names_are_logged_as_they_came() {
        assert_eq!(
            super::method_name("/todo.task.v1.TaskService/ListTasks"),
            "/todo.task.v1.TaskService/ListTasks"
        );
        for path in [
            "/",
            "/a/b/c",
            "/x\u{1b}[31m/y",
            &format!("/a/{}", "b".repeat(200)),
        ] {
            assert_eq!(super::method_name(path), "other", "{path:?}");
        }
    }
}
