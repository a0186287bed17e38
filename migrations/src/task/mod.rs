pub mod m20261123_000001_create_tasks;
pub mod m20261203_000001_purged_owners;
pub mod m20261204_000001_task_changes;
