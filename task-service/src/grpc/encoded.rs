//! Replies sent as bytes encoded once: a ListTasks page kept in memory is kept encoded, and
//! answering it again costs a copy of a pointer, not a copy, an encoding and a drop of a
//! hundred tasks.
//!
//! A handler answers with an empty message and an [`Encoded`] in the response's extensions;
//! [`SendEncoded`], around the generated server, sends those bytes in place of what tonic
//! encoded, followed by the trailers tonic sends (`grpc-status: 0`). Everything outside it
//! (grpc-web, the unread-replies charge held until the body ends, the 16 KiB pieces) sees an
//! ordinary gRPC response body.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{TryFutureExt, future::MapOk};
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use prost::Message;
use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};
use tonic::{body::Body, server::NamedService};
use tower::Service;

/// One message as gRPC frames it on the wire: a byte saying it is not compressed, its length
/// (big-endian `u32`), then the message.
#[derive(Debug, Clone)]
pub struct Encoded(Bytes);

impl Encoded {
    /// `message`, encoded and framed.
    pub fn of(message: &impl Message) -> Self {
        let len = message.encoded_len();
        let mut framed = BytesMut::with_capacity(5 + len);
        framed.put_u8(0);
        // Replies are at most MAX_RESPONSE_BYTES (2 MiB).
        framed.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        message.encode_raw(&mut framed);
        Self(framed.freeze())
    }

    /// Its size on the wire.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The generated server `S`, sending the [`Encoded`] bytes a handler put in its response in
/// place of the message.
#[derive(Debug, Clone)]
pub struct SendEncoded<S>(S);

impl<S> SendEncoded<S> {
    /// Around `inner`.
    pub fn new(inner: S) -> Self {
        Self(inner)
    }
}

impl<S: NamedService> NamedService for SendEncoded<S> {
    const NAME: &'static str = S::NAME;
}

type Swap = fn(http::Response<Body>) -> http::Response<Body>;

impl<S> Service<http::Request<Body>> for SendEncoded<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = MapOk<S::Future, Swap>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let swap: Swap = |mut response| match response.extensions_mut().remove::<Encoded>() {
            Some(Encoded(bytes)) => response.map(|_| Body::new(EncodedBody::new(bytes))),
            None => response,
        };
        self.0.call(request).map_ok(swap)
    }
}

/// The encoded message, then the trailers of a call that succeeded.
struct EncodedBody {
    message: Option<Bytes>,
    ended: bool,
}

impl EncodedBody {
    fn new(message: Bytes) -> Self {
        Self {
            message: Some(message),
            ended: false,
        }
    }
}

impl http_body::Body for EncodedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        self.ended = true;
        let mut trailers = HeaderMap::with_capacity(1);
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use todo_api::todo::task::v1 as pb;

    #[test]
    fn a_message_is_framed_as_grpc_frames_it_and_decodes_back() {
        let page = pb::ListTasksResponse {
            tasks: vec![pb::Task {
                id: "id".into(),
                title: "title".into(),
                ..Default::default()
            }],
            next_page_token: "next".into(),
            resume_token: "resume".into(),
        };
        let Encoded(framed) = Encoded::of(&page);
        assert_eq!(framed[0], 0, "not compressed");
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(len, framed.len() - 5);
        assert_eq!(pb::ListTasksResponse::decode(&framed[5..]).unwrap(), page);
    }
}
