//! Logging and tracing set-up, and the one per-RPC layer: a span (an OpenTelemetry server
//! span when tracing is on), the RPC metrics ([`crate::metrics`]), and one completion event
//! with the gRPC status code and latency. Tokens, passwords and secrets are never fields of
//! any span or event, and never label values.
//!
//! Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set: spans are exported over OTLP/gRPC in batches, W3C `traceparent`/`tracestate` are
//! taken from incoming requests (native gRPC and grpc-web alike) and sent on the calls one
//! service makes to the other ([`traced`]). When it is off nothing is exported and no
//! OpenTelemetry layer runs; an incoming `traceparent` still puts its trace id in the log
//! lines, so they join the caller's trace.

use crate::metrics::DurationHistogram;
use crate::metrics::Metrics;
use crate::settings::LogFormat;
use opentelemetry::{
    context::FutureExt as _,
    propagation::{Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use std::{
    collections::HashMap,
    future::Future,
    io::IsTerminal,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer as _, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

/// Default filter when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn";

/// The spans exported (each with fields that name no person): the RPC's server span, the
/// wait for a hashing turn and the hashing itself. Statements get spans of their own
/// ([`statement_span`]).
const EXPORTED_SPANS: &[&str] = &["rpc", "hash_queue", "argon2id"];

/// Longest the last spans may take to leave at shutdown (above the OTLP export timeout, 10 s).
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(12);

/// The instrumentation scope of every span the services make.
const TRACER: &str = "todo-grpc";

/// Whether spans are exported (an OpenTelemetry layer is installed).
static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported over OTLP in this process.
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// What [`init`] set up; [`Telemetry::shutdown`] exports the spans still buffered.
#[must_use = "call shutdown() before the process exits, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter (off the async threads: the exporter
    /// runs its calls on this runtime).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let flushed =
                tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                    .await;
            if let Ok(Err(error)) = flushed {
                eprintln!("exporting the last spans failed: {error}");
            }
        }
    }
}

/// Whether the environment asks for OTLP export.
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// Installs the global subscriber: log lines in `format` and, when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set, an OpenTelemetry layer exporting spans as `service` (or `OTEL_SERVICE_NAME`). Safe
/// to call more than once (later calls do nothing), so a launcher running both services in
/// one process can call it from each. Call it inside the Tokio runtime: the exporter uses it.
pub fn init(service: &'static str, format: LogFormat) -> Telemetry {
    install(service, format, None)
}

/// [`init`], exporting spans to `endpoint` (e.g. `http://127.0.0.1:4317`) whatever the
/// environment says: for benchmarks that start their own receiver.
pub fn init_exporting_to(service: &'static str, format: LogFormat, endpoint: &str) -> Telemetry {
    install(service, format, Some(endpoint.to_owned()))
}

