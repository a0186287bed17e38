//! Something a handler wants kept until its response has been sent: put a [`HeldUntilSent`]
//! into the `tonic::Response`'s extensions, and the server moves it into the response body,
//! where it is dropped when the body ends (all sent) or is dropped (stream reset, connection
//! closed). Without this, it would be dropped as soon as the response headers are written,
//! while the body may still wait for a client that does not read.

use std::sync::Arc;

/// A value held from the handler's return until its response body is gone (never read:
/// only its drop matters).
#[derive(Clone)]
pub struct HeldUntilSent(#[allow(dead_code)] Arc<dyn std::any::Any + Send + Sync>);

impl HeldUntilSent {
    /// Holds `value` (typically a permit whose `Drop` gives something back).
    pub fn new(value: impl std::any::Any + Send + Sync) -> Self {
        Self(Arc::new(value))
    }

    /// Attaches `self` to `response`.
    pub fn attach<T>(self, mut response: tonic::Response<T>) -> tonic::Response<T> {
        response.extensions_mut().insert(self);
        response
    }
}

impl std::fmt::Debug for HeldUntilSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldUntilSent")
    }
}
