//! What one client may make the server hold: open connections (MAX_CONNECTIONS, and
//! MAX_CONNECTIONS_PER_CLIENT per address or IPv6 /64), how long a connection may stay silent
//! before it has said anything (CONNECTION_PREFACE_TIMEOUT_SECS) and with nothing in flight
//! (CONNECTION_IDLE_TIMEOUT_SECS), and streaming RPCs (WatchTasks; health Watch and
//! reflection, which need no token: all can stay open for as long as the client likes) in
//! total, per client and per connection.
//!
//! Accepting never stops. An accepted connection is admitted ([`Connections::admit`]) or
//! closed at once: past its client's share, or when the server is full and no client holding
//! more than one more connection than the newcomer's has an idle one to give. When the server
//! is full, a client holding fewer connections takes the place of an idle connection (nothing
//! in flight, or RPCs that have moved no data for 10 s) of the client holding the most ("fair
//! eviction"), so a small group of addresses cannot keep everyone else out.
//!
//! Response bodies hand data to HTTP/2 only while the connection's socket keeps up (at most
//! 256 KiB handed over and not yet written): what a client that stops reading makes the server
//! hold outside the bodies, where replies stay charged to their budgets, is bounded per
//! connection, whatever flow-control windows it grants. An evicted or closed connection's
//! reads end and its writes fail, so hyper lets go of it even if the client reads nothing.
//! Trusted proxies (TRUSTED_PROXIES) carry many clients' requests and have no per-client
//! connection share; streams behind them are charged to the forwarded client.
//!
//! Admitted connections are [`Tracked`]: each holds its counters, found again by the peer
//! address tonic puts in every request. [`ConnectionLayer`] counts the RPCs in flight on the
//! connection (until their response body ends) and admits streaming RPCs, answering
//! RESOURCE_EXHAUSTED with `ErrorInfo` `TOO_MANY_STREAMS` past a limit. Streams that need no
//! token (health Watch, reflection) and WatchTasks streams have limits of their own
//! ([`StreamKind`]), so neither kind can crowd out the other. A connection is ended
//! (idle, silent or evicted) by its reader reporting end of stream, which makes hyper close it.

use crate::{
    client_address::{ClientKey, TrustedProxies},
    settings::ConnectionArgs,
};
use futures_util::task::AtomicWaker;
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{Instant, Sleep},
};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The two kinds of streaming RPC, each with slots and shares of its own: streams anyone may
/// open without a token cannot take the slots of users' WatchTasks streams, nor the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// Health `Watch` and reflection: no token needed (MAX_STREAMING_RPCS*).
    Anonymous = 0,
    /// WatchTasks: a verified user's (MAX_WATCH_STREAMS*; the task-service also bounds them
    /// per user).
    Watch = 1,
}

impl StreamKind {
    /// The kind's name as a fair-share resource in metrics.
    fn resource(self) -> &'static str {
        match self {
            Self::Anonymous => "streams",
            Self::Watch => "watch_streams",
        }
    }
}

/// The streaming RPCs the servers serve, and their kind (every other RPC of ours is unary).
const STREAMING_PATHS: &[(&str, StreamKind)] = &[
    ("/todo.task.v1.TaskService/WatchTasks", StreamKind::Watch),
    ("/grpc.health.v1.Health/Watch", StreamKind::Anonymous),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        StreamKind::Anonymous,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        StreamKind::Anonymous,
    ),
];

/// The kind of the streaming RPC at `path`, `None` for a unary one.
fn stream_kind(path: &str) -> Option<StreamKind> {
    STREAMING_PATHS
        .iter()
        .find(|(streaming, _)| *streaming == path)
        .map(|(_, kind)| *kind)
}

