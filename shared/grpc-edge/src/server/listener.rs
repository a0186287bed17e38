//! Binding the listen address, with errors that say which setting to change.

use std::{io::ErrorKind, net::SocketAddr};
use tokio::net::TcpListener;

/// The listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (set by {setting}): {source}{}", hint(setting, source.kind()))]
pub struct BindError {
    /// The setting the address came from, e.g. `AUTH_LISTEN_ADDR`.
    pub setting: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// Why it failed.
    pub source: std::io::Error,
}

fn hint(setting: &str, kind: ErrorKind) -> String {
    match kind {
        ErrorKind::AddrInUse => format!(
            ". Another process is using that port: stop it, or set {setting} to another \
             address (e.g. {setting}=127.0.0.1:0 for any free port; the log shows the one chosen)"
        ),
        ErrorKind::AddrNotAvailable => format!(
            ". That address is not one of this machine's: set {setting} to e.g. \
             127.0.0.1:50051 (this machine only) or 0.0.0.0:50051 (every interface)"
        ),
        ErrorKind::PermissionDenied => {
            format!(". Ports below 1024 need privileges: set {setting} to a port above 1024")
        }
        _ => String::new(),
    }
}

/// Binds `addr`, which came from the setting named `setting`.
pub async fn bind(setting: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        setting,
        addr,
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::bind;

    #[tokio::test]
    async fn a_taken_port_names_the_setting_and_how_to_pick_another() {
        let taken = bind("AUTH_LISTEN_ADDR", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = taken.local_addr().unwrap();
        let message = bind("AUTH_LISTEN_ADDR", addr)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!(
                "cannot listen on {addr} (set by AUTH_LISTEN_ADDR): "
            )),
            "{message}"
        );
        assert!(
            message.contains("AUTH_LISTEN_ADDR=127.0.0.1:0"),
            "{message}"
        );
    }
}