fn install(service: &'static str, format: LogFormat, endpoint: Option<String>) -> Telemetry {
    // Once per process: a second call (a launcher's second service) builds nothing.
    if tracing::dispatcher::has_been_set() {
        if endpoint.is_some() {
            tracing::warn!(
                "a subscriber is already installed: spans are not exported to the endpoint asked for"
            );
        }
        return Telemetry { provider: None };
    }
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colour only for a person at a terminal: never in a file or a pipe, nor with NO_COLOR.
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = fmt::layer().with_target(false).with_ansi(colour);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter()).boxed(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter())
            .boxed(),
    };
    let mut layers = vec![logs];
    let mut provider = None;
    let mut export_error = None;
    if endpoint.is_some() || otlp_configured() {
        match exporter(endpoint) {
            Ok(exporter) => {
                let name = std::env::var("OTEL_SERVICE_NAME")
                    .ok()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| service.to_owned());
                let built = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    // Every call is traced, whatever the caller's `traceparent` flags say: a
                    // client must not be able to keep its calls out of the traces.
                    .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(name)
                            .build(),
                    )
                    .build();
                let tracer = built.tracer(TRACER);
                // Only the spans made for export, whatever RUST_LOG says (quieter logs must
                // not empty the traces), and no events: handlers' spans and audit events
                // carry user ids and addresses, which never leave the service in a trace.
                layers.push(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                            meta.is_span() && EXPORTED_SPANS.contains(&meta.name())
                        }))
                        .boxed(),
                );
                provider = Some(built);
            }
            Err(error) => export_error = Some(error),
        }
    }
    // An error here only means a subscriber is already installed: the first one stays.
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        return Telemetry { provider: None };
    }
    if let Some(error) = export_error {
        tracing::error!(%error, "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter could not be built: no spans are exported");
    }
    if let Some(provider) = &provider {
        // The statements' spans (made after the fact, with their own start time) come from
        // the same provider.
        opentelemetry::global::set_tracer_provider(provider.clone());
        TRACING.store(true, Ordering::Relaxed);
        tracing::info!("tracing: exporting spans over OTLP/gRPC (OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    Telemetry { provider }
}

/// The OTLP/gRPC span exporter (endpoint, headers and timeout from the `OTEL_EXPORTER_OTLP_*`
/// variables), run on the current Tokio runtime.
fn exporter(endpoint: Option<String>) -> Result<OnRuntime, String> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| "telemetry::init must run inside the Tokio runtime".to_owned())?;
    // tonic's channel is made here, inside the runtime.
    let _entered = handle.enter();
    use opentelemetry_otlp::WithExportConfig as _;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_protocol(opentelemetry_otlp::Protocol::Grpc);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let inner = builder.build().map_err(|e| e.to_string())?;
    Ok(OnRuntime {
        inner: Arc::new(inner),
        handle: handle.clone(),
    })
}

/// The OTLP exporter, its calls run on the service's Tokio runtime: the SDK's batch
/// processor calls from a thread of its own, where tonic has no reactor to connect with.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    handle: tokio::runtime::Handle,
}

impl opentelemetry_sdk::trace::SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        let inner = Arc::clone(&self.inner);
        let exported = self.handle.spawn(async move { inner.export(batch).await });
        async move {
            exported.await.unwrap_or_else(|error| {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    error.to_string(),
                ))
            })
        }
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // Called once, while the provider is built and this is the only handle.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// Exports a span for one database statement that took `elapsed` and just ended, a child of
/// the current span (the handler's): its kind (`SELECT`, ...) and the database system, never
/// the statement's text or values. Does nothing when tracing is off.
pub fn statement_span(
    elapsed: std::time::Duration,
    operation: &'static str,
    system: &'static str,
    failed: bool,
) {
    use opentelemetry::{
        KeyValue,
        trace::{Span as _, SpanKind, Status, Tracer as _},
    };
    if !tracing_enabled() {
        return;
    }
    // The RPC's context, attached to its whole future by the RPC layer (the handlers' own
    // spans are not exported, so the current tracing span may not know it).
    let parent = opentelemetry::Context::current();
    // Background work (sweeps, deliveries) would make a one-span trace per statement.
    if !parent.has_active_span() {
        return;
    }
    let tracer = opentelemetry::global::tracer(TRACER);
    let end = std::time::SystemTime::now();
    let start = end.checked_sub(elapsed).unwrap_or(end);
    let mut span = tracer
        .span_builder(operation)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.system.name", system),
        ])
        .start_with_context(&tracer, &parent);
    if failed {
        span.set_status(Status::error("statement failed"));
    }
    span.end_with_timestamp(end);
}

/// The incoming request's trace context (W3C `traceparent` / `tracestate`).
fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// Puts the current span's trace context (W3C `traceparent`) on an outgoing call's metadata:
/// the interceptor of [`traced`] clients.
pub fn inject_trace_context(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    if tracing_enabled() {
        let context = opentelemetry::Context::current();
        TraceContextPropagator::new()
            .inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
    }
    Ok(request)
}

