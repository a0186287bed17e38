//! TLS on the server's port: our own handshake stream in front of tonic's serve loop (tonic's
//! `ServerTlsConfig` takes one fixed certificate and offers only `h2`).
//!
//! - Handshakes run in their own tasks, with a timeout, so a slow or silent client never holds
//!   up `accept`. A pending handshake is an admitted connection: how many one client may have
//!   pending is its connection share (MAX_CONNECTIONS_PER_CLIENT), it must send its ClientHello
//!   within CONNECTION_PREFACE_TIMEOUT_SECS, and while it is pending it is idle, so a client
//!   holding fewer connections may take its place when the server is full.
//! - ALPN offers `h2` then `http/1.1`: gRPC clients need `h2`, HTTP/1.1-only grpc-web clients
//!   (and `curl --http1.1`) need `http/1.1`; hyper tells the two apart by the connection
//!   preface either way.
//! - The certificate is asked for at each handshake from a [`ReloadingCert`] that a
//!   background task refreshes from the files every `TLS_RELOAD_SECS`.

use super::AbortOnDrop;
use crate::tls::{PemFile, ReloadingCert, TlsArgs, TlsError, crypto_provider};
use futures_util::Stream;
use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use std::{fmt::Debug, pin::Pin, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    task::JoinSet,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::StreamExt as _;
use tonic::transport::server::Connected;

/// Longest a client may take to finish its TLS handshake (a few round trips).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A loaded TLS setup for a server: pass it to [`super::GrpcServer::with_tls`].
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    cert: Arc<ReloadingCert>,
    reload_every: Option<Duration>,
    client_auth: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("reload_every", &self.reload_every)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The TLS setup `args` describe, `None` for plaintext. With `client_ca`, every client
    /// must present a certificate issued by it (mutual TLS). Reads the files (blocking: call
    /// it at start-up), so a missing or mismatched file stops start-up.
    pub fn load(args: &TlsArgs, client_ca: Option<PemFile>) -> Result<Option<Self>, TlsError> {
        let Some((cert, key)) = args.files()? else {
            return match client_ca {
                None => Ok(None),
                Some(ca) => Err(TlsError::Combination(format!(
                    "{} needs TLS: set TLS_CERT_FILE and TLS_KEY_FILE too, or unset {}",
                    ca.setting, ca.setting
                ))),
            };
        };
        let provider = crypto_provider();
        let cert = Arc::new(ReloadingCert::load(cert, key)?);
        let rustls_error = |context: String| move |source| TlsError::Rustls { context, source };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(rustls_error("TLS protocol versions".to_owned()))?;
        let client_auth = client_ca.is_some();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let pem = ca.read()?;
                let mut roots = RootCertStore::empty();
                for der in ca.certificates(&pem)? {
                    roots.add(der).map_err(rustls_error(format!(
                        "{}={}",
                        ca.setting,
                        ca.shown()
                    )))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| {
                            TlsError::Combination(format!("{}={}: {e}", ca.setting, ca.shown()))
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::clone(&cert) as _);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert,
            reload_every: args.reload_every(),
            client_auth,
        }))
    }

    /// How a server with this (or no) TLS setup is reached, for its start-up log line.
    pub fn mode(tls: Option<&Self>) -> &'static str {
        match tls {
            None => "plaintext (set TLS_CERT_FILE and TLS_KEY_FILE for TLS)",
            Some(tls) if tls.client_auth => "TLS, client certificates required",
            Some(_) => "TLS",
        }
    }

    /// The TLS connections made over the accepted connections `tcp` yields (any stream of
    /// them: tonic's `TcpIncoming` or a wrapper): handshakes run off the accept path. Reloads
    /// the certificate in the background while the stream lives; dropping the stream closes
    /// the listener, aborts pending handshakes and stops reloading.
    pub(crate) fn incoming<IO>(
        self,
        tcp: impl Stream<Item = std::io::Result<IO>> + Send + 'static,
        metrics: Option<(&crate::metrics::Metrics, &'static str)>,
    ) -> impl Stream<Item = std::io::Result<TlsStream<IO>>> + Send + 'static
    where
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IO::ConnectInfo: Debug,
    {
        let reloader = self
            .reload_every
            .map(|every| AbortOnDrop(tokio::spawn(reload_every(Arc::clone(&self.cert), every))));
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failures = metrics.map(|(metrics, listener)| {
            let weak = Arc::downgrade(&pending);
            // Pending handshakes are admitted connections: MAX_CONNECTIONS bounds them.
            metrics.in_use(
                vec![("resource", "tls_handshakes"), ("listener", listener)],
                move || {
                    weak.upgrade()
                        .map(|p| p.load(std::sync::atomic::Ordering::Relaxed) as u64)
                },
            );
            let refused = |reason| {
                metrics.refusals(&vec![
                    ("resource", "tls_handshakes"),
                    ("listener", listener),
                    ("reason", reason),
                ])
            };
            [refused("timed_out"), refused("failed")]
        });
        let state = Accepting {
            tcp: Box::pin(tcp),
            acceptor: self.acceptor,
            pending: JoinSet::new(),
            _reloader: reloader,
            pending_count: pending,
            failures,
        };
        futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
    }
}

