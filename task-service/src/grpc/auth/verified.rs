//! Access tokens this replica has already verified, so a client's repeated calls with the
//! same token skip the signature check: an Ed25519 check costs ~50 µs, a hit about 1 µs.
//! (Envoy's JWT filter keeps the same kind of cache.)
//!
//! What a hit still checks, and what empties the cache:
//! - the token is looked up by its whole text, so only the exact bytes that were verified hit;
//! - `exp`/`nbf` are checked again on every use, by the caller of [`VerifiedTokens::get`];
//! - entries belong to the key set they were verified with: when the fetched keys are
//!   replaced (a fetch, a rotation, a key withdrawn), the next insert empties the cache, and
//!   lookups against another set miss, so a withdrawn key's tokens are refused at once.
//!
//! The map itself is `quick_cache`'s: sharded, bounded, S3-FIFO eviction (a flood of
//! one-time tokens cannot push out the tokens clients keep using).

use super::Caller;
use access_token::VerificationKeys;
use quick_cache::sync::Cache;
use std::sync::{Arc, Mutex, PoisonError};

/// A bounded map from verified token to its caller and validity window.
pub struct VerifiedTokens {
    /// `None` when the capacity is 0: nothing is remembered.
    tokens: Option<Cache<Box<str>, Entry>>,
    /// The key set every entry was verified with. Holding it keeps its address from being
    /// reused by another set while entries carry that address; inserts take this lock (they
    /// follow a signature check anyway), lookups do not.
    verified_with: Mutex<Option<Arc<VerificationKeys>>>,
}

#[derive(Clone)]
struct Entry {
    /// The address of the key set the token was verified with.
    keys: usize,
    token: VerifiedToken,
}

/// A verified token: who it names and when it may be used (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The caller the token names.
    pub caller: Caller,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
}

fn address(keys: &Arc<VerificationKeys>) -> usize {
    Arc::as_ptr(keys) as usize
}

impl VerifiedTokens {
    /// A cache holding at most about `capacity` tokens; 0 never remembers anything.
    pub fn new(capacity: usize) -> Self {
        Self {
            tokens: (capacity > 0).then(|| Cache::new(capacity)),
            verified_with: Mutex::default(),
        }
    }

    /// What `token` was verified to be, if it was verified with exactly `keys` (the same
    /// set, not merely an equal one). The caller must still check the time window.
    pub fn get(&self, token: &str, keys: &Arc<VerificationKeys>) -> Option<VerifiedToken> {
        let entry = self.tokens.as_ref()?.get(token)?;
        (entry.keys == address(keys)).then_some(entry.token)
    }

    /// Whether `token` was verified with exactly `keys`.
    pub fn contains(&self, token: &str, keys: &Arc<VerificationKeys>) -> bool {
        self.get(token, keys).is_some()
    }

    /// Remembers that `token` verified with `keys`; entries of another key set are dropped.
    pub fn insert(&self, token: &str, keys: &Arc<VerificationKeys>, verified: VerifiedToken) {
        let Some(tokens) = &self.tokens else {
            return;
        };
        let mut verified_with = self
            .verified_with
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !verified_with
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, keys))
        {
            tokens.clear();
            *verified_with = Some(Arc::clone(keys));
        }
        let entry = Entry {
            keys: address(keys),
            token: verified,
        };
        tokens.insert(token.into(), entry);
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.tokens.as_ref().map_or(0, Cache::len)
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

    fn verified(exp: i64) -> VerifiedToken {
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
        VerifiedToken {
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
        cache.insert("a.b.c", &keys, entry.clone());
        assert_eq!(cache.get("a.b.c", &keys), Some(entry));
        assert!(cache.contains("a.b.c", &keys));
        assert_eq!(cache.get("a.b.d", &keys), None);
        assert!(!cache.contains("a.b.d", &keys));
        // An equal but different set (a re-fetch) does not count: re-verify once.
        let refetched = Arc::new(VerificationKeys::shared_secret(&[7; 32]));
        assert_eq!(cache.get("a.b.c", &refetched), None);
        assert!(!cache.contains("a.b.c", &refetched));
        // Inserting under the new set forgets the old set's entries.
        cache.insert("x.y.z", &refetched, verified(100));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get("a.b.c", &keys), None);
    }

    #[test]
    fn stays_bounded_and_keeps_the_tokens_in_use_through_a_flood_of_new_ones() {
        let cache = VerifiedTokens::new(100);
        let keys = Arc::new(VerificationKeys::new());
        cache.insert("in-use", &keys, verified(100));
        for i in 0..10_000 {
            cache.insert(&format!("one-time-{i}"), &keys, verified(100));
            if i % 10 == 0 {
                assert!(cache.get("in-use", &keys).is_some(), "evicted after {i}");
            }
        }
        assert!(cache.len() <= 100, "{} entries", cache.len());
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let cache = VerifiedTokens::new(0);
        let keys = Arc::new(VerificationKeys::new());
        cache.insert("t", &keys, verified(100));
        assert!(cache.is_empty());
        assert_eq!(cache.get("t", &keys), None);
    }
}
