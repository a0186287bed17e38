//! task-service behaviour over real gRPC, with a real auth-service beside it, against a new
//! SQLite file per test by default and fresh PostgreSQL databases when `TEST_DATABASE_URL` is
//! set (`test_support::fresh_database_url`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authentication;
mod concurrency;
mod deletion;
mod edges;
mod faults;
mod helpers;
mod isolation;
mod keys;
mod layers;
mod limits;
mod list_cache;
mod pagination;
mod slow_readers;
mod tasks;
mod tls;
mod watch;
