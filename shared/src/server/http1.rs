//! The HTTP/1.1 side of the one-port server: grpc-web goes through tonic-web's translation,
//! anything else reaches the plain router (e.g. the JWKS document).

use axum::{body::Body as AxumBody, response::IntoResponse};
use http::{StatusCode, header};
use std::future::Future;
use tower::Service;

/// Sends grpc-web and HTTP/2 requests through tonic-web's translation and lets plain
/// HTTP/1.1 requests (e.g. `GET /.well-known/jwks.json`) reach the router untouched:
/// tonic-web alone answers every non-grpc-web HTTP/1.1 request with 400.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct GrpcWebOrHttpLayer;

impl<S: Clone> tower::Layer<S> for GrpcWebOrHttpLayer {
    type Service = GrpcWebOrHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebOrHttp {
            web: tonic_web::GrpcWebLayer::new().layer(inner.clone()),
            plain: inner,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct GrpcWebOrHttp<S> {
    web: tonic_web::GrpcWebService<S>,
    plain: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcWebOrHttp<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError> + std::fmt::Display,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError> + std::fmt::Display,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Each call drives a clone to readiness itself (`oneshot`).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        use tower::ServiceExt;
        let is_grpc = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        if request.version() < http::Version::HTTP_2 && !is_grpc {
            let plain = self.plain.clone();
            Box::pin(async move {
                let response = plain.oneshot(request.map(tonic::body::Body::new)).await?;
                Ok(response.map(tonic::body::Body::new))
            })
        } else {
            Box::pin(self.web.clone().oneshot(request))
        }
    }
}

/// Unknown paths: gRPC clients get UNIMPLEMENTED, anything else a 404.
pub(super) async fn unknown_path(request: http::Request<AxumBody>) -> axum::response::Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        let status =
            tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()));
        status.into_http::<AxumBody>().into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
