//! Access tokens this replica has already verified, so a client's repeated calls with the
//! same token skip the signature check: an Ed25519 check costs ~50 µs, a hit about 1 µs.
//! (Envoy's JWT filter keeps the same kind of cache.)
//!
//! What a hit still checks, and what empties the cache:
//! - the token is looked up by its whole text, so only the exact bytes that were verified hit;
//! - `exp`/`nbf` are checked again on every use, by the caller of [`VerifiedTokens::get`];
//! - entries belong to the key set they were verified with: when the key cache's set is
//!   replaced (a fetch, a rotation, a key withdrawn), the next insert empties the cache, and
//!   lookups against another set miss, so a withdrawn key's tokens are refused at once.

use super::Caller;
use access_token::VerificationKeys;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

/// A bounded map from verified token to its caller and validity window.
pub struct VerifiedTokens {
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// The key set every entry was verified with.
    keys: Option<Arc<VerificationKeys>>,
    tokens: HashMap<Box<str>, Verified>,
}

/// A verified token: who it names and when it may be used (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The caller the token names.
    pub caller: Caller,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
}

impl VerifiedTokens {
    /// A cache holding at most `capacity` tokens; 0 never remembers anything.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::default(),
        }
    }

    /// What `token` was verified to be, if it was verified with exactly `keys` (the same
    /// set, not merely an equal one). The caller must still check the time window.
    pub fn get(&self, token: &str, keys: &Arc<VerificationKeys>) -> Option<Verified> {
        if self.capacity == 0 {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match &entries.keys {
            Some(verified_with) if Arc::ptr_eq(verified_with, keys) => {
                entries.tokens.get(token).cloned()
            }
            _ => None,
        }
    }

    /// Whether `token` was verified with exactly `keys`.
    pub fn contains(&self, token: &str, keys: &Arc<VerificationKeys>) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .keys
            .as_ref()
            .is_some_and(|verified_with| Arc::ptr_eq(verified_with, keys))
            && entries.tokens.contains_key(token)
    }

    /// Remembers that `token` verified with `keys`. Entries of another key set are dropped;
    /// when full, expired entries go first (`now`, Unix seconds), then everything.
    pub fn insert(&self, token: &str, keys: &Arc<VerificationKeys>, verified: Verified, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries
            .keys
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, keys))
        {
            entries.tokens.clear();
            entries.keys = Some(Arc::clone(keys));
        }
        if entries.tokens.len() >= self.capacity {
            entries.tokens.retain(|_, entry| entry.exp >= now);
            if entries.tokens.len() >= self.capacity {
                entries.tokens.clear();
            }
        }
        entries.tokens.insert(token.into(), verified);
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .len()
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use access_token::AccessClaims;

    fn verified(exp: i64) -> Verified {
        let claims = AccessClaims {
            iss: "todo-auth".into(),
            aud: "todo-api".into(),
            sub: uuid::Uuid::now_v7().to_string(),
            email: "a@example.com".into(),
            iat: 0,
            nbf: 0,
            exp,
            jti: "j".into(),
            sid: "s".into(),
        };
        Verified {
            caller: Caller::from_claims(claims).expect("sub is a UUID"),
            nbf: 0,
            exp,
        }
    }

    #[test]
    fn hits_only_the_exact_token_and_key_set() {
        let cache = VerifiedTokens::new(10);
        let keys = Arc::new(VerificationKeys::shared_secret(&[7; 32]));
        let entry = verified(100);
        cache.insert("a.b.c", &keys, entry.clone(), 0);
        assert_eq!(cache.get("a.b.c", &keys), Some(entry));
        assert!(cache.contains("a.b.c", &keys));
        assert_eq!(cache.get("a.b.d", &keys), None);
        assert!(!cache.contains("a.b.d", &keys));
        // An equal but different set (a re-fetch) does not count: re-verify once.
        let refetched = Arc::new(VerificationKeys::shared_secret(&[7; 32]));
        assert_eq!(cache.get("a.b.c", &refetched), None);
        assert!(!cache.contains("a.b.c", &refetched));
        // Inserting under the new set forgets the old set's entries.
        cache.insert("x.y.z", &refetched, verified(100), 0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("a.b.c", &keys), None);
    }

    #[test]
    fn stays_bounded_dropping_expired_entries_first() {
        let cache = VerifiedTokens::new(3);
        let keys = Arc::new(VerificationKeys::new());
        cache.insert("old", &keys, verified(5), 0);
        cache.insert("live-1", &keys, verified(100), 0);
        cache.insert("live-2", &keys, verified(100), 0);
        cache.insert("live-3", &keys, verified(100), 10);
        assert_eq!(cache.len(), 3);
        assert!(cache.get("old", &keys).is_none());
        assert!(cache.get("live-1", &keys).is_some());
        // Full of live entries: starts over rather than growing.
        cache.insert("live-4", &keys, verified(100), 10);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("live-4", &keys).is_some());
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let cache = VerifiedTokens::new(0);
        let keys = Arc::new(VerificationKeys::new());
        cache.insert("t", &keys, verified(100), 0);
        assert!(cache.is_empty());
        assert_eq!(cache.get("t", &keys), None);
    }
}
