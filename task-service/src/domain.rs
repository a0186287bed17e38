//! The task-service's values: request values parsed once at the edge (each type can only be
//! built valid; a failed parse records a field violation a person can act on and yields
//! `None`), the [`Owner`] every operation is scoped to, and the [`Task`]s it answers with.

use chrono::{DateTime, Utc};
use grpc_edge::violations::FieldViolations;
use uuid::Uuid;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest title, in bytes of UTF-8 (no title within the character limit is longer).
pub const MAX_TITLE_BYTES: usize = 1024;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Longest description, in bytes of UTF-8: 10,000 characters of any script up to three
/// bytes each fit; it bounds what one task can make a reply carry.
pub const MAX_DESCRIPTION_BYTES: usize = 32 * 1024;
/// Most bytes of tasks in one ListTasks reply: a page stops early (with a next_page_token)
/// rather than pass it.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The most a reply of one task can take encoded: its title and description at their limits,
/// and 1 KiB for the id, times, etag and framing.
pub const MAX_TASK_REPLY_BYTES: usize = MAX_TITLE_BYTES + MAX_DESCRIPTION_BYTES + 1024;
/// Tasks per page when the client does not say.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Most tasks per page; larger requests are served this many.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// A task id (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId(pub(crate) Uuid);

impl TaskId {
    /// Parses `raw` (any UUID spelling) as the id in `field`.
    pub fn parse(raw: &str, field: &str, v: &mut FieldViolations) -> Option<Self> {
        parse_uuid(raw, field, v).map(Self)
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn parse_uuid(raw: &str, field: &str, v: &mut FieldViolations) -> Option<Uuid> {
    let raw = raw.trim();
    if raw.is_empty() {
        v.add(field, "is required");
        return None;
    }
    match Uuid::try_parse(raw) {
        Ok(id) => Some(id),
        Err(_) => {
            v.add(
                field,
                "must be a UUID like 0192f1c4-5b7e-7c3a-9d2e-4f6a8b0c1d2e",
            );
            None
        }
    }
}

/// A task title: trimmed, 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(pub(crate) String);

impl Title {
    /// Parses the title in `field`.
    pub fn parse(raw: &str, field: &str, v: &mut FieldViolations) -> Option<Self> {
        let title = raw.trim();
        if title.is_empty() {
            v.add(field, "is required and must not be only whitespace");
            return None;
        }
        if title.len() > MAX_TITLE_BYTES || title.chars().count() > MAX_TITLE_CHARS {
            v.add(
                field,
                format!(
                    "must be at most {MAX_TITLE_CHARS} characters ({MAX_TITLE_BYTES} bytes of UTF-8)"
                ),
            );
            return None;
        }
        if title.contains('\0') {
            v.add(field, "must not contain NUL characters");
            return None;
        }
        Some(Self(title.to_owned()))
    }
}

/// A task description: up to 10,000 characters and 32 KiB, kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(pub(crate) String);

impl Description {
    /// Parses the description in `field`.
    pub fn parse(raw: String, field: &str, v: &mut FieldViolations) -> Option<Self> {
        if raw.len() > MAX_DESCRIPTION_BYTES || raw.chars().count() > MAX_DESCRIPTION_CHARS {
            v.add(
                field,
                format!(
                    "must be at most {MAX_DESCRIPTION_CHARS} characters ({MAX_DESCRIPTION_BYTES} \
                     bytes of UTF-8)"
                ),
            );
            return None;
        }
        if raw.contains('\0') {
            v.add(field, "must not contain NUL characters");
            return None;
        }
        Some(Self(raw))
    }
}

/// A client's idempotency key for CreateTask (AIP-155).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub(crate) Uuid);

impl RequestId {
    /// Parses the optional `field`: `None` when it is empty (no key) or invalid (a violation
    /// is recorded, so the request is refused as a whole).
    pub fn parse_optional(raw: &str, field: &str, v: &mut FieldViolations) -> Option<Self> {
        if raw.trim().is_empty() {
            return None;
        }
        parse_uuid(raw, field, v).map(Self)
    }
}

/// A task's version as the client last saw it (AIP-154 etag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Etag(pub(crate) i64);

impl Etag {
    /// The etag of a task at `version` (clients treat it as opaque).
    pub fn of_version(version: i64) -> String {
        version.to_string()
    }

    /// Parses the optional `field`: `None` when it is empty (unconditional) or not an etag
    /// this service issued (a violation is recorded, so the request is refused as a whole).
    pub fn parse_optional(raw: &str, field: &str, v: &mut FieldViolations) -> Option<Self> {
        let raw = raw.trim();
        if raw.is_empty() {
            return None;
        }
        let version = raw
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| raw.parse::<i64>().ok())
            .flatten()
            .filter(|n| *n > 0);
        match version {
            Some(version) => Some(Self(version)),
            None => {
                v.add(
                    field,
                    "is not an etag this service issued (send back the task's etag as is)",
                );
                None
            }
        }
    }
}

/// The most tasks one user may have (TASK_QUOTA); `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskQuota(pub(crate) Option<u64>);

impl TaskQuota {
    /// `0` means no limit.
    pub fn new(max_tasks: u64) -> Self {
        Self((max_tasks > 0).then_some(max_tasks))
    }
}

/// How many tasks one page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageSize(pub(crate) u64);

impl PageSize {
    /// 0 means the default (50); above 1000 is served as 1000; negative is refused.
    pub fn parse(raw: i32, field: &str, v: &mut FieldViolations) -> Option<Self> {
        match u64::try_from(raw) {
            Err(_) => {
                v.add(field, "must not be negative");
                None
            }
            Ok(0) => Some(Self(DEFAULT_PAGE_SIZE)),
            Ok(n) => Some(Self(n.min(MAX_PAGE_SIZE))),
        }
    }
}

/// Which tasks a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompletedFilter {
    /// All tasks.
    Any,
    /// Only tasks not completed.
    Open,
    /// Only completed tasks.
    Done,
}

