//! The change log written by the database itself: a trigger on `tasks` appends every insert,
//! update and delete to `task_changes`, inside the statement that made it. So no write can
//! forget its change, and a write is one statement again: the services measured a third of
//! their create throughput with the log written by separate statements in a transaction
//! (BENCHMARKS.md).
//!
//! Per change, the trigger moves the owner's head with an upsert (on PostgreSQL its row lock is
//! held until the transaction ends, so an owner's positions commit in order; SQLite has one
//! writer), appends the change at the new head, trims the owner's log to the number of changes
//! `task_change_settings` says to keep (plus a slack of 64, so most writes trim nothing), and on
//! PostgreSQL queues `NOTIFY todo_task_changes, '<owner id>'`, sent when the transaction commits.
//! `changed_at` is the database's clock.
//!
//! On PostgreSQL a second trigger, before each insert, takes the owner's advisory lock shared
//! (the purge of a deleted account holds it exclusively while it writes the tombstone) and
//! then skips the row if the owner has a tombstone: a statement of a function sees commits made
//! while it waited for the lock, which the insert's own `NOT EXISTS` cannot. So a create is one
//! statement on PostgreSQL too, instead of a transaction around the lock and the insert.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// How far past the kept number an owner's log may grow before a write trims it.
const TRIM_SLACK: u32 = 64;

const POSTGRES_UP: &str = r"
CREATE TABLE task_change_settings (id smallint PRIMARY KEY, retained bigint NOT NULL);
INSERT INTO task_change_settings (id, retained) VALUES (1, 1000);

CREATE FUNCTION todo_log_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed tasks%ROWTYPE;
  change_kind smallint;
  new_head bigint;
  old_floor bigint;
  keep bigint;
BEGIN
  IF TG_OP = 'DELETE' THEN
    changed := OLD;
    change_kind := 3;
  ELSE
    changed := NEW;
    change_kind := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE 2 END;
  END IF;
  INSERT INTO task_change_heads AS h (owner_id, head, floor) VALUES (changed.owner_id, 1, 0)
    ON CONFLICT (owner_id) DO UPDATE SET head = h.head + 1
    RETURNING h.head, h.floor INTO new_head, old_floor;
  IF change_kind = 3 THEN
    INSERT INTO task_changes (owner_id, position, kind, task_id, changed_at)
      VALUES (changed.owner_id, new_head, 3, changed.id, clock_timestamp());
  ELSE
    INSERT INTO task_changes (owner_id, position, kind, task_id, changed_at, title, description,
        completed, completed_at, created_at, updated_at, version)
      VALUES (changed.owner_id, new_head, change_kind, changed.id, clock_timestamp(),
        changed.title, changed.description, changed.completed, changed.completed_at,
        changed.created_at, changed.updated_at, changed.version);
  END IF;
  SELECT retained INTO keep FROM task_change_settings WHERE id = 1;
  IF keep IS NOT NULL AND new_head - old_floor > keep + TRIM_SLACK THEN
    UPDATE task_change_heads SET floor = new_head - keep WHERE owner_id = changed.owner_id;
    DELETE FROM task_changes WHERE owner_id = changed.owner_id AND position <= new_head - keep;
  END IF;
  PERFORM pg_notify('todo_task_changes', changed.owner_id::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER tasks_change_log AFTER INSERT OR UPDATE OR DELETE ON tasks
  FOR EACH ROW EXECUTE FUNCTION todo_log_task_change();

CREATE FUNCTION todo_refuse_purged_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(
    ('x' || right(replace(NEW.owner_id::text, '-', ''), 16))::bit(64)::bigint);
  IF EXISTS (SELECT 1 FROM purged_owners WHERE owner_id = NEW.owner_id) THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER tasks_refuse_purged_owner BEFORE INSERT ON tasks
  FOR EACH ROW EXECUTE FUNCTION todo_refuse_purged_owner();
";

const POSTGRES_DOWN: &str = r"
DROP TRIGGER IF EXISTS tasks_refuse_purged_owner ON tasks;
DROP FUNCTION IF EXISTS todo_refuse_purged_owner();
DROP TRIGGER IF EXISTS tasks_change_log ON tasks;
DROP FUNCTION IF EXISTS todo_log_task_change();
DROP TABLE IF EXISTS task_change_settings;
";

/// The SQLite trigger for one kind of write: `row` is `NEW` or `OLD`, `kind` the change's
/// code, `task` whether the change carries the task.
fn sqlite_trigger(name: &str, event: &str, row: &str, kind: u8, task: bool) -> String {
    let now = "strftime('%Y-%m-%dT%H:%M:%f', 'now') || '+00:00'";
    let (columns, values) = if task {
        (
            ", title, description, completed, completed_at, created_at, updated_at, version",
            format!(
                ", {row}.title, {row}.description, {row}.completed, {row}.completed_at, \
                 {row}.created_at, {row}.updated_at, {row}.version"
            ),
        )
    } else {
        ("", String::new())
    };
    format!(
        "CREATE TRIGGER {name} AFTER {event} ON tasks BEGIN
  INSERT INTO task_change_heads (owner_id, head, floor) VALUES ({row}.owner_id, 1, 0)
    ON CONFLICT (owner_id) DO UPDATE SET head = head + 1;
  INSERT INTO task_changes (owner_id, position, kind, task_id, changed_at{columns})
    SELECT {row}.owner_id, head, {kind}, {row}.id, {now}{values}
    FROM task_change_heads WHERE owner_id = {row}.owner_id;
  UPDATE task_change_heads
    SET floor = head - (SELECT retained FROM task_change_settings WHERE id = 1)
    WHERE owner_id = {row}.owner_id
      AND head - floor > (SELECT retained FROM task_change_settings WHERE id = 1) + {TRIM_SLACK};
  DELETE FROM task_changes WHERE owner_id = {row}.owner_id
    AND position <= (SELECT floor FROM task_change_heads WHERE owner_id = {row}.owner_id);
END"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            let up = POSTGRES_UP.replace("TRIM_SLACK", &TRIM_SLACK.to_string());
            db.execute_unprepared(&up).await?;
            return Ok(());
        }
        db.execute_unprepared(
            "CREATE TABLE task_change_settings (id integer PRIMARY KEY, retained integer NOT NULL)",
        )
        .await?;
        db.execute_unprepared("INSERT INTO task_change_settings (id, retained) VALUES (1, 1000)")
            .await?;
        for trigger in [
            sqlite_trigger("tasks_change_log_insert", "INSERT", "NEW", 1, true),
            sqlite_trigger("tasks_change_log_update", "UPDATE", "NEW", 2, true),
            sqlite_trigger("tasks_change_log_delete", "DELETE", "OLD", 3, false),
        ] {
            db.execute_unprepared(&trigger).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(POSTGRES_DOWN).await?;
            return Ok(());
        }
        for trigger in [
            "tasks_change_log_insert",
            "tasks_change_log_update",
            "tasks_change_log_delete",
        ] {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {trigger}"))
                .await?;
        }
        db.execute_unprepared("DROP TABLE IF EXISTS task_change_settings")
            .await?;
        Ok(())
    }
}