/// `task` spawned on the runtime to run to its end even if the caller stops waiting (a
/// client that went away must not leave a write half-known), inside the caller's span and
/// trace context, so its statements stay in the caller's trace.
pub fn spawn_detached<T: Send + 'static>(
    task: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let carried = task.instrument(tracing::Span::current());
    tokio::spawn(carried.with_context(opentelemetry::Context::current()))
}

/// A channel whose calls carry the caller's trace context.
pub type Traced<C> = tonic::service::interceptor::InterceptedService<
    C,
    fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
>;

/// `channel`, with [`inject_trace_context`] on every call.
pub fn traced<C>(channel: C) -> Traced<C> {
    tonic::service::interceptor::InterceptedService::new(channel, inject_trace_context)
}

/// [`Injector`] over gRPC metadata (the propagator writes ASCII keys and values).
struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// A served method's names, interned for the life of the process.
#[derive(Debug)]
struct Method {
    /// `/package.Service/Method`.
    path: &'static str,
    /// `package.Service/Method`: the span's name.
    name: &'static str,
    service: &'static str,
    method: &'static str,
    metrics: Option<MethodMetrics>,
}

/// One method's RPC metrics handles, taken once.
#[derive(Debug)]
struct MethodMetrics {
    /// By gRPC code (0..=16), made on first use.
    duration: [OnceLock<DurationHistogram>; 17],
    family: crate::metrics::HistogramFamily,
    listener: &'static str,
}

impl MethodMetrics {
    fn duration(
        &self,
        code: tonic::Code,
        service: &'static str,
        method: &'static str,
    ) -> &DurationHistogram {
        let index = usize::try_from(code as i32).unwrap_or(2).min(16);
        self.duration[index].get_or_init(|| {
            self.family.get_or_create_owned(&vec![
                ("rpc_service", service),
                ("rpc_method", method),
                ("rpc_response_status_code", code_name(code)),
                ("listener", self.listener),
            ])
        })
    }
}

/// The gRPC code's name as in the spec (`OK`, `UNAUTHENTICATED`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Interns `value` for the life of the process: method names come from the compiled
/// descriptors, a fixed set, so this holds at most a few dozen strings.
fn intern(value: &str) -> &'static str {
    static INTERNED: OnceLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
        OnceLock::new();
    let mut interned = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = interned.get(value) {
        return found;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    interned.insert(leaked);
    leaked
}

/// Tower layer giving every request an `rpc` span (the OpenTelemetry server span), the RPC
/// metrics, and one completion event with its gRPC status code and latency. Only the served
/// methods are named; any other path is `other` in spans, logs and labels.
///
/// Its table of methods is made once per server and kept for the life of the process (a few
/// KiB; a server lives as long as its process, tests build a few hundred): the layer is
/// copied into every call's service without touching a reference count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RpcLayer {
    methods: &'static HashMap<&'static str, Method>,
    other: &'static Method,
}

impl RpcLayer {
    /// The layer for a server serving `methods` (service, method names) on the listener named
    /// `listener`, recording into `metrics` when there are any.
    pub(crate) fn new(
        methods: &[(String, String)],
        metrics: Option<&Metrics>,
        listener: &'static str,
    ) -> Self {
        let make = |service: &'static str, method: &'static str, path, name| Method {
            path,
            name,
            service,
            method,
            metrics: metrics.map(|m| MethodMetrics {
                duration: std::array::from_fn(|_| OnceLock::new()),
                family: m.rpc().duration.clone(),
                listener,
            }),
        };
        let methods = methods
            .iter()
            .map(|(service, method)| {
                let path = intern(&format!("/{service}/{method}"));
                let entry = make(intern(service), intern(method), path, &path[1..]);
                (path, entry)
            })
            .collect();
        Self {
            methods: Box::leak(Box::new(methods)),
            other: Box::leak(Box::new(make("other", "other", "other", "other"))),
        }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rpc {
            inner,
            layer: *self,
        }
    }
}