impl From<Option<bool>> for CompletedFilter {
    fn from(completed: Option<bool>) -> Self {
        match completed {
            None => Self::Any,
            Some(false) => Self::Open,
            Some(true) => Self::Done,
        }
    }
}

/// A valid ListTasks request: which tasks, how many, after which (from the page token). The
/// same query of the same owner at the same stamp answers the same page, so it is also what
/// the ListTasks cache keeps a page under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListQuery {
    /// Which tasks.
    pub filter: CompletedFilter,
    /// Tasks per page.
    pub size: PageSize,
    /// The last task of the previous page, from the page token.
    pub after: Option<Uuid>,
}

/// A task to create.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Title.
    pub title: Title,
    /// Description (may be empty).
    pub description: Description,
    /// The client's idempotency key, if any.
    pub request_id: Option<RequestId>,
}

/// The fields an update writes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TaskChanges {
    /// New title.
    pub title: Option<Title>,
    /// New description.
    pub description: Option<Description>,
    /// New completion state.
    pub completed: Option<bool>,
}

impl TaskChanges {
    /// Whether nothing would be written.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.description.is_none() && self.completed.is_none()
    }
}

/// A task, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Id (UUIDv7).
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Whether it is done.
    pub completed: bool,
    /// When it was last completed, while it is.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
    /// Bumped by every write (the etag).
    pub version: i64,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    /// The tasks, newest first.
    pub tasks: Vec<Task>,
    /// Whether more tasks follow the last one.
    pub more: bool,
    /// Where the owner's change log stood when the page was read (in the same transaction).
    pub position: Position,
    /// What the page can be served from the ListTasks cache against, if it can (see
    /// [`Stamp`]).
    pub stamp: Option<Stamp>,
}

/// What a cached ListTasks page is checked against: the page is still true while the owner's
/// current stamp equals the one it was read at. On PostgreSQL, the owner's change-log head
/// (read in the page's snapshot, and again, committed, before each hit); on SQLite, where this
/// process makes every write, the count of this process's finished writes of the owner's
/// stripe (read before the page's snapshot). Either moves with every write of the owner's
/// tasks before the write is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(pub(crate) i64);

/// A place in one owner's change log: the number of changes ever made to their tasks (0
/// before the first). Positions count up by one per change, in commit order, with no gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub(crate) i64);

/// What a change did to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created it.
    Created,
    /// Changed it (an update, or completing or reopening it).
    Updated,
    /// Deleted it.
    Deleted,
}

