//! The services' databases: opening them (SQLite file by default, PostgreSQL by URL) with the
//! schema migrated first, classifying their errors, and reporting their health.

mod classify;
mod health;
mod open;

pub use classify::{is_unavailable, redact_url};
pub use health::{ReadyCheck, watch_health};
pub use open::{OpenError, connect, open};
