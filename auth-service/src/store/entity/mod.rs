//! SeaORM entities of the auth database (tables created by `migrations::AuthMigrator`),
//! private to the store: nothing outside `store` sees a row.

pub(super) mod account_deletion;
pub(super) mod refresh_token;
pub(super) mod session;
pub(super) mod sign_in_throttle;
pub(super) mod signing_key;
pub(super) mod user;
