//! SeaORM entities of the auth database (tables created by `migrations::AuthMigrator`).

pub mod refresh_token;
pub mod session;
pub mod sign_in_throttle;
pub mod signing_key;
pub mod user;
