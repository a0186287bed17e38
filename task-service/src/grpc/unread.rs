//! A bound on what clients can make the task-service hold by not reading: every reply carrying
//! tasks is charged its encoded size until its body has been sent (or dropped), against one
//! budget per user and one for the whole service. A client that asks for pages and never reads
//! them (an HTTP/2 window of 0, a TCP window of 0) keeps its charge; past its own budget its
//! calls are refused with RESOURCE_EXHAUSTED instead of the server holding ever more replies.
//!
//! The service's budget is shared fairly (max-min): when it is spent, a caller holding less
//! than some other user gets room by closing the connections that carry the unread replies of
//! the user holding the most (their bodies are dropped, their charges given back) and waits a
//! moment for it (at most 2 s); only a caller who already holds as much as anyone is refused.
//! So however many accounts hold their whole share unread, everyone else is still served.
//! Behind a trusted proxy nothing is closed (its connections carry everyone's calls); a proxy
//! reads what the service sends, so replies do not stay unread here, they wait at the proxy.

use super::auth::Caller;
use super::encoded::Encoded;
use crate::error::{Exhausted, TaskError};
use crate::metrics::TaskMetrics;
use grpc_edge::server::{ConnectionHandle, HeldUntilSent};
use prost::Message;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tonic::Response;
use uuid::Uuid;

/// How long a caller waits for the room it made by closing the biggest holder's connections.
const ROOM_WAIT: Duration = Duration::from_secs(2);

/// The budgets, in KiB (one permit per started KiB of reply).
#[derive(Debug)]
pub struct UnreadBudget {
    total: Arc<Semaphore>,
    total_kib: u32,
    per_user_kib: u32,
    users: Arc<Mutex<HashMap<Uuid, Holder>>>,
    /// Notified whenever a charge is given back.
    released: Arc<Notify>,
    next_id: AtomicU64,
    /// Where refusals are counted, once [`UnreadBudget::counting`].
    metrics: Option<grpc_edge::metrics::Metrics>,
}

/// What one user holds: KiB in all, and the connections their charged replies are on.
#[derive(Debug, Default)]
struct Holder {
    kib: u32,
    replies: Vec<(u64, ConnectionHandle)>,
}

/// Whom a reply is for: the caller, and the connection it goes out on.
#[derive(Debug, Clone)]
pub struct Recipient {
    user: Uuid,
    connection: Option<ConnectionHandle>,
}

impl Recipient {
    /// The caller of `request`, on the connection it came on.
    pub fn of<T>(caller: &Caller, request: &tonic::Request<T>) -> Self {
        Self {
            user: caller.user_id(),
            connection: request.extensions().get::<ConnectionHandle>().cloned(),
        }
    }
}

