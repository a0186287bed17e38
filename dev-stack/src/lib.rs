//! The whole product in one process, for development: the auth-service and the
//! task-service, started through their library `build`/`run` functions, the task-service
//! pointed at this auth-service, both stopped together.

use auth_service::config::AuthConfig;
use shared::clock::SharedClock;
use std::{future::Future, net::SocketAddr};
use task_service::config::TaskConfig;
use tokio::{sync::watch, task::JoinHandle};

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
}

/// Both services, built and bound, not yet serving.
pub struct Stack {
    auth: auth_service::Application,
    task: task_service::Application,
    auth_addr: SocketAddr,
    task_addr: SocketAddr,
}

impl Stack {
    /// Builds the auth-service, then the task-service with `AUTH_SERVICE_URL` pointing at it.
    pub async fn build(
        auth: AuthConfig,
        mut task: TaskConfig,
        clock: SharedClock,
    ) -> Result<Self, StackError> {
        let auth = auth_service::Application::build(auth, clock.clone()).await?;
        let auth_addr = auth.local_addr()?;
        task.auth_service_url = format!("http://{}", connectable(auth_addr));
        let task = task_service::Application::build(task, clock).await?;
        let task_addr = task.local_addr()?;
        Ok(Self {
            auth,
            task,
            auth_addr,
            task_addr,
        })
    }

    /// Where the auth-service listens.
    pub fn auth_addr(&self) -> SocketAddr {
        self.auth_addr
    }

    /// Where the task-service listens.
    pub fn task_addr(&self) -> SocketAddr {
        self.task_addr
    }

    /// Serves both until `shutdown` completes (or one of them fails), then shuts both down
    /// gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StackError> {
        let (stop, stopped) = watch::channel(false);
        let when_stopped = |mut stopped: watch::Receiver<bool>| async move {
            // A dropped sender also means "stop".
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let mut auth: JoinHandle<Result<(), StackError>> = {
            let run = self.auth.run(when_stopped(stopped.clone()));
            tokio::spawn(async move { Ok(run.await?) })
        };
        let mut task: JoinHandle<Result<(), StackError>> = {
            let run = self.task.run(when_stopped(stopped));
            tokio::spawn(async move { Ok(run.await?) })
        };
        let early = tokio::select! {
            () = shutdown => None,
            result = &mut auth => Some(result),
            result = &mut task => Some(result),
        };
        let _ = stop.send(true);
        if let Some(result) = early {
            // One service ended on its own: stop the other and report why.
            wait_unless_finished(&mut auth).await;
            wait_unless_finished(&mut task).await;
            return result?;
        }
        let (auth, task) = (auth.await?, task.await?);
        auth.and(task)
    }
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

/// Waits for a server task unless it has finished (it may already have been awaited).
async fn wait_unless_finished<T>(handle: &mut JoinHandle<T>) {
    if !handle.is_finished() {
        let _ = handle.await;
    }
}
