//! Task storage: every statement the task-service runs. The SeaORM entity is private to this
//! module; [`tasks::OwnedTasks`] takes an [`Owner`](crate::domain::Owner) and returns domain
//! values, so nothing above it builds a query or sees a row.

pub(crate) mod changes;
mod entity;
pub(crate) mod purged;
pub(crate) mod tasks;