/// The limits of one kind of stream, and who holds them.
#[derive(Debug)]
struct StreamLimits {
    slots: Arc<Semaphore>,
    max: usize,
    per_connection: usize,
    per_client: usize,
    clients: Mutex<HashMap<ClientKey, usize>>,
    /// The settings of `max`, `per_client` and `per_connection`, named in refusals.
    settings: [&'static str; 3],
}

impl StreamLimits {
    fn new(
        max: usize,
        per_client: usize,
        per_connection: usize,
        settings: [&'static str; 3],
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max.max(1))),
            max: max.max(1),
            per_connection: per_connection.max(1),
            per_client: per_client.max(1),
            clients: Mutex::new(HashMap::new()),
            settings,
        }
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<ClientKey, usize>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Bytes a client must have sent within the preface timeout: the HTTP/2 connection preface
/// is 24 bytes, and any HTTP/1.1 request line with its Host header or a TLS ClientHello is
/// longer.
const PREFACE_BYTES: u64 = 24;

/// The open connections and their limits, shared by the accept loop and the layer.
#[derive(Debug)]
pub(crate) struct Connections {
    table: Mutex<Table>,
    max_connections: usize,
    connections_per_client: usize,
    preface_timeout: Duration,
    idle_timeout: Option<Duration>,
    /// By [`StreamKind`].
    streams: [StreamLimits; 2],
    proxies: TrustedProxies,
    domain: &'static str,
    epoch: Instant,
    /// Where refusals are counted, and this listener's name there.
    metrics: Option<(crate::metrics::Metrics, &'static str)>,
    /// Connections refused past MAX_CONNECTIONS_PER_CLIENT, past MAX_CONNECTIONS, and
    /// evicted for a newcomer: taken once, counted without a lookup under the table's lock.
    admissions: Option<[prometheus_client::metrics::counter::Counter; 3]>,
}

/// The admitted connections, by peer and (except trusted proxies') by client.
#[derive(Debug, Default)]
struct Table {
    by_peer: HashMap<SocketAddr, Arc<Counters>>,
    /// Trusted proxies carry many clients: their connections are in no client's share, and
    /// never make way for a newcomer.
    by_client: HashMap<ClientKey, Vec<Arc<Counters>>>,
    total: usize,
}

impl Table {
    fn insert(&mut self, counters: &Arc<Counters>) {
        self.by_peer.insert(counters.peer, Arc::clone(counters));
        if !counters.proxy {
            self.by_client
                .entry(counters.client)
                .or_default()
                .push(Arc::clone(counters));
        }
        self.total += 1;
    }

    /// Removes `counters`' connection if it is still here (an evicted one already is not).
    fn remove(&mut self, counters: &Arc<Counters>) {
        let listed = self
            .by_peer
            .get(&counters.peer)
            .is_some_and(|c| Arc::ptr_eq(c, counters));
        if !listed {
            return;
        }
        self.by_peer.remove(&counters.peer);
        self.total -= 1;
        if let Some(held) = self.by_client.get_mut(&counters.client) {
            held.retain(|c| !Arc::ptr_eq(c, counters));
            if held.is_empty() {
                self.by_client.remove(&counters.client);
            }
        }
    }

