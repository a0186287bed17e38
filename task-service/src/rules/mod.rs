//! What the task-service decides, with no gRPC and no SQL in sight: [`Tasks`] (each user's
//! tasks: scope, time, quota), [`PageTokens`] (signed list positions) and [`Purges`] (deleted
//! accounts). The handlers in
//! `grpc/` call them; they call `store/`.

pub mod page_token;
mod purges;
mod tasks;

pub use page_token::PageTokens;
pub use purges::Purges;
pub use tasks::Tasks;
