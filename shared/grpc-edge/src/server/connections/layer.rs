//! The layer half of the connection limits: every RPC is counted on its connection until its
//! response body ends, and streaming RPCs are admitted against the limits.

use super::{ConnectionHandle, Connections, Counters, StreamKind, stream_kind};
use crate::client_address::ClientKey;
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
    /// The kind of streaming RPC this is, and its slot.
    stream: Option<(StreamKind, OwnedSemaphorePermit)>,
    /// The client whose stream share this RPC holds, if it is a streaming one.
    client_stream: Option<(StreamKind, ClientKey)>,
    held: Option<HeldUntilSent>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(counters) = &self.counters {
            counters
                .last_active_ms
                .store(self.connections.now_ms(), Ordering::Release);
            counters.in_flight.fetch_sub(1, Ordering::AcqRel);
            if let Some((kind, _)) = &self.stream
                && !counters.proxy
            {
                counters.streams[*kind as usize].fetch_sub(1, Ordering::AcqRel);
            }
        }
        if let Some((kind, client)) = self.client_stream.take() {
            let mut streams = self.connections.streams[kind as usize].clients();
            if let Some(count) = streams.get_mut(&client) {
                *count -= 1;
                if *count == 0 {
                    streams.remove(&client);
                }
            }
        }
    }
}

impl InFlight {
    pub(super) fn start(connections: &Arc<Connections>, peer: Option<SocketAddr>) -> Self {
        let counters = peer.and_then(|peer| connections.start_rpc(peer));
        Self {
            counters,
            connections: Arc::clone(connections),
            stream: None,
            client_stream: None,
            held: None,
        }
    }

    /// Takes a slot for a stream of `kind`, on the server, for `client` (the forwarded client
    /// behind a trusted proxy) and on this connection.
    pub(super) fn admit_stream(
        &mut self,
        kind: StreamKind,
        client: ClientKey,
    ) -> Result<(), tonic::Status> {
        let c = &self.connections;
        let limits = &c.streams[kind as usize];
        let [total, per_client, per_connection] = limits.settings;
        let Ok(permit) = Arc::clone(&limits.slots).try_acquire_owned() else {
            return Err(too_many_streams(c, kind, total, limits.max));
        };
        {
            let mut streams = limits.clients();
            let count = streams.entry(client).or_insert(0);
            if *count >= limits.per_client {
                return Err(too_many_streams(c, kind, per_client, limits.per_client));
            }
            *count += 1;
            self.client_stream = Some((kind, client));
        }
        // A trusted proxy's connection carries many clients' streams: their shares are their
        // own (above), not the connection's.
        if let Some(counters) = &self.counters
            && !counters.proxy
            && counters.streams[kind as usize].fetch_add(1, Ordering::AcqRel)
                >= limits.per_connection
        {
            counters.streams[kind as usize].fetch_sub(1, Ordering::AcqRel);
            return Err(too_many_streams(
                c,
                kind,
                per_connection,
                limits.per_connection,
            ));
        }
        self.stream = Some((kind, permit));
        Ok(())
    }
}

fn too_many_streams(
    connections: &Connections,
    kind: StreamKind,
    setting: &'static str,
    limit: usize,
) -> tonic::Status {
    connections.refused(kind.resource(), setting);
    super::super::limits::resource_exhausted(
        todo_api::ErrorReason::TooManyStreams,
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

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
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
        if let Some(counters) = &in_flight.counters {
            request
                .extensions_mut()
                .insert(ConnectionHandle(Arc::clone(counters)));
        }
        if let Some(kind) = stream_kind(request.uri().path())
            && let Err(status) =
                in_flight.admit_stream(kind, self.connections.client_of(peer, &request))
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

/// The largest data frame a response body hands to HTTP/2. hyper passes a whole frame to
/// h2 as soon as the stream has one byte of window, and h2 then holds all of it; in pieces
/// this size, what a client that does not read makes h2 hold is one piece per stream, and
/// the rest stays in the body, where it is still counted ([`HeldUntilSent`]).
const MAX_FRAME_BYTES: usize = 16 * 1024;

/// The largest last piece of a data frame. hyper hands the next piece to h2 only once the
/// previous one is within the stream's window, and the body ends (and its count with it) as
/// soon as the last piece has been handed over: so what h2 may still hold for a client that
/// stops granting window, after the body has ended, is at most this much per stream. Below
/// h2's threshold for writing a data frame by a system call of its own (256 bytes with
/// vectored writes), so the tail is copied into h2's write buffer and goes out with the
/// frames after it (the trailers, other streams' frames): a reply costs one write, not two.
const TAIL_BYTES: usize = 255;

/// A response body that keeps its RPC counted until it ends, in frames of at most
/// [`MAX_FRAME_BYTES`], the last of at most [`TAIL_BYTES`].
pub(crate) struct Counted<B> {
    inner: B,
    in_flight: Option<InFlight>,
    /// What is left of a larger data frame of `inner`.
    rest: Bytes,
}

impl<B> Counted<B> {
    fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
            rest: Bytes::new(),
        }
    }
}

