//! Shutdown on SIGINT (Ctrl-C) or SIGTERM.

use std::future::Future;

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called
/// (inside the runtime), not when the future is first polled, so a signal that arrives while
/// the server is still starting is not lost to the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = [SignalKind::interrupt(), SignalKind::terminate()].map(|kind| {
            signal(kind)
                .inspect_err(|error| tracing::error!(%error, ?kind, "cannot listen for a signal"))
                .ok()
        });
        async move {
            let [interrupt, terminate] = streams;
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