impl UnreadBudget {
    /// At most `total_bytes` of replies unsent in all, and `per_user_bytes` per user.
    pub fn new(total_bytes: u64, per_user_bytes: u64) -> Self {
        let kib = |bytes: u64| u32::try_from(bytes / 1024).unwrap_or(u32::MAX).max(1);
        let total_kib =
            kib(total_bytes).min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            total: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            per_user_kib: kib(per_user_bytes),
            users: Arc::default(),
            released: Arc::new(Notify::new()),
            next_id: AtomicU64::new(0),
            metrics: None,
        }
    }

    /// This budget, its use a fair-share gauge in `metrics` and its refusals counted.
    pub fn counting(mut self, metrics: &TaskMetrics) -> Self {
        let Some(registry) = metrics.registry() else {
            return self;
        };
        let total = Arc::clone(&self.total);
        let total_kib = self.total_kib;
        registry.fair_share(
            vec![("resource", "unread_bytes")],
            u64::from(total_kib) * 1024,
            move || {
                let free = u32::try_from(total.available_permits()).unwrap_or(u32::MAX);
                Some(u64::from(total_kib.saturating_sub(free)) * 1024)
            },
        );
        self.metrics = Some(registry.clone());
        self
    }

    /// `exhausted` as the caller's error, counted.
    fn refused(&self, exhausted: Exhausted) -> TaskError {
        if let Some(metrics) = &self.metrics {
            let reason = match exhausted {
                Exhausted::User(_) => "MAX_UNREAD_BYTES_PER_USER",
                Exhausted::Service(_) => "MAX_UNREAD_BYTES",
            };
            metrics.refused(&vec![("resource", "unread_bytes"), ("reason", reason)]);
        }
        TaskError::Unread(exhausted)
    }

    fn users(&self) -> MutexGuard<'_, HashMap<Uuid, Holder>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `encoded` as the reply to `to`, charged its size until it has been sent; the message is
    /// left empty, [`SendEncoded`](super::encoded::SendEncoded) sends the bytes. For replies
    /// whose size is known only once the work is done and that may be refused after it (a
    /// page: reading it changed nothing); see [`Self::has_room`].
    pub async fn reply_encoded<T: Default>(
        &self,
        to: &Recipient,
        encoded: Encoded,
    ) -> Result<Response<T>, TaskError> {
        let charge = self
            .charge(to, kib_of(encoded.len()))
            .await
            .map_err(|e| self.refused(e))?;
        let mut response = HeldUntilSent::new(charge).attach(Response::new(T::default()));
        response.extensions_mut().insert(encoded);
        Ok(response)
    }

    /// Refuses at once a caller with no room left and none to be made (before a query that
    /// [`Self::reply_encoded`] would then refuse anyway).
    pub fn has_room(&self, to: &Recipient) -> Result<(), TaskError> {
        let users = self.users();
        let used = users.get(&to.user).map_or(0, |holder| holder.kib);
        if used >= self.per_user_kib {
            return Err(self.refused(Exhausted::User(u64::from(self.per_user_kib) * 1024)));
        }
        if self.total.available_permits() == 0
            && holders_above(&users, to.user, used).next().is_none()
        {
            return Err(self.refused(Exhausted::Service(u64::from(self.total_kib) * 1024)));
        }
        Ok(())
    }

    /// Charges `to` for a reply of at most `bytes` before the work that makes it, so a write
    /// is never refused after it was done; see [`Reserved::reply`].
    pub async fn reserve(&self, to: &Recipient, bytes: usize) -> Result<Reserved, TaskError> {
        self.charge(to, kib_of(bytes))
            .await
            .map(Reserved)
            .map_err(|e| self.refused(e))
    }

    async fn charge(&self, to: &Recipient, kib: u32) -> Result<Charge, Exhausted> {
        let bytes = |kib: u32| u64::from(kib) * 1024;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let used = {
            let mut users = self.users();
            let holder = users.entry(to.user).or_default();
            if holder.kib.saturating_add(kib) > self.per_user_kib {
                if holder.kib == 0 {
                    users.remove(&to.user);
                }
                return Err(Exhausted::User(bytes(self.per_user_kib)));
            }
            holder.kib += kib;
            if let Some(connection) = &to.connection {
                holder.replies.push((id, connection.clone()));
            }
            holder.kib
        };
        // Taken after the user's share, so a refusal here must give that back: `Charge`
        // does, on drop.
        let mut charge = Charge {
            users: Arc::clone(&self.users),
            released: Arc::clone(&self.released),
            user: to.user,
            id,
            kib,
            permit: None,
        };
        if let Ok(permit) = Arc::clone(&self.total).try_acquire_many_owned(kib) {
            charge.permit = Some(permit);
            return Ok(charge);
        }
        if !self.make_room(to.user, used) {
            return Err(Exhausted::Service(bytes(self.total_kib)));
        }
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        loop {
            let released = self.released.notified();
            if let Ok(permit) = Arc::clone(&self.total).try_acquire_many_owned(kib) {
                charge.permit = Some(permit);
                return Ok(charge);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(Exhausted::Service(bytes(self.total_kib)));
            }
        }
    }

    /// Closes the connections carrying the replies of the user holding the most, if that is
    /// more than `used` (what `user` holds with the reply it asks for); false when nobody
    /// does, or nothing of theirs can be closed (a trusted proxy's connection).
    fn make_room(&self, user: Uuid, used: u32) -> bool {
        let users = self.users();
        let mut holders: Vec<(&Uuid, &Holder)> = holders_above(&users, user, used).collect();
        holders.sort_by_key(|(_, holder)| std::cmp::Reverse(holder.kib));
        for (other, holder) in holders {
            let mut closed = 0;
            for (_, connection) in &holder.replies {
                if connection.close() {
                    closed += 1;
                }
            }
            if closed > 0 {
                tracing::info!(
                    user_id = %other,
                    held_kib = holder.kib,
                    connections = closed,
                    "unread-replies budget spent: closing the connections of the user holding the most"
                );
                return true;
            }
        }
        false
    }
}

