//! What the task-service decides, with no gRPC and no SQL in sight: [`Tasks`] (each user's
//! tasks: scope, time, quota), [`PageTokens`] (signed list positions), [`Purges`] (deleted
//! accounts), [`Watches`] (live changes, woken through the [`Feed`]) and [`PageCache`]
//! (ListTasks pages kept while their owner's [`Freshness`] stamp holds). The handlers in
//! `grpc/` call them; they call `store/`.

pub mod page_cache;
pub mod page_token;
mod purges;
pub mod resume_token;
mod tasks;
pub mod watch;

pub use page_cache::{Freshness, PageCache};
pub use page_token::PageTokens;
pub use purges::Purges;
pub use tasks::Tasks;
pub use watch::{Feed, Watches};
