//! auth-service behaviour over real gRPC, against a new SQLite file per test by default and a
//! fresh PostgreSQL database per test when `TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod connections;
mod devices;
mod fair_share;
mod flood;
mod helpers;
mod keys;
mod layers;
mod refresh;
mod retention;
mod server;
mod throttle;
mod tls;
mod token_verification;
