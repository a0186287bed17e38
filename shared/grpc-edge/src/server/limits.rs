//! The request size limit, answered the way gRPC's own implementations answer it:
//! RESOURCE_EXHAUSTED, with an `ErrorInfo` (reason `REQUEST_TOO_LARGE`, the limit in its
//! metadata), before any of the message is read or any handler runs.
//!
//! tonic enforces `max_decoding_message_size` itself, but answers OUT_OF_RANGE with no details.
//! This layer reads only the 5-byte gRPC frame header of the first message and refuses a
//! message whose declared length is over the limit before any handler runs; then it follows
//! the message headers of the rest of the request stream (reflection is a client-streaming
//! RPC: a small first message could be followed by large ones) and ends the stream with the
//! same answer at the first header over the limit, before that message is buffered. grpc-web
//! requests reach it already translated by tonic-web, so both protocols get the same answer.

use bytes::{Buf, Bytes};
use http_body::{Body, Frame};
use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};
use todo_api::ErrorReason;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

/// Length of a gRPC message frame header: a compression flag and a big-endian u32 length.
const FRAME_HEADER: usize = 5;

/// Refuses gRPC requests whose first message is larger than `max_bytes`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSizeLayer {
    max_bytes: usize,
    domain: &'static str,
    /// Counts refusals (`fair_share_refusals_total`), when the service keeps metrics. Kept
    /// for the life of the process (one counter per server), so the layer stays `Copy` and
    /// no call touches a reference count.
    refusals: Option<&'static prometheus_client::metrics::counter::Counter>,
}

impl RequestSizeLayer {
    /// `domain` is the `ErrorInfo` domain of the answer (the API's package); refusals are
    /// counted in `metrics` for the named listener.
    pub(crate) fn new(
        max_bytes: usize,
        domain: &'static str,
        metrics: Option<(&crate::metrics::Metrics, &'static str)>,
    ) -> Self {
        let refusals = metrics.map(|(metrics, listener)| {
            let counter = metrics.refusals(&vec![
                ("resource", "request_bytes"),
                ("listener", listener),
                ("reason", "MAX_REQUEST_BYTES"),
            ]);
            &*Box::leak(Box::new(counter))
        });
        Self {
            max_bytes,
            domain,
            refusals,
        }
    }
}

impl<S> Layer<S> for RequestSizeLayer {
    type Service = RequestSize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestSize {
            inner,
            limit: *self,
        }
    }
}

/// The service made by [`RequestSizeLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestSize<S> {
    inner: S,
    limit: RequestSizeLayer,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RequestSize<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + Unpin + 'static,
    ReqBody::Error: Into<BoxError> + Send + Unpin,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // The ready service handles this call; a fresh clone takes its place for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        Box::pin(async move {
            let (parts, mut body) = request.into_parts();
            // What was read to find the first message's header, given back unchanged to the
            // service: usually one data frame, kept as is (no copy).
            let mut read = Prefixed {
                chunks: VecDeque::new(),
                end: None,
                inner: None,
                messages: is_grpc.then(|| Messages::new(limit)),
            };
            if is_grpc {
                let mut header = [0u8; FRAME_HEADER];
                let mut have = 0;
                while have < FRAME_HEADER {
                    match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => {
                                let n = data.len().min(FRAME_HEADER - have);
                                header[have..have + n].copy_from_slice(&data[..n]);
                                have += n;
                                read.chunks.push_back(data);
                            }
                            Err(frame) => {
                                read.end = Some(End::Frame(frame));
                                break;
                            }
                        },
                        // Handed on as it came, for tonic to report.
                        Some(Err(error)) => {
                            read.end = Some(End::Error(error));
                            break;
                        }
                        None => break,
                    }
                }
                if let Some(size) =
                    declared_length(&header[..have]).filter(|size| *size > limit.max_bytes)
                {
                    return Ok(too_large(size, &limit).into_http::<ResBody>());
                }
            }
            read.inner = Some(body);
            inner
                .call(http::Request::from_parts(
                    parts,
                    tonic::body::Body::new(read),
                ))
                .await
        })
    }
}

/// Follows the gRPC message headers in a request stream, wherever data frames split them.
#[derive(Debug, Clone, Copy)]
struct Messages {
    limit: RequestSizeLayer,
    /// Bytes of the current message's body still to come (0: a header is next).
    body_left: usize,
    header: [u8; FRAME_HEADER],
    header_have: usize,
}

impl Messages {
    fn new(limit: RequestSizeLayer) -> Self {
        Self {
            limit,
            body_left: 0,
            header: [0; FRAME_HEADER],
            header_have: 0,
        }
    }

    /// Follows `data`; the refusal once a message header declares more than the limit.
    fn follow(&mut self, mut data: &[u8]) -> Result<(), tonic::Status> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.header_have).min(data.len());
            self.header[self.header_have..self.header_have + n].copy_from_slice(&data[..n]);
            self.header_have += n;
            data = &data[n..];
            if self.header_have == FRAME_HEADER {
                self.header_have = 0;
                let size = declared_length(&self.header).unwrap_or(usize::MAX);
                if size > self.limit.max_bytes {
                    return Err(too_large(size, &self.limit));
                }
                self.body_left = size;
            }
        }
        Ok(())
    }
}

