//! What the task-service decides, with no gRPC and no SQL in sight: [`Tasks`] (each user's
//! tasks: scope, time, quota) and [`PageTokens`] (signed list positions). The handlers in
//! `grpc/` call them; they call `store/`.

pub mod page_token;
mod tasks;

pub use page_token::PageTokens;
pub use tasks::Tasks;
