//! The gRPC edge both services share: the one-port server (native gRPC and grpc-web, CORS,
//! reflection v1 and v1alpha, `grpc.health.v1`, request, connection and stream limits, TLS,
//! graceful shutdown), the one boundary from a service's errors to `tonic::Status`, request
//! helpers (field violations, the bearer token), logging and the server's settings.
//!
//! tonic-specific glue lives here, so a future port to another gRPC library touches this
//! crate and the services' `grpc/` folders only.

pub mod bearer;
pub mod client;
pub mod server;
pub mod settings;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod violations;
