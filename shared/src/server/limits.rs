//! The request size limit, answered the way gRPC's own implementations answer it:
//! RESOURCE_EXHAUSTED, with an `ErrorInfo` (reason `REQUEST_TOO_LARGE`, the limit in its
//! metadata), before any of the message is read or any handler runs.
//!
//! tonic enforces `max_decoding_message_size` itself, but answers OUT_OF_RANGE with no details.
//! This layer reads only the 5-byte gRPC frame header of the first message (every RPC of our
//! APIs is unary) and refuses a message whose declared length is over the limit; grpc-web
//! requests reach it already translated by tonic-web, so both protocols get the same answer.

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame};
use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

/// The stable reason of an oversized request.
pub const REQUEST_TOO_LARGE: &str = "REQUEST_TOO_LARGE";

/// Length of a gRPC message frame header: a compression flag and a big-endian u32 length.
const FRAME_HEADER: usize = 5;

/// Refuses gRPC requests whose first message is larger than `max_bytes`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSizeLayer {
    max_bytes: usize,
    domain: &'static str,
}

impl RequestSizeLayer {
    /// `domain` is the `ErrorInfo` domain of the answer (the API's package).
    pub(crate) fn new(max_bytes: usize, domain: &'static str) -> Self {
        Self { max_bytes, domain }
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
    ReqBody::Error: Into<BoxError>,
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
            let mut head = BytesMut::new();
            let mut trailers = None;
            if is_grpc {
                // Read frames until the first message's header is here (usually the first).
                while head.len() < FRAME_HEADER {
                    match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => head.extend_from_slice(&data),
                            Err(frame) => {
                                trailers = frame.into_trailers().ok();
                                break;
                            }
                        },
                        // A broken body: let tonic see (and report) the end of it.
                        Some(Err(_)) | None => break,
                    }
                }
                if let Some(size) = declared_length(&head).filter(|size| *size > limit.max_bytes) {
                    return Ok(too_large(size, limit).into_http::<ResBody>());
                }
            }
            let body = Prefixed {
                head: Some(head.freeze()).filter(|h| !h.is_empty()),
                trailers,
                inner: body,
            };
            inner
                .call(http::Request::from_parts(
                    parts,
                    tonic::body::Body::new(body),
                ))
                .await
        })
    }
}

/// The length a gRPC frame header declares for its message.
fn declared_length(head: &[u8]) -> Option<usize> {
    let mut header = head.get(..FRAME_HEADER)?;
    header.advance(1);
    usize::try_from(header.get_u32()).ok()
}

fn too_large(size: usize, limit: RequestSizeLayer) -> tonic::Status {
    let metadata = HashMap::from([
        ("maxBytes".to_owned(), limit.max_bytes.to_string()),
        ("messageBytes".to_owned(), size.to_string()),
    ]);
    let details = ErrorDetails::with_error_info(REQUEST_TOO_LARGE, limit.domain, metadata);
    tonic::Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "request message of {size} bytes is larger than the limit of {} bytes \
             (MAX_REQUEST_BYTES)",
            limit.max_bytes
        ),
        details,
    )
}

/// A request body with the bytes already read put back in front.
struct Prefixed<B> {
    head: Option<Bytes>,
    /// Trailers met while reading the head (a body that ended before a message header).
    trailers: Option<http::HeaderMap>,
    inner: B,
}

impl<B> Body for Prefixed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.trailers.is_none() && self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::declared_length;

    #[test]
    fn the_declared_length_is_read_from_a_complete_frame_header_only() {
        assert_eq!(declared_length(&[0, 0, 1, 0, 0]), Some(65_536));
        assert_eq!(declared_length(&[0, 0, 0, 0, 3, 7, 7, 7]), Some(3));
        assert_eq!(declared_length(&[0, 0, 1]), None);
    }
}
