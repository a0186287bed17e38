//! A bound on what clients can make the task-service hold by not reading: every reply carrying
//! tasks is charged its encoded size until its body has been sent (or dropped), against one
//! budget per user and one for the whole service. A client that asks for pages and never reads
//! them (an HTTP/2 window of 0, a TCP window of 0) keeps its charge; past the budget its calls
//! are refused with RESOURCE_EXHAUSTED instead of the server holding ever more replies.

use super::auth::Caller;
use crate::error::{Exhausted, TaskError};
use grpc_edge::server::HeldUntilSent;
use prost::Message;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Response;
use uuid::Uuid;

/// The budgets, in KiB (one permit per started KiB of reply).
#[derive(Debug)]
pub struct UnreadBudget {
    total: Arc<Semaphore>,
    total_kib: u32,
    per_user_kib: u32,
    users: Arc<Mutex<HashMap<Uuid, u32>>>,
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
        }
    }

    /// `message` as the reply to `caller`, charged its size until it has been sent. For
    /// replies whose size is known only once the work is done and that may be refused
    /// after it (a page: reading it changed nothing); see [`Self::has_room`].
    pub fn reply<T: Message>(&self, caller: &Caller, message: T) -> Result<Response<T>, TaskError> {
        let charge = self
            .charge(caller.user_id(), kib_of(message.encoded_len()))
            .map_err(TaskError::Unread)?;
        Ok(HeldUntilSent::new(charge).attach(Response::new(message)))
    }

    /// Refuses at once a caller with no room left (before a query that [`Self::reply`]
    /// would then refuse anyway).
    pub fn has_room(&self, caller: &Caller) -> Result<(), TaskError> {
        let used = self
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&caller.user_id())
            .copied()
            .unwrap_or(0);
        if used >= self.per_user_kib {
            return Err(TaskError::Unread(Exhausted::User(
                u64::from(self.per_user_kib) * 1024,
            )));
        }
        if self.total.available_permits() == 0 {
            return Err(TaskError::Unread(Exhausted::Service(
                u64::from(self.total_kib) * 1024,
            )));
        }
        Ok(())
    }

    /// Charges `caller` for a reply of at most `bytes` before the work that makes it, so a
    /// write is never refused after it was done; see [`Reserved::reply`].
    pub fn reserve(&self, caller: &Caller, bytes: usize) -> Result<Reserved, TaskError> {
        self.charge(caller.user_id(), kib_of(bytes))
            .map(Reserved)
            .map_err(TaskError::Unread)
    }

    fn charge(&self, user: Uuid, kib: u32) -> Result<Charge, Exhausted> {
        let bytes = |kib: u32| u64::from(kib) * 1024;
        {
            let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
            let used = users.entry(user).or_default();
            if used.saturating_add(kib) > self.per_user_kib {
                if *used == 0 {
                    users.remove(&user);
                }
                return Err(Exhausted::User(bytes(self.per_user_kib)));
            }
            *used += kib;
        }
        // Taken after the user's share, so a refusal here must give that back: `Charge`
        // does, on drop.
        let mut charge = Charge {
            users: Arc::clone(&self.users),
            user,
            kib,
            permit: None,
        };
        match Arc::clone(&self.total).try_acquire_many_owned(kib) {
            Ok(permit) => {
                charge.permit = Some(permit);
                Ok(charge)
            }
            Err(_) => Err(Exhausted::Service(bytes(self.total_kib))),
        }
    }
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
    users: Arc<Mutex<HashMap<Uuid, u32>>>,
    user: Uuid,
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
        if let Some(used) = self
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.user)
        {
            *used = used.saturating_sub(excess);
        }
        self.kib = kib;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(used) = users.get_mut(&self.user) {
            *used = used.saturating_sub(self.kib);
            if *used == 0 {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_their_share_and_gets_it_back_when_replies_are_sent() {
        let budget = UnreadBudget::new(64 * 1024, 8 * 1024);
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let held: Vec<_> = (0..4).map(|_| budget.charge(ada, 2).unwrap()).collect();
        assert_eq!(budget.charge(ada, 1).err(), Some(Exhausted::User(8 * 1024)));
        // Someone else's share is untouched.
        let other = budget.charge(bob, 8).unwrap();
        drop(held);
        assert!(
            budget.charge(ada, 8).is_ok(),
            "sent replies give their share back"
        );
        drop(other);
        assert!(
            budget.users.lock().unwrap().is_empty(),
            "no entry outlives its charges"
        );
    }

    #[test]
    fn the_service_budget_bounds_all_users_together_and_a_refusal_charges_nobody() {
        let budget = UnreadBudget::new(10 * 1024, 8 * 1024);
        let first = budget.charge(Uuid::now_v7(), 8).unwrap();
        let late = Uuid::now_v7();
        assert_eq!(
            budget.charge(late, 4).err(),
            Some(Exhausted::Service(10 * 1024))
        );
        assert!(!budget.users.lock().unwrap().contains_key(&late));
        drop(first);
        assert!(budget.charge(late, 8).is_ok());
    }
}