/// The next piece of `data` as a frame (at most [`MAX_FRAME_BYTES`], leaving a last piece of
/// at most [`TAIL_BYTES`]); the rest stays in `data`. The last piece is a copy: a slice would
/// keep the whole reply's buffer (a kept ListTasks page, say) alive in h2 after the body ended
/// and its charge was given back.
fn piece(data: &mut Bytes) -> Frame<Bytes> {
    let len = data.len();
    let take = if len > MAX_FRAME_BYTES + TAIL_BYTES {
        MAX_FRAME_BYTES
    } else if len > TAIL_BYTES {
        len - TAIL_BYTES
    } else {
        return Frame::data(Bytes::copy_from_slice(&std::mem::take(data)));
    };
    Frame::data(data.split_to(take))
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
        // Data goes to HTTP/2 only while the connection's socket keeps up (see
        // `MAX_UNWRITTEN_BYTES`); until then it stays here, where it is still charged.
        let counters = this
            .in_flight
            .as_ref()
            .and_then(|in_flight| in_flight.counters.as_deref());
        if counters.is_some_and(|counters| !counters.may_hand_over(cx)) {
            return Poll::Pending;
        }
        let frame = if this.rest.is_empty() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => {
                    this.in_flight = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        let first = piece(&mut data);
                        this.rest = data;
                        first
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        } else {
            piece(&mut this.rest)
        };
        if let (Some(in_flight), Some(data)) = (&this.in_flight, frame.data_ref())
            && let Some(counters) = &in_flight.counters
        {
            counters.handed_over(data.len(), in_flight.connections.now_ms());
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn the_last_piece_is_small_and_small_frames_go_out_whole() {
        let sizes = |len: usize| {
            let mut data = Bytes::from(vec![0u8; len]);
            let mut sizes = Vec::new();
            while !data.is_empty() {
                sizes.push(piece(&mut data).into_data().unwrap().len());
            }
            sizes
        };
        // The last piece holds no reference to the reply's buffer.
        let reply = Bytes::from(vec![0u8; 1000]);
        let mut rest = reply.clone();
        let first = piece(&mut rest);
        let tail = piece(&mut rest);
        drop((first, rest));
        assert!(reply.is_unique(), "only the reply holds its buffer");
        assert_eq!(tail.into_data().unwrap().len(), 255);
        assert_eq!(sizes(255), [255]);
        assert_eq!(sizes(300), [45, 255]);
        assert_eq!(sizes(10 * 1024), [10 * 1024 - 255, 255]);
        assert_eq!(sizes(16 * 1024 + 255), [16 * 1024, 255]);
        assert_eq!(sizes(16 * 1024 + 256), [16 * 1024, 1, 255]);
    }

    #[tokio::test]
    async fn a_large_data_frame_goes_out_in_pieces_and_trailers_follow() {
        let connections = super::super::tests::connections(|_| {});
        let data = Bytes::from(vec![7u8; 40 * 1024]);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = vec![
            Ok::<_, std::convert::Infallible>(Frame::data(data.clone())),
            Ok(Frame::trailers(trailers)),
        ];
        let inner = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let mut body = Counted::new(inner, InFlight::start(&connections, None));
        assert_eq!(body.size_hint().lower(), 0);
        let mut sizes = Vec::new();
        let mut sent = Vec::new();
        let mut saw_trailers = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            if let Some(chunk) = frame.data_ref() {
                sizes.push(chunk.len());
                sent.extend_from_slice(chunk);
            } else {
                saw_trailers = frame.is_trailers();
            }
        }
        assert_eq!(sizes, [16 * 1024, 16 * 1024, 8 * 1024 - 255, 255]);
        assert_eq!(sent, data);
        assert!(saw_trailers);
    }
}
