//! task-service behaviour over real gRPC, with a real auth-service beside it, against
//! in-memory SQLite by default and fresh PostgreSQL databases when `TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authentication;
mod concurrency;
mod edges;
mod faults;
mod helpers;
mod isolation;
mod keys;
mod limits;
mod pagination;
mod slow_readers;
mod tasks;
mod tls;