/// The service made by [`RpcLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Rpc<S> {
    inner: S,
    layer: RpcLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Records an RPC's duration when dropped: with its code, or CANCELLED when the caller went
/// away before the response. Made only when the method has metrics.
struct Finish {
    method: &'static Method,
    started: Instant,
    code: Option<tonic::Code>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(metrics) = &self.method.metrics {
            let code = self.code.unwrap_or(tonic::Code::Cancelled);
            metrics
                .duration(code, self.method.service, self.method.method)
                .observe(self.started.elapsed());
        }
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for Rpc<S>
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
        let method: &'static Method = self
            .layer
            .methods
            .get(request.uri().path())
            .unwrap_or(self.layer.other);
        let span = tracing::info_span!(
            "rpc",
            method = method.path,
            code = Empty,
            latency_ms = Empty,
            trace_id = Empty,
            otel.name = Empty,
            otel.kind = Empty,
            otel.status_code = Empty,
        );
        let exporting = tracing_enabled();
        let mut attached = None;
        if exporting || request.headers().contains_key("traceparent") {
            let parent = extract(request.headers());
            let remote = parent.span().span_context().trace_id();
            let trace_id = if exporting {
                span.record("otel.name", method.name);
                span.record("otel.kind", "server");
                // Fails only when the span is disabled by the filter: nothing to export then.
                let _ = span.set_parent(parent);
                span.set_attribute("rpc.system", "grpc");
                span.set_attribute("rpc.service", method.service);
                span.set_attribute("rpc.method", method.method);
                let context = span.context();
                let trace_id = context.span().span_context().trace_id();
                attached = Some(context);
                trace_id
            } else {
                remote
            };
            if trace_id != opentelemetry::trace::TraceId::INVALID {
                span.record("trace_id", tracing::field::display(trace_id));
            }
        }
        let started = Instant::now();
        let mut finish = method.metrics.as_ref().map(|_| Finish {
            method,
            started,
            code: None,
        });
        let call = async move {
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
                    if let Some(finish) = &mut finish {
                        finish.code = Some(code);
                    }
                    span.record("code", tracing::field::debug(code));
                    if exporting {
                        span.set_attribute("rpc.grpc.status_code", i64::from(code as i32));
                    }
                    if is_server_fault(code) {
                        if exporting {
                            span.record("otel.status_code", "ERROR");
                        }
                        tracing::warn!("rpc failed");
                    } else {
                        tracing::info!("rpc finished");
                    }
                }
                Err(_) => {
                    if let Some(finish) = &mut finish {
                        finish.code = Some(tonic::Code::Unknown);
                    }
                    tracing::error!("rpc transport error");
                }
            }
            drop(finish);
            result
        };
        // Exporting, the RPC's context is the current one while its future runs: its
        // statements' spans and its calls to the other service hang under it.
        match attached {
            Some(context) => Box::pin(call.with_context(context).instrument(span)),
            None => Box::pin(call.instrument(span)),
        }
    }
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
    let telemetry = init(service, format);
    let result = serve.await;
    telemetry.shutdown().await;
    exit_code(service, format, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_named() {
        let layer = RpcLayer::new(
            &[(
                "todo.task.v1.TaskService".to_owned(),
                "ListTasks".to_owned(),
            )],
            None,
            "public",
        );
        let known = layer.methods.get("/todo.task.v1.TaskService/ListTasks");
        assert_eq!(
            known.map(|m| m.name),
            Some("todo.task.v1.TaskService/ListTasks")
        );
        for path in [
            "/",
            "/a/b/c",
            "/x\u{1b}[31m/y",
            "/todo.task.v1.TaskService/Other",
        ] {
            assert!(layer.methods.get(path).is_none(), "{path:?}");
        }
        assert_eq!(layer.other.path, "other");
    }

    #[test]
    fn code_names_are_the_specs() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(code_name(tonic::Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
