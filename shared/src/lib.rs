//! Code both services share: the generated protobuf/gRPC code, the server builder (gRPC +
//! grpc-web + reflection + health + graceful shutdown), access-token verification, telemetry,
//! configuration and error helpers.
//!
//! tonic-specific glue lives in [`server`] and [`status`] so a future port to another gRPC
//! library touches the edges only.

pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod proto;
pub mod server;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod token;
