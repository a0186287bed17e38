//! The whole product in one process, for development: the auth-service and the
//! task-service, started through their library `build`/`run` functions, the task-service
//! pointed at this auth-service, both stopped together.

use auth_service::config::AuthConfig;
use clock::SharedClock;
use std::{future::Future, net::SocketAddr};
use task_service::config::TaskConfig;
use tokio::sync::watch;

/// Why the stack could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The auth-service failed.
    #[error("auth-service: {0}")]
    Auth(#[from] auth_service::StartError),
    /// The task-service failed.
    #[error("task-service: {0}")]
    Task(#[from] task_service::StartError),
    /// A listener's address could not be read.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
    /// A server task panicked.
    #[error("server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The auth-service serves TLS but the task-service has no CA to verify it with.
    #[error(
        "the auth-service serves TLS (TLS_CERT_FILE), so the task-service must verify it: set \
         AUTH_SERVICE_CA_FILE to the CA that issued TLS_CERT_FILE (certs/ca.pem from \
         `todo-stack dev-certs`)"
    )]
    AuthCaMissing,
}

/// Both services, built and bound, not yet serving.
pub struct Stack {
    auth: auth_service::Application,
    task: task_service::Application,
    auth_addr: SocketAddr,
    task_addr: SocketAddr,
}

impl Stack {
    /// Binds every listener first (the auth-service's, the task-service's public and internal
    /// ones), then builds both services, each told where the other listens: the task-service
    /// fetches keys from the auth-service (`AUTH_SERVICE_URL`), the auth-service delivers
    /// account deletions to the task-service's internal listener (`TASK_INTERNAL_URL`).
    ///
    /// The internal listener is on (`127.0.0.1`, a free port) unless INTERNAL_LISTEN_ADDR says
    /// where; in HS256 mode only with INTERNAL_CLIENT_CA_FILE (see the task-service's
    /// configuration), and otherwise off, with a warning, deletions then waiting.
    pub async fn build(
        mut auth: AuthConfig,
        mut task: TaskConfig,
        clock: SharedClock,
    ) -> Result<Self, StackError> {
        let hs256 = task.jwt.hs256_secret().ok().flatten().is_some();
        if task.internal_listen_addr.is_none() {
            if hs256 && task.internal_client_ca_file.is_none() {
                tracing::warn!(
                    "SIGNING_ALGORITHM=hs256 without INTERNAL_CLIENT_CA_FILE: no internal listener, \
                     so deleted accounts' tasks are not purged (see INTERNAL_LISTEN_ADDR)"
                );
            } else {
                task.internal_listen_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            }
        }
        let auth_listener = grpc_edge::server::bind("AUTH_LISTEN_ADDR", auth.listen_addr)
            .await
            .map_err(auth_service::StartError::from)?;
        let task_listeners = task_service::Listeners::bind(&task).await?;
        let auth_addr = auth_listener.local_addr()?;
        let auth_tls = auth.server.tls.enabled();
        if auth_tls && task.auth_service_ca_file.is_none() {
            return Err(StackError::AuthCaMissing);
        }
        task.auth_service_url = url(auth_tls, auth_addr);
        if let Some(internal) = &task_listeners.internal
            && auth.deletions.task_internal_url.is_none()
        {
            let task_tls = task.server.tls.enabled();
            auth.deletions.task_internal_url = Some(url(task_tls, internal.local_addr()?));
            // The development CA issued both services' certificates.
            if task_tls && auth.deletions.task_internal_ca_file.is_none() {
                auth.deletions.task_internal_ca_file = task.auth_service_ca_file.clone();
            }
        }
        let auth = auth_service::Application::build_on(auth, clock.clone(), auth_listener).await?;
        let task = task_service::Application::build_on(task, clock, task_listeners).await?;
        let task_addr = task.local_addr()?;
        Ok(Self {
            auth,
            task,
            auth_addr,
            task_addr,
        })
    }

    /// Builds the auth-service only; [`AuthBuilt::with_task`] completes the stack (the
    /// benchmarks measure memory in between). A stack built so has no internal listener
    /// unless `INTERNAL_LISTEN_ADDR` is set, and delivers no account deletions.
    pub async fn build_auth(auth: AuthConfig, clock: SharedClock) -> Result<AuthBuilt, StackError> {
        let auth = auth_service::Application::build(auth, clock).await?;
        let auth_addr = auth.local_addr()?;
        Ok(AuthBuilt { auth, auth_addr })
    }

    /// Where the auth-service listens.
    pub fn auth_addr(&self) -> SocketAddr {
        self.auth_addr
    }

    /// Where the task-service listens.
    pub fn task_addr(&self) -> SocketAddr {
        self.task_addr
    }