/// One committed change of one of an owner's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where it is in the owner's log.
    pub position: Position,
    /// What it did.
    pub kind: ChangeKind,
    /// The task changed.
    pub task_id: Uuid,
    /// The task as the change left it; `None` for a delete.
    pub task: Option<Task>,
    /// When it was made.
    pub changed_at: DateTime<Utc>,
}

/// What an owner's change log holds: the changes after `floor` up to `head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogRange {
    /// The last change swept away (0 when none was).
    pub floor: Position,
    /// The last change made.
    pub head: Position,
}

/// The user whose tasks a request may read and change: the verified caller. Everything below
/// the gRPC edge is scoped to one, so no statement can reach another user's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(Uuid);

impl Owner {
    /// The owner a verified access token names. Only the authentication interceptor
    /// (`grpc::auth`) makes one, from a token it verified.
    pub(crate) fn verified(user_id: Uuid) -> Self {
        Self(user_id)
    }

    /// The user id.
    pub fn user_id(self) -> Uuid {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations_of<T>(parse: impl FnOnce(&mut FieldViolations) -> Option<T>) -> usize {
        let mut v = FieldViolations::new();
        let parsed = parse(&mut v);
        assert_eq!(parsed.is_none(), !v.is_empty());
        if v.is_empty() { 0 } else { 1 }
    }

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters_not_bytes() {
        let mut v = FieldViolations::new();
        assert_eq!(
            Title::parse("  Buy milk \n", "title", &mut v).unwrap().0,
            "Buy milk"
        );
        assert_eq!(
            Title::parse(&"é".repeat(200), "title", &mut v)
                .unwrap()
                .0
                .chars()
                .count(),
            200
        );
        assert!(v.is_empty());
        assert_eq!(violations_of(|v| Title::parse(" \t\n", "title", v)), 1);
        assert_eq!(
            violations_of(|v| Title::parse(&"a".repeat(201), "title", v)),
            1
        );
        assert_eq!(violations_of(|v| Title::parse("a\0b", "title", v)), 1);
    }

    #[test]
    fn descriptions_may_be_empty_but_not_longer_than_ten_thousand_characters() {
        assert_eq!(
            violations_of(|v| Description::parse(String::new(), "d", v)),
            0
        );
        assert_eq!(
            violations_of(|v| Description::parse("x".repeat(10_000), "d", v)),
            0
        );
        assert_eq!(
            violations_of(|v| Description::parse("x".repeat(10_001), "d", v)),
            1
        );
    }

    #[test]
    fn page_sizes_default_coerce_and_refuse_negatives() {
        let mut v = FieldViolations::new();
        assert_eq!(PageSize::parse(0, "page_size", &mut v), Some(PageSize(50)));
        assert_eq!(PageSize::parse(7, "page_size", &mut v), Some(PageSize(7)));
        assert_eq!(
            PageSize::parse(5000, "page_size", &mut v),
            Some(PageSize(1000))
        );
        assert!(v.is_empty());
        assert_eq!(violations_of(|v| PageSize::parse(-1, "page_size", v)), 1);
    }

    #[test]
    fn etags_round_trip_and_anything_else_is_refused() {
        let mut v = FieldViolations::new();
        let etag = Etag::of_version(3);
        assert_eq!(Etag::parse_optional(&etag, "etag", &mut v), Some(Etag(3)));
        assert_eq!(Etag::parse_optional("", "etag", &mut v), None);
        assert!(v.is_empty());
        for bad in ["x", "-1", "+3", "0", "\"3\"", "99999999999999999999"] {
            assert_eq!(
                violations_of(|v| Etag::parse_optional(bad, "etag", v)),
                1,
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_must_be_uuids() {
        assert_eq!(violations_of(|v| TaskId::parse("", "id", v)), 1);
        assert_eq!(violations_of(|v| TaskId::parse("42", "id", v)), 1);
        assert_eq!(
            violations_of(|v| TaskId::parse("0192f1c4-5b7e-7c3a-9d2e-4f6a8b0c1d2e", "id", v)),
            0
        );
        let mut v = FieldViolations::new();
        assert_eq!(RequestId::parse_optional(" ", "request_id", &mut v), None);
        assert!(v.is_empty(), "an empty key is no key, not an invalid one");
    }
}
