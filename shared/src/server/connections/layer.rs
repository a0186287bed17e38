//! The layer half of the connection limits: every RPC is counted on its connection until its
//! response body ends, and streaming RPCs are admitted against the limits.

use super::{Connections, Counters, STREAMING_PATHS, TOO_MANY_STREAMS};
use crate::server::HeldUntilSent;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};
use tokio::sync::OwnedSemaphorePermit;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

/// Counts RPCs per connection and admits streaming RPCs (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLayer {
    connections: Arc<Connections>,
}

impl ConnectionLayer {
    pub(crate) fn new(connections: Arc<Connections>) -> Self {
        Self { connections }
    }
}

impl<S> Layer<S> for ConnectionLayer {
    type Service = ConnectionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectionService {
            inner,
            connections: Arc::clone(&self.connections),
        }
    }
}

/// The service made by [`ConnectionLayer`].
#[derive(Debug, Clone)]
pub(crate) struct ConnectionService<S> {
    inner: S,
    connections: Arc<Connections>,
}

/// Held while an RPC is in flight (until its response body ends or is dropped), with what
/// its handler asked to keep until then ([`HeldUntilSent`]).
#[derive(Debug)]
pub(crate) struct InFlight {
    counters: Option<Arc<Counters>>,
    connections: Arc<Connections>,
    stream: Option<OwnedSemaphorePermit>,
    held: Option<HeldUntilSent>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(counters) = &self.counters {
            counters
                .last_active_ms
                .store(self.connections.now_ms(), Ordering::Release);
            counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            if self.stream.is_some() {
                counters.streams.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl InFlight {
    pub(super) fn start(connections: &Arc<Connections>, peer: Option<SocketAddr>) -> Self {
        let counters = peer.and_then(|peer| connections.counters(peer));
        if let Some(counters) = &counters {
            counters.in_flight.fetch_add(1, Ordering::AcqRel);
            counters
                .last_active_ms
                .store(connections.now_ms(), Ordering::Release);
        }
        Self {
            counters,
            connections: Arc::clone(connections),
            stream: None,
            held: None,
        }
    }

    /// Takes a stream slot, on the server and on this connection.
    pub(super) fn admit_stream(&mut self) -> Result<(), tonic::Status> {
        let c = &self.connections;
        let Ok(permit) = Arc::clone(&c.streams).try_acquire_owned() else {
            return Err(too_many_streams(c, "MAX_STREAMING_RPCS", c.max_streams));
        };
        if let Some(counters) = &self.counters
            && counters.streams.fetch_add(1, Ordering::AcqRel) >= c.streams_per_connection
        {
            counters.streams.fetch_sub(1, Ordering::AcqRel);
            return Err(too_many_streams(
                c,
                "MAX_STREAMING_RPCS_PER_CONNECTION",
                c.streams_per_connection,
            ));
        }
        self.stream = Some(permit);
        Ok(())
    }
}

fn too_many_streams(connections: &Connections, setting: &str, limit: usize) -> tonic::Status {
    super::super::limits::resource_exhausted(
        TOO_MANY_STREAMS,
        connections.domain,
        [
            ("setting", setting.to_owned()),
            ("limit", limit.to_string()),
        ],
        format!("too many streaming calls open ({setting}={limit}); close one and retry"),
    )
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ConnectionService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<Counted<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // Plain TCP, or TLS over it.
        let extensions = request.extensions();
        let peer = extensions
            .get::<TcpConnectInfo>()
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .map(TlsConnectInfo::get_ref)
            })
            .and_then(TcpConnectInfo::remote_addr);
        let mut in_flight = InFlight::start(&self.connections, peer);
        if STREAMING_PATHS.contains(&request.uri().path())
            && let Err(status) = in_flight.admit_stream()
        {
            let response = status.into_http::<ResBody>();
            return Box::pin(async move { Ok(response.map(|body| Counted::new(body, in_flight))) });
        }
        let call = self.inner.call(request);
        Box::pin(async move {
            let mut response = call.await?;
            in_flight.held = response.extensions_mut().remove::<HeldUntilSent>();
            Ok(response.map(|body| Counted::new(body, in_flight)))
        })
    }
}

/// A response body that keeps its RPC counted until it ends.
pub(crate) struct Counted<B> {
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B> Counted<B> {
    fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.in_flight = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