/// The length a gRPC frame header declares for its message.
fn declared_length(head: &[u8]) -> Option<usize> {
    let mut header = head.get(..FRAME_HEADER)?;
    header.advance(1);
    usize::try_from(header.get_u32()).ok()
}

fn too_large(size: usize, limit: &RequestSizeLayer) -> tonic::Status {
    if let Some(refusals) = limit.refusals {
        refusals.inc();
    }
    resource_exhausted(
        ErrorReason::RequestTooLarge,
        limit.domain,
        [
            ("maxBytes", limit.max_bytes.to_string()),
            ("messageBytes", size.to_string()),
        ],
        format!(
            "request message of {size} bytes is larger than the limit of {} bytes \
             (MAX_REQUEST_BYTES)",
            limit.max_bytes
        ),
    )
}

/// RESOURCE_EXHAUSTED with an `ErrorInfo` of `reason` in `domain` and `metadata`: how the
/// server's own limits answer.
pub(crate) fn resource_exhausted<const N: usize>(
    reason: ErrorReason,
    domain: &str,
    metadata: [(&str, String); N],
    message: String,
) -> tonic::Status {
    let metadata = metadata
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect::<HashMap<_, _>>();
    let details = ErrorDetails::with_error_info(reason.as_str_name(), domain, metadata);
    tonic::Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// How the reading of a body's head stopped, other than by having enough bytes.
enum End<E> {
    /// A non-data frame (trailers) came first.
    Frame(Frame<Bytes>),
    /// The body failed.
    Error(E),
}

/// A request body with what was already read put back in front, in order, whose gRPC
/// messages are checked against the limit as they pass ([`Messages`]).
struct Prefixed<B: Body> {
    chunks: VecDeque<Bytes>,
    end: Option<End<B::Error>>,
    /// The rest of the body (`None` only while the head is being read).
    inner: Option<B>,
    /// `None` for a body that is not gRPC, and once the limit has ended the stream.
    messages: Option<Messages>,
}

impl<B> Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError> + Unpin,
{
    fn next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match self.end.take() {
            Some(End::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
            Some(End::Error(error)) => return Poll::Ready(Some(Err(error))),
            None => {}
        }
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError> + Unpin,
{
    type Data = Bytes;
    /// A refusal is a `tonic::Status`, which tonic's decoder reports as it is.
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = match std::task::ready!(this.next_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
            None => return Poll::Ready(None),
        };
        if let (Some(messages), Some(data)) = (this.messages.as_mut(), frame.data_ref())
            && let Err(refusal) = messages.follow(data)
        {
            // Nothing more is read from this request.
            this.messages = None;
            this.chunks.clear();
            this.end = None;
            this.inner = None;
            return Poll::Ready(Some(Err(Box::new(refusal))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
            && self.end.is_none()
            && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{
        Bytes, End, Frame, Messages, Prefixed, RequestSizeLayer, VecDeque, declared_length,
    };
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn the_bytes_read_for_the_header_are_given_back_in_order_with_the_rest() {
        let rest = StreamBody::new(tokio_stream::iter([
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"def"))),
            Ok(Frame::trailers(http::HeaderMap::new())),
        ]));
        let body = Prefixed {
            chunks: VecDeque::from([
                Bytes::from_static(b"\0\0"),
                Bytes::from_static(b"\0\0\x06abc"),
            ]),
            end: None::<End<std::convert::Infallible>>,
            inner: Some(rest),
            messages: Some(Messages::new(RequestSizeLayer::new(8, "test", None))),
        };
        let collected = body.collect().await.unwrap();
        assert!(collected.trailers().is_some());
        assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x06abcdef");
    }

    #[test]
    fn the_declared_length_is_read_from_a_complete_frame_header_only() {
        assert_eq!(declared_length(&[0, 0, 1, 0, 0]), Some(65_536));
        assert_eq!(declared_length(&[0, 0, 0, 0, 3, 7, 7, 7]), Some(3));
        assert_eq!(declared_length(&[0, 0, 1]), None);
    }

    #[test]
    fn every_message_header_is_checked_wherever_the_frames_split_it() {
        let mut messages = Messages::new(RequestSizeLayer::new(8, "todo.test.v1", None));
        // A 3-byte message, then a header split over two frames declaring 8 bytes (allowed).
        messages.follow(b"\0\0\0\0\x03abc\0\0").unwrap();
        messages.follow(b"\0\0\x08").unwrap();
        messages.follow(b"12345678").unwrap();
        // Then a header declaring 9 bytes: refused before its body is read.
        let refusal = messages.follow(b"\0\0\0\0\x09").unwrap_err();
        assert_eq!(refusal.code(), tonic::Code::ResourceExhausted);
        assert!(
            refusal.message().contains("MAX_REQUEST_BYTES"),
            "{refusal:?}"
        );
    }
}
