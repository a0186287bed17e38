//! A service's database: opening it (a SQLite file by default, PostgreSQL by URL) with the
//! schema migrated first, the pool settings, and the one classification of its failures
//! (unavailable, worth a retry, or a bug).

mod classify;
mod error;
mod open;
mod settings;

pub use classify::{is_unavailable, redact_url};
pub use error::DatabaseError;
pub use open::{OpenError, connect, open};
pub use settings::PoolArgs;
