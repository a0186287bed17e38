//! What may reach the services on the one port. Only gRPC requests (`application/grpc`,
//! `application/grpc+proto`, grpc-web and grpc-web-text, any HTTP version) reach a gRPC
//! method; grpc-web goes through tonic-web's translation. A browser sends `text/plain`,
//! `application/x-www-form-urlencoded` and `multipart/form-data` POSTs cross-site without a
//! CORS preflight, so anything else is refused here before any service runs: 415 for a body
//! of another type, 405 for another method, 404 for a path that is not one of the plain
//! HTTP documents (`GET`/`HEAD` of e.g. `/.well-known/jwks.json`), which alone reach the
//! plain router.

use axum::{body::Body as AxumBody, response::IntoResponse};
use http::{Method, StatusCode, header};
use std::{future::Future, sync::Arc};
use tower::Service;

/// Routes each request as described in the module docs; `plain_paths` are the plain HTTP
/// documents (served for GET and HEAD only).
#[derive(Debug, Clone, Default)]
pub(super) struct GrpcWebOrHttpLayer {
    plain_paths: Arc<[String]>,
    /// Whether grpc-web reaches the services (public ports) or is refused like any other
    /// non-gRPC request (internal ports: native gRPC only).
    grpc_web: bool,
}

impl GrpcWebOrHttpLayer {
    pub(super) fn new(plain_paths: Vec<String>, grpc_web: bool) -> Self {
        Self {
            plain_paths: plain_paths.into(),
            grpc_web,
        }
    }
}

impl<S: Clone> tower::Layer<S> for GrpcWebOrHttpLayer {
    type Service = GrpcWebOrHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebOrHttp {
            web: tonic_web::GrpcWebLayer::new().layer(inner.clone()),
            plain: inner,
            plain_paths: Arc::clone(&self.plain_paths),
            grpc_web: self.grpc_web,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct GrpcWebOrHttp<S> {
    web: tonic_web::GrpcWebService<S>,
    plain: S,
    plain_paths: Arc<[String]>,
    grpc_web: bool,
}

/// Whether a request claims to be grpc-web (or grpc-web-text).
fn is_grpc_web<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc-web"))
}

/// Whether a request claims to be gRPC (native, grpc-web or grpc-web-text).
pub(super) fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The answer to a request that is neither gRPC nor a plain document's GET/HEAD.
fn refusal(method: &Method, is_plain_path: bool) -> http::Response<tonic::body::Body> {
    let (status, allow) = if is_plain_path {
        (StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD"))
    } else if *method == Method::GET || *method == Method::HEAD {
        (StatusCode::NOT_FOUND, None)
    } else if *method == Method::POST {
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, None)
    } else {
        (StatusCode::METHOD_NOT_ALLOWED, Some("POST"))
    };
    let mut response = http::Response::new(tonic::body::Body::empty());
    *response.status_mut() = status;
    if let Some(allow) = allow {
        response
            .headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    }
    response
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
        // HTTP/2 header blocks are bounded by h2 (SETTINGS_MAX_HEADER_LIST_SIZE); HTTP/1.1
        // headers only by hyper's read buffer (~400 KiB): the same bound for both.
        if header_list_bytes(request.headers()) > super::MAX_HEADER_LIST_BYTES as usize {
            let mut refused = http::Response::new(tonic::body::Body::empty());
            *refused.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return Box::pin(std::future::ready(Ok(refused)));
        }
        if is_grpc(&request) && (self.grpc_web || !is_grpc_web(&request)) {
            return Box::pin(self.web.clone().oneshot(request));
        }
        let method = request.method();
        let is_plain_path = self.plain_paths.iter().any(|p| p == request.uri().path());
        if is_plain_path && (method == Method::GET || method == Method::HEAD) {
            let plain = self.plain.clone();
            return Box::pin(async move {
                let response = plain.oneshot(request.map(tonic::body::Body::new)).await?;
                Ok(response.map(tonic::body::Body::new))
            });
        }
        let refused = refusal(method, is_plain_path);
        Box::pin(std::future::ready(Ok(refused)))
    }
}

/// The size of a header list as HTTP/2 counts it (RFC 9113 §6.5.2): each field's name and
/// value plus 32 bytes.
fn header_list_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// Unknown paths: gRPC clients get UNIMPLEMENTED, anything else a 404.
pub(super) async fn unknown_path(request: http::Request<AxumBody>) -> axum::response::Response {
    if is_grpc(&request) {
        let status =
            tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()));
        status.into_http::<AxumBody>().into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
