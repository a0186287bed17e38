//! What the task-service decides, with no gRPC and no SQL in sight: [`Tasks`] (each user's
//! tasks: scope, time, quota), [`PageTokens`] (signed list positions), [`Purges`] (deleted
//! accounts) and [`Watches`] (live changes, woken through the [`Feed`]). The handlers in
//! `grpc/` call them; they call `store/`.

pub mod page_token;
mod purges;
pub mod resume_token;
mod tasks;
pub mod watch;

pub use page_token::PageTokens;
pub use purges::Purges;
pub use tasks::Tasks;
pub use watch::{Feed, Watches};
