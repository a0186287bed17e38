//! Auth storage: every statement the auth-service runs, one module per table group. The
//! SeaORM entities are private to this module; its functions take a connection (or a
//! transaction) and return domain values, so the rules above it (rotation, grace window,
//! throttling policy, key rotation) never see a row and read without SQL.
//!
//! Each operation is one statement where it can be; `sessions::spend_refresh_token` is the
//! one transaction (spend, store the successor, touch the session).

mod entity;
pub(crate) mod keys;
pub(crate) mod sessions;
pub(crate) mod throttle;
pub(crate) mod users;
