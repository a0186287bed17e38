//! The dev launcher over real gRPC, the `todo-stack` binary as a user runs it, and the
//! production compose file checked against what the services really read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod client;
mod compose;
mod crash;
mod deletion;
mod launcher;
mod least_privilege;
mod messages;
mod observability;
mod replicas;
mod startup_race;
mod tls;