/// The users other than `user` holding more than `used`.
fn holders_above(
    users: &HashMap<Uuid, Holder>,
    user: Uuid,
    used: u32,
) -> impl Iterator<Item = (&Uuid, &Holder)> {
    users
        .iter()
        .filter(move |(other, holder)| **other != user && holder.kib > used)
}

/// Whole KiB (at least one) for `bytes`.
fn kib_of(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// A charge taken before the reply exists.
#[derive(Debug)]
pub struct Reserved(Charge);

impl Reserved {
    /// `message` as the reply, charged its own size (at most what was reserved) until sent.
    pub fn reply<T: Message>(mut self, message: T) -> Response<T> {
        self.0.shrink_to(kib_of(message.encoded_len()));
        HeldUntilSent::new(self.0).attach(Response::new(message))
    }
}

/// One reply's charge, given back when dropped.
#[derive(Debug)]
struct Charge {
    users: Arc<Mutex<HashMap<Uuid, Holder>>>,
    released: Arc<Notify>,
    user: Uuid,
    id: u64,
    kib: u32,
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Gives back all but `kib` (when less than what is held).
    fn shrink_to(&mut self, kib: u32) {
        let Some(excess) = self.kib.checked_sub(kib).filter(|n| *n > 0) else {
            return;
        };
        if let Some(permit) = &mut self.permit {
            drop(permit.split(excess as usize));
        }
        if let Some(holder) = self
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.user)
        {
            holder.kib = holder.kib.saturating_sub(excess);
        }
        self.kib = kib;
        self.released.notify_waiters();
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        {
            let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(holder) = users.get_mut(&self.user) {
                holder.kib = holder.kib.saturating_sub(self.kib);
                holder.replies.retain(|(id, _)| *id != self.id);
                if holder.kib == 0 {
                    users.remove(&self.user);
                }
            }
        }
        // The permit goes back as this returns; waiters re-check after being woken, and a
        // waiter woken before it is back waits for the next notification or its deadline.
        drop(self.permit.take());
        self.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient(user: Uuid) -> Recipient {
        Recipient {
            user,
            connection: None,
        }
    }

    #[tokio::test]
    async fn a_user_gets_their_share_and_gets_it_back_when_replies_are_sent() {
        let budget = UnreadBudget::new(64 * 1024, 8 * 1024);
        let (ada, bob) = (recipient(Uuid::now_v7()), recipient(Uuid::now_v7()));
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(budget.charge(&ada, 2).await.unwrap());
        }
        assert_eq!(
            budget.charge(&ada, 1).await.err(),
            Some(Exhausted::User(8 * 1024))
        );
        // Someone else's share is untouched.
        let other = budget.charge(&bob, 8).await.unwrap();
        drop(held);
        assert!(
            budget.charge(&ada, 8).await.is_ok(),
            "sent replies give their share back"
        );
        drop(other);
        assert!(
            budget.users.lock().unwrap().is_empty(),
            "no entry outlives its charges"
        );
    }

    #[tokio::test]
    async fn the_service_budget_bounds_all_users_together_and_a_refusal_charges_nobody() {
        let budget = UnreadBudget::new(10 * 1024, 8 * 1024);
        // The first holder's replies are on no connection that could be closed.
        let first = budget.charge(&recipient(Uuid::now_v7()), 8).await.unwrap();
        let late = recipient(Uuid::now_v7());
        assert_eq!(
            budget.charge(&late, 4).await.err(),
            Some(Exhausted::Service(10 * 1024))
        );
        assert!(!budget.users.lock().unwrap().contains_key(&late.user));
        drop(first);
        assert!(budget.charge(&late, 8).await.is_ok());
    }
}