    /// Where the task-service's internal listener is, if it has one.
    /// Where the auth-service serves its metrics (AUTH_METRICS_LISTEN_ADDR), if it does.
    pub fn auth_metrics_addr(&self) -> Option<SocketAddr> {
        self.auth.metrics_addr()
    }

    /// Where the task-service serves its metrics (TASK_METRICS_LISTEN_ADDR), if it does.
    pub fn task_metrics_addr(&self) -> Option<SocketAddr> {
        self.task.metrics_addr()
    }

    pub fn task_internal_addr(&self) -> Option<SocketAddr> {
        self.task.internal_addr()
    }

    /// The URL clients reach the auth-service at (`https://` when it serves TLS).
    pub fn auth_url(&self) -> String {
        url(self.auth.serves_tls(), self.auth_addr)
    }

    /// The URL clients reach the task-service at (`https://` when it serves TLS).
    pub fn task_url(&self) -> String {
        url(self.task.serves_tls(), self.task_addr)
    }

    /// The task-service's verification-key cache (for tests and benchmarks).
    pub fn task_keys(&self) -> std::sync::Arc<task_service::internals::FetchedKeys> {
        self.task.keys()
    }

    /// The auth-service's use cases (for benchmarks that mint tokens without signing in).
    pub fn auth_rules(&self) -> auth_service::internals::Rules {
        self.auth.rules()
    }

    /// Serves both until `shutdown` completes (or one of them stops on its own), then shuts
    /// them down gracefully: the task-service first, since its in-flight RPCs may still need
    /// the auth-service (unknown-key fetches, Introspect in strict mode).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StackError> {
        let (stop_auth, auth_stopped) = watch::channel(false);
        let (stop_task, task_stopped) = watch::channel(false);
        let mut auth = tokio::spawn(self.auth.run(when_told(auth_stopped)));
        let mut task = tokio::spawn(self.task.run(when_told(task_stopped)));
        let (mut auth_result, mut task_result) = (None, None);
        tokio::select! {
            () = shutdown => {}
            result = &mut auth => auth_result = Some(result),
            result = &mut task => task_result = Some(result),
        }
        let _ = stop_task.send(true);
        let task_result = match task_result {
            Some(result) => result,
            None => task.await,
        };
        let _ = stop_auth.send(true);
        let auth_result = match auth_result {
            Some(result) => result,
            None => auth.await,
        };
        task_result??;
        auth_result??;
        Ok(())
    }
}

/// The auth-service built and bound, the task-service not yet.
pub struct AuthBuilt {
    auth: auth_service::Application,
    auth_addr: SocketAddr,
}

impl AuthBuilt {
    /// Builds the task-service with `AUTH_SERVICE_URL` pointing at this auth-service:
    /// `https://` when it serves TLS, which needs `AUTH_SERVICE_CA_FILE` (the system's roots
    /// would start, then refuse every handshake with a development certificate).
    pub async fn with_task(
        self,
        mut task: TaskConfig,
        clock: SharedClock,
    ) -> Result<Stack, StackError> {
        let tls = self.auth.serves_tls();
        if tls && task.auth_service_ca_file.is_none() {
            return Err(StackError::AuthCaMissing);
        }
        task.auth_service_url = url(tls, self.auth_addr);
        let task = task_service::Application::build(task, clock).await?;
        let task_addr = task.local_addr()?;
        Ok(Stack {
            auth: self.auth,
            task,
            auth_addr: self.auth_addr,
            task_addr,
        })
    }
}

/// `http://addr` or `https://addr`, with a wildcard address made connectable.
fn url(tls: bool, addr: SocketAddr) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", connectable(addr))
}

/// Completes when `stop` turns true (or its sender is dropped).
async fn when_told(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// An address clients can connect to: a wildcard listen address becomes loopback.
pub fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

/// Waits until `addr`'s health service reports `service` SERVING, polling every 50 ms for at
/// most `within`; why not, otherwise.
pub async fn wait_until_serving(
    addr: SocketAddr,
    service: &str,
    within: std::time::Duration,
) -> Result<(), String> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let deadline = tokio::time::Instant::now() + within;
    // One channel for every poll: it connects (and reconnects) on its own.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(within)
        .connect_lazy();
    let mut health = HealthClient::new(channel);
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        match health.check(request).await {
            Ok(answer) if answer.get_ref().status() == ServingStatus::Serving => return Ok(()),
            Ok(answer) => last = format!("{:?}", answer.get_ref().status()),
            Err(status) => last = status.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!(
        "{service} at {addr} never reported SERVING within {within:?} (last: {last})"
    ))
}