    /// The connection to close for a newcomer whose client holds `held`: of the client holding
    /// the most (more than `held + 1`) that has one to give, the one idle longest. A
    /// connection gives way when nothing is in flight on it, or when its RPCs have moved no
    /// data for [`STALLED`] (a client that holds an RPC open by never granting window).
    fn eviction_for(&self, held: usize, now_ms: u64) -> Option<Arc<Counters>> {
        let stalled_ms = u64::try_from(STALLED.as_millis()).unwrap_or(u64::MAX);
        let mut best: Option<(usize, &Arc<Counters>)> = None;
        for conns in self.by_client.values() {
            if conns.len() <= held + 1 || best.is_some_and(|(most, _)| conns.len() <= most) {
                continue;
            }
            let victim = conns
                .iter()
                .filter(|c| {
                    c.in_flight.load(Ordering::Acquire) == 0
                        || now_ms.saturating_sub(c.last_data_ms.load(Ordering::Acquire))
                            >= stalled_ms
                })
                .min_by_key(|c| c.last_active_ms.load(Ordering::Acquire));
            if let Some(victim) = victim {
                best = Some((conns.len(), victim));
            }
        }
        best.map(|(_, victim)| Arc::clone(victim))
    }
}

/// How long RPCs in flight may move no data before their connection may make way for a
/// newcomer when the server is full.
const STALLED: Duration = Duration::from_secs(10);

/// Bytes response bodies may have handed to HTTP/2 on one connection beyond what has been
/// written to its socket; past it, bodies wait. What a client that does not read makes the
/// server hold outside the bodies (where replies stay charged) is then this much per
/// connection, whatever the windows it grants.
const MAX_UNWRITTEN_BYTES: u64 = 256 * 1024;

/// Why an accepted connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its client already holds MAX_CONNECTIONS_PER_CLIENT.
    ClientShare,
    /// MAX_CONNECTIONS are open, and no client holding more than one more than the
    /// newcomer's has an idle (or stalled) connection to give.
    Full,
}

/// One connection's counters.
#[derive(Debug)]
struct Counters {
    peer: SocketAddr,
    /// The TCP peer's client (address or /64).
    client: ClientKey,
    /// The peer is a trusted proxy.
    proxy: bool,
    in_flight: AtomicUsize,
    /// Open streaming RPCs, by [`StreamKind`].
    streams: [AtomicUsize; 2],
    /// When an RPC last started or ended, in milliseconds since [`Connections::epoch`].
    last_active_ms: AtomicU64,
    /// When an RPC last started or a response body last handed over data.
    last_data_ms: AtomicU64,
    /// Response bytes handed to HTTP/2, and bytes written to the socket.
    handed: AtomicU64,
    written: AtomicU64,
    /// Response bodies waiting for the socket to drain below [`MAX_UNWRITTEN_BYTES`].
    waiting_bodies: Mutex<Vec<Waker>>,
    /// Set when a newcomer took this connection's place (or a service closed it): its reader
    /// reports end of stream and its writer fails, so hyper closes it even if the client
    /// reads nothing.
    evicted: AtomicBool,
    io: AtomicWaker,
}

impl Counters {
    fn new(peer: SocketAddr, client: ClientKey, proxy: bool, now_ms: u64) -> Self {
        Self {
            peer,
            client,
            proxy,
            in_flight: AtomicUsize::new(0),
            streams: [AtomicUsize::new(0), AtomicUsize::new(0)],
            last_active_ms: AtomicU64::new(now_ms),
            last_data_ms: AtomicU64::new(now_ms),
            handed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            waiting_bodies: Mutex::new(Vec::new()),
            evicted: AtomicBool::new(false),
            io: AtomicWaker::new(),
        }
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.io.wake();
        self.wake_bodies();
    }

    fn unwritten(&self) -> u64 {
        self.handed
            .load(Ordering::Acquire)
            .saturating_sub(self.written.load(Ordering::Acquire))
    }

    /// Whether a body may hand over more data now; if not, `cx` is woken when it may. A
    /// trusted proxy's connection is exempt: its streams are many clients', and one slow
    /// client's data waiting in HTTP/2 must not hold up the others' (a proxy reads its
    /// socket; what waits there is at most one piece per stream).
    fn may_hand_over(&self, cx: &Context<'_>) -> bool {
        if self.proxy
            || self.unwritten() < MAX_UNWRITTEN_BYTES
            || self.evicted.load(Ordering::Acquire)
        {
            return true;
        }
        self.waiting_bodies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cx.waker().clone());
        // Written meanwhile: the writer may have woken the list before this waker was in it.
        self.unwritten() < MAX_UNWRITTEN_BYTES
    }

    fn handed_over(&self, bytes: usize, now_ms: u64) {
        self.handed.fetch_add(bytes as u64, Ordering::AcqRel);
        self.last_data_ms.store(now_ms, Ordering::Release);
    }

