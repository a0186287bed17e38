//! What one client may make the server hold: open connections (MAX_CONNECTIONS), how long a
//! connection with nothing in flight stays open (CONNECTION_IDLE_TIMEOUT_SECS), and streaming
//! RPCs (health Watch, reflection: they need no token and can stay open for as long as the
//! client likes) in total and per connection.
//!
//! Accepted connections are [`Tracked`]: each holds one of the connection permits and its
//! counters, found again by the peer address tonic puts in every request. [`ConnectionLayer`]
//! counts the RPCs in flight on the connection (until their response body ends) and admits
//! streaming RPCs, answering RESOURCE_EXHAUSTED with `ErrorInfo` `TOO_MANY_STREAMS` past a
//! limit. An idle connection is ended by its reader reporting end of stream, which makes hyper
//! close it.

use crate::settings::ConnectionArgs;
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The streaming RPCs the server serves (all of ours are unary).
const STREAMING_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The open connections and their limits, shared by the accept loop and the layer.
#[derive(Debug)]
pub(crate) struct Connections {
    permits: Arc<Semaphore>,
    open: Mutex<HashMap<SocketAddr, Arc<Counters>>>,
    idle_timeout: Option<Duration>,
    streams: Arc<Semaphore>,
    max_streams: usize,
    streams_per_connection: usize,
    domain: &'static str,
    epoch: Instant,
}

/// One connection's counters.
#[derive(Debug, Default)]
struct Counters {
    in_flight: AtomicUsize,
    streams: AtomicUsize,
    /// When an RPC last started or ended, in milliseconds since [`Connections::epoch`].
    last_active_ms: AtomicU64,
}

impl Connections {
    /// `domain` is the `ErrorInfo` domain of refusals (the API's package).
    pub(crate) fn new(args: &ConnectionArgs, domain: &'static str) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(args.max_connections.max(1))),
            open: Mutex::new(HashMap::new()),
            idle_timeout: args.idle_timeout(),
            streams: Arc::new(Semaphore::new(args.max_streaming_rpcs.max(1))),
            max_streams: args.max_streaming_rpcs.max(1),
            streams_per_connection: args.max_streaming_rpcs_per_connection.max(1),
            domain,
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn counters(&self, peer: SocketAddr) -> Option<Arc<Counters>> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&peer).cloned()
    }

    /// When `counters`' connection becomes idle-expired, or `None` if it already is.
    fn idle_deadline(&self, counters: &Counters, timeout: Duration) -> Option<Instant> {
        let now = Instant::now();
        if counters.in_flight.load(Ordering::Acquire) > 0 {
            return Some(now + timeout);
        }
        let last = Duration::from_millis(counters.last_active_ms.load(Ordering::Acquire));
        let deadline = self.epoch + last + timeout;
        (deadline > now).then_some(deadline)
    }
}

/// Accepted connections, each [`Tracked`]; waits for a connection permit before accepting,
/// so past MAX_CONNECTIONS further clients wait in the kernel's accept queue.
pub(crate) fn incoming(
    listener: TcpListener,
    connections: Arc<Connections>,
) -> impl Stream<Item = io::Result<Tracked>> + Send + 'static {
    futures_util::stream::unfold(
        (listener, connections),
        |(listener, connections)| async move {
            let permit = Arc::clone(&connections.permits)
                .acquire_owned()
                .await
                .ok()?;
            let accepted = match listener.accept().await {
                Ok((stream, peer)) => {
                    // Small unary replies: do not wait to fill a segment.
                    let _ = stream.set_nodelay(true);
                    Ok(Tracked::new(stream, peer, permit, Arc::clone(&connections)))
                }
                Err(error) => {
                    // e.g. out of file descriptors: give the process a moment instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(error)
                }
            };
            Some((accepted, (listener, connections)))
        },
    )
}

/// An accepted connection: its permit, its counters, and its idle timer.
pub(crate) struct Tracked {
    inner: TcpStream,
    peer: SocketAddr,
    counters: Arc<Counters>,
    connections: Arc<Connections>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    _permit: OwnedSemaphorePermit,
}

impl Tracked {
    fn new(
        inner: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
        connections: Arc<Connections>,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        counters
            .last_active_ms
            .store(connections.now_ms(), Ordering::Release);
        connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, Arc::clone(&counters));
        let idle = connections
            .idle_timeout
            .map(|timeout| (timeout, Box::pin(tokio::time::sleep(timeout))));
        Self {
            inner,
            peer,
            counters,
            connections,
            idle,
            _permit: permit,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open
            .get(&self.peer)
            .is_some_and(|c| Arc::ptr_eq(c, &self.counters))
        {
            open.remove(&self.peer);
        }
    }
}

impl Connected for Tracked {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if read.is_pending()
            && let Some((timeout, sleep)) = &mut this.idle
        {
            while sleep.as_mut().poll(cx).is_ready() {
                match this.connections.idle_deadline(&this.counters, *timeout) {
                    Some(deadline) => sleep.as_mut().reset(deadline),
                    None => {
                        tracing::debug!(peer = %this.peer, "closing an idle connection");
                        // End of stream: hyper closes the connection.
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
        read
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

mod layer;

pub(crate) use layer::ConnectionLayer;
#[cfg(test)]
use layer::InFlight;

#[cfg(test)]
mod tests;
