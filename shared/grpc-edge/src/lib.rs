//! The gRPC edge both services share: the one-port server (native gRPC and grpc-web, CORS,
//! reflection v1 and v1alpha, `grpc.health.v1`, request, connection and stream limits, TLS,
//! graceful shutdown), the one boundary from a service's errors to `tonic::Status`, request
//! helpers (field violations, the bearer token), logging and the server's settings.
//!
//! A future port to another gRPC library touches this crate, the generated code (`todo-api`),
//! the services' `grpc/` folders and their `error.rs` (each one mapping to a status), and the
//! test helpers: `rules/`, `store/` and `domain.rs` of both services never name tonic.

pub mod bearer;
pub mod client_address;
pub mod metrics;
pub mod server;
pub mod settings;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod violations;