    fn wrote(&self, bytes: usize) {
        self.written.fetch_add(bytes as u64, Ordering::AcqRel);
        if self.unwritten() < MAX_UNWRITTEN_BYTES {
            self.wake_bodies();
        }
    }

    fn wake_bodies(&self) {
        let waiting = std::mem::take(
            &mut *self
                .waiting_bodies
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for waker in waiting {
            waker.wake();
        }
    }
}

/// The connection a request came on, as handlers see it (in the request's extensions): what
/// a service that holds something for a client (unread replies) can close to get it back.
#[derive(Clone)]
pub struct ConnectionHandle(Arc<Counters>);

impl ConnectionHandle {
    /// Closes the connection (its reader reports end of stream, and hyper drops its streams
    /// and their response bodies). A trusted proxy's connection carries other clients'
    /// calls: it is never closed, and this returns false.
    pub fn close(&self) -> bool {
        if self.0.proxy {
            return false;
        }
        self.0.evict();
        true
    }
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConnectionHandle")
            .field(&self.0.client)
            .finish()
    }
}

impl Connections {
    /// `domain` is the `ErrorInfo` domain of refusals (the API's package); `proxies` are the
    /// trusted proxies, whose connections carry other clients.
    pub(crate) fn new(
        args: &ConnectionArgs,
        proxies: TrustedProxies,
        domain: &'static str,
        metrics: Option<(&crate::metrics::Metrics, &'static str)>,
    ) -> Arc<Self> {
        let connections = Arc::new(Self {
            table: Mutex::new(Table::default()),
            max_connections: args.max_connections.max(1),
            connections_per_client: args.max_connections_per_client.max(1),
            preface_timeout: args.preface_timeout(),
            idle_timeout: args.idle_timeout(),
            streams: [
                StreamLimits::new(
                    args.max_streaming_rpcs,
                    args.max_streaming_rpcs_per_client,
                    args.max_streaming_rpcs_per_connection,
                    [
                        "MAX_STREAMING_RPCS",
                        "MAX_STREAMING_RPCS_PER_CLIENT",
                        "MAX_STREAMING_RPCS_PER_CONNECTION",
                    ],
                ),
                StreamLimits::new(
                    args.max_watch_streams,
                    args.max_watch_streams_per_client,
                    args.max_watch_streams_per_connection,
                    [
                        "MAX_WATCH_STREAMS",
                        "MAX_WATCH_STREAMS_PER_CLIENT",
                        "MAX_WATCH_STREAMS_PER_CONNECTION",
                    ],
                ),
            ],
            proxies,
            domain,
            epoch: Instant::now(),
            metrics: metrics.map(|(m, listener)| (m.clone(), listener)),
            admissions: metrics.map(|(m, listener)| {
                let refused = |reason| {
                    m.refusals(&vec![
                        ("resource", "connections"),
                        ("listener", listener),
                        ("reason", reason),
                    ])
                };
                [
                    refused("MAX_CONNECTIONS_PER_CLIENT"),
                    refused("MAX_CONNECTIONS"),
                    m.evictions(&vec![("resource", "connections"), ("listener", listener)]),
                ]
            }),
        });
        if let Some((metrics, listener)) = metrics {
            connections.report_use(metrics, listener);
        }
        connections
    }

    /// Registers this listener's connections and streams in use as fair-share gauges, read at
    /// each scrape for as long as the listener lives.
    fn report_use(self: &Arc<Self>, metrics: &crate::metrics::Metrics, listener: &'static str) {
        let weak = Arc::downgrade(self);
        // The RPCs each connection counts anyway: in flight until their response ends.
        metrics.gauge_fn(
            "rpc_server_active_calls",
            "RPCs in flight (until their response ends: open streams included), by listener",
            vec![("listener", listener)],
            move || {
                weak.upgrade().map(|c| {
                    let in_flight: usize = c
                        .table()
                        .by_peer
                        .values()
                        .map(|counters| counters.in_flight.load(Ordering::Acquire))
                        .sum();
                    i64::try_from(in_flight).unwrap_or(i64::MAX)
                })
            },
        );
        let weak = Arc::downgrade(self);
        metrics.fair_share(
            vec![("resource", "connections"), ("listener", listener)],
            self.max_connections as u64,
            move || weak.upgrade().map(|c| c.table().total as u64),
        );
        for kind in [StreamKind::Anonymous, StreamKind::Watch] {
            let limits = &self.streams[kind as usize];
            let weak = Arc::downgrade(self);
            metrics.fair_share(
                vec![("resource", kind.resource()), ("listener", listener)],
                limits.max as u64,
                move || {
                    weak.upgrade().map(|c| {
                        let limits = &c.streams[kind as usize];
                        limits.max.saturating_sub(limits.slots.available_permits()) as u64
                    })
                },
            );
        }
    }

    /// Counts a refusal of `resource` by the setting `reason`.
    fn refused(&self, resource: &'static str, reason: &'static str) {
        if let Some((metrics, listener)) = &self.metrics {
            metrics.refused(&vec![
                ("resource", resource),
                ("listener", listener),
                ("reason", reason),
            ]);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whom a request from `peer` is charged to: behind a trusted proxy, the forwarded client.
    fn client_of<B>(&self, peer: Option<SocketAddr>, request: &http::Request<B>) -> ClientKey {
        let metadata = tonic::metadata::MetadataMap::from_headers(request.headers().clone());
        self.proxies.client(peer, &metadata)
    }

    /// Admits a connection from `peer`, or says why it is closed at once (module docs).
    fn admit(&self, peer: SocketAddr) -> Result<Arc<Counters>, Refused> {
        let client = ClientKey::from_ip(peer.ip());
        let proxy = self.proxies.trusts(peer.ip());
        let now_ms = self.now_ms();
        let mut table = self.table();
        // A trusted proxy holds no client's share: as a newcomer it holds nothing.
        let held = if proxy {
            0
        } else {
            table.by_client.get(&client).map_or(0, Vec::len)
        };
        let count = |which: usize| {
            if let Some(counters) = &self.admissions {
                counters[which].inc();
            }
        };
        if !proxy && held >= self.connections_per_client {
            count(0);
            return Err(Refused::ClientShare);
        }
        if table.total >= self.max_connections {
            let Some(victim) = table.eviction_for(held, now_ms) else {
                count(1);
                return Err(Refused::Full);
            };
            table.remove(&victim);
            victim.evict();
            count(2);
        }
        let counters = Arc::new(Counters::new(peer, client, proxy, now_ms));
        table.insert(&counters);
        Ok(counters)
    }

    /// The counters of the connection from `peer`, with one more RPC in flight on it, taken
    /// under the table's lock so that no eviction picks the connection as this RPC starts.
    fn start_rpc(&self, peer: SocketAddr) -> Option<Arc<Counters>> {
        let table = self.table();
        let counters = table.by_peer.get(&peer)?;
        counters.in_flight.fetch_add(1, Ordering::AcqRel);
        let now_ms = self.now_ms();
        counters.last_active_ms.store(now_ms, Ordering::Release);
        counters.last_data_ms.store(now_ms, Ordering::Release);
        Some(Arc::clone(counters))
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

/// Accepted and admitted connections, each [`Tracked`]. Accepting never waits: a connection
/// that is not admitted is closed at once.
pub(crate) fn incoming(
    listener: TcpListener,
    connections: Arc<Connections>,
) -> impl Stream<Item = io::Result<Tracked>> + Send + 'static {
    futures_util::stream::unfold(
        (listener, connections),
        |(listener, connections)| async move {
            loop {
                let accepted = match listener.accept().await {
                    Ok((stream, peer)) => match connections.admit(peer) {
                        Ok(counters) => {
                            // Small unary replies: do not wait to fill a segment.
                            let _ = stream.set_nodelay(true);
                            Ok(Tracked::new(
                                stream,
                                peer,
                                counters,
                                Arc::clone(&connections),
                            ))
                        }
                        Err(refused) => {
                            tracing::debug!(%peer, ?refused, "connection refused");
                            continue;
                        }
                    },
                    Err(error) => {
                        // e.g. out of file descriptors: give the process a moment instead of
                        // spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err(error)
                    }
                };
                return Some((accepted, (listener, connections)));
            }
        },
    )
}

/// An admitted connection: its counters, its preface and idle timers.
pub(crate) struct Tracked {
    inner: TcpStream,
    peer: SocketAddr,
    counters: Arc<Counters>,
    connections: Arc<Connections>,
    /// Until [`PREFACE_BYTES`] have been read: the deadline for them.
    preface: Option<(u64, Pin<Box<Sleep>>)>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl Tracked {
    fn new(
        inner: TcpStream,
        peer: SocketAddr,
        counters: Arc<Counters>,
        connections: Arc<Connections>,
    ) -> Self {
        let idle = connections
            .idle_timeout
            .map(|timeout| (timeout, Box::pin(tokio::time::sleep(timeout))));
        let preface = Some((0, Box::pin(tokio::time::sleep(connections.preface_timeout))));
        Self {
            inner,
            peer,
            counters,
            connections,
            preface,
            idle,
        }
    }

    /// Whether the connection is to end now: evicted, silent past the preface deadline, or
    /// idle past the idle timeout. Registers for the wake-ups that can change the answer.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.counters.io.register(cx.waker());
        if self.counters.evicted.load(Ordering::Acquire) {
            tracing::debug!(peer = %self.peer, "closing a connection another took the place of");
            return true;
        }
        if let Some((_, deadline)) = &mut self.preface
            && deadline.as_mut().poll(cx).is_ready()
        {
            tracing::debug!(peer = %self.peer, "closing a connection that sent no preface in time");
            return true;
        }
        if let Some((timeout, sleep)) = &mut self.idle {
            while sleep.as_mut().poll(cx).is_ready() {
                match self.connections.idle_deadline(&self.counters, *timeout) {
                    Some(deadline) => sleep.as_mut().reset(deadline),
                    None => {
                        tracing::debug!(peer = %self.peer, "closing an idle connection");
                        return true;
                    }
                }
            }
        }
        false
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.connections.table().remove(&self.counters);
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
        if this.counters.evicted.load(Ordering::Acquire) {
            // End of stream: hyper closes the connection.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &read {
            Poll::Ready(Ok(())) => {
                if let Some((seen, _)) = &mut this.preface {
                    *seen += (buf.filled().len() - before) as u64;
                    if *seen >= PREFACE_BYTES {
                        this.preface = None;
                    }
                }
            }
            Poll::Pending if this.expired(cx) => return Poll::Ready(Ok(())),
            _ => {}
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
        let this = self.get_mut();
        if this.counters.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(closing()));
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.counters.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(closing()));
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.counters.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(closing()));
        }
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if flushed.is_pending() {
            this.counters.io.register(cx.waker());
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.counters.evicted.load(Ordering::Acquire) {
            // Nothing more will be written: the socket closes when hyper drops it.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Tracked {
    /// Counts what was written (bodies waiting for the socket to drain may go on); a write
    /// that waits registers for eviction too, so a client that reads nothing is still closed.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match &written {
            Poll::Ready(Ok(n)) => self.counters.wrote(*n),
            Poll::Pending => self.counters.io.register(cx.waker()),
            Poll::Ready(Err(_)) => {}
        }
        written
    }
}

/// The error an evicted connection's writes fail with, so hyper stops waiting to flush.
fn closing() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed by the server")
}

mod layer;

pub(crate) use layer::ConnectionLayer;
#[cfg(test)]
use layer::InFlight;

#[cfg(test)]
mod tests;