/// A finished handshake, or who failed it, why, and whether it timed out.
type Handshake<IO> = Result<TlsStream<IO>, (String, String, bool)>;

/// The state of [`ServerTls::incoming`].
struct Accepting<IO> {
    tcp: Pin<Box<dyn Stream<Item = std::io::Result<IO>> + Send>>,
    acceptor: TlsAcceptor,
    pending: JoinSet<Handshake<IO>>,
    _reloader: Option<AbortOnDrop<()>>,
    /// `pending`'s length, for the `tls_handshakes` gauge.
    pending_count: Arc<std::sync::atomic::AtomicUsize>,
    /// Handshakes that timed out, and that failed otherwise (`fair_share_refusals_total`).
    failures: Option<[prometheus_client::metrics::counter::Counter; 2]>,
}

impl<IO> Accepting<IO>
where
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Debug,
{
    /// The next finished handshake, or an accept error (tonic logs it and goes on); `None`
    /// when the listener is done.
    async fn next(&mut self) -> Option<std::io::Result<TlsStream<IO>>> {
        loop {
            tokio::select! {
                accepted = self.tcp.next() => {
                    match accepted? {
                        Err(error) => return Some(Err(error)),
                        Ok(tcp) => {
                            self.pending.spawn(handshake(self.acceptor.clone(), tcp));
                            self.pending_count.store(self.pending.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    self.pending_count.store(self.pending.len(), std::sync::atomic::Ordering::Relaxed);
                    match done {
                        Ok(Ok(tls)) => return Some(Ok(tls)),
                        Ok(Err((peer, error, timed_out_now))) => {
                            if let Some([timed_out, failed]) = &self.failures {
                                if timed_out_now { timed_out.inc(); } else { failed.inc(); }
                            }
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(error) => tracing::warn!(%error, "TLS handshake task failed"),
                    }
                }
            }
        }
    }
}

async fn handshake<IO>(acceptor: TlsAcceptor, tcp: IO) -> Handshake<IO>
where
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Debug,
{
    let peer = tcp.connect_info();
    let (error, timed_out) =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => return Ok(tls),
            Ok(Err(error)) => (error.to_string(), false),
            Err(_) => ("timed out".to_owned(), true),
        };
    Err((format!("{peer:?}"), error, timed_out))
}

/// Checks the certificate files every `every` (off the runtime: plain file reads) and serves
/// a changed, valid pair to new connections.
async fn reload_every(cert: Arc<ReloadingCert>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last_error = None;
    loop {
        ticks.tick().await;
        let checked = Arc::clone(&cert);
        match tokio::task::spawn_blocking(move || checked.reload_if_changed()).await {
            Ok(Ok(true)) => {
                last_error = None;
                tracing::info!(path = %cert.cert_file().shown(), "TLS certificate reloaded");
            }
            Ok(Ok(false)) => last_error = None,
            Ok(Err(error)) => {
                let message = error.to_string();
                // Once per distinct problem, not every tick.
                if last_error.as_ref() != Some(&message) {
                    tracing::warn!(error = %message, "TLS certificate not reloaded; still serving the previous one");
                    last_error = Some(message);
                }
            }
            Err(error) => tracing::warn!(%error, "TLS certificate check failed"),
        }
    }
}
