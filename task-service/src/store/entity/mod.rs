//! SeaORM entities of the task database (tables created by `migrations::TaskMigrator`),
//! private to the store: nothing outside `store` sees a row.

pub(super) mod purged_owner;
pub(super) mod task;
pub(super) mod task_change;
pub(super) mod task_change_head;
pub(super) mod task_change_settings;
