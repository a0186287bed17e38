//! Opaque, tamper-evident ListTasks page tokens (AIP-158).
//!
//! A token holds the id of the last task on the page (the keyset: ids are time-ordered
//! UUIDv7, listed newest first) and the filter it was made for, and is signed with
//! HMAC-SHA-256 over the caller's user id too. So a token that was altered, made by a
//! replica with another key, belongs to another user, or is reused with a different filter is
//! refused, and the list query never sees an id the client made up.

use crate::domain::CompletedFilter;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 1 + 16;
const TAG_LEN: usize = 16;

/// Why a page token was refused (the message says what to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageTokenError {
    /// Not a token this service issued for this caller (altered, truncated, stale key).
    #[error("is not a page token this service issued for you: start again from the first page")]
    Invalid,
    /// Issued for another filter.
    #[error("was issued for a different filter: send the same filter as the first page")]
    FilterChanged,
}

/// Signs and checks page tokens.
#[derive(Clone)]
pub struct PageTokens {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(***)")
    }
}

impl PageTokens {
    /// Tokens signed with `key` (HMAC accepts keys of any length).
    pub fn new(key: &[u8]) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key)?,
        })
    }

    /// Tokens signed with a random key (valid until this process ends).
    pub fn random() -> Result<Self, String> {
        let mut key = [0_u8; 32];
        getrandom::fill(&mut key).map_err(|e| e.to_string())?;
        Self::new(&key).map_err(|e| e.to_string())
    }

    fn mac(&self, owner: Uuid, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(owner.as_bytes());
        mac.update(payload);
        mac
    }

    /// The token for the page after the task `last_id`, for `owner` and `filter`.
    pub fn encode(&self, owner: Uuid, filter: CompletedFilter, last_id: Uuid) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD_LEN + TAG_LEN);
        bytes.push(VERSION);
        bytes.push(filter_byte(filter));
        bytes.extend_from_slice(last_id.as_bytes());
        let tag = self.mac(owner, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The last id of the previous page, if `token` is one of ours for `owner` and `filter`.
    pub fn decode(
        &self,
        token: &str,
        owner: Uuid,
        filter: CompletedFilter,
    ) -> Result<Uuid, PageTokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| PageTokenError::Invalid)?;
        if bytes.len() != PAYLOAD_LEN + TAG_LEN {
            return Err(PageTokenError::Invalid);
        }
        let (payload, tag) = bytes.split_at(PAYLOAD_LEN);
        // Constant-time comparison of the tag.
        self.mac(owner, payload)
            .verify_truncated_left(tag)
            .map_err(|_| PageTokenError::Invalid)?;
        if payload[0] != VERSION {
            return Err(PageTokenError::Invalid);
        }
        if payload[1] != filter_byte(filter) {
            return Err(PageTokenError::FilterChanged);
        }
        Uuid::from_slice(&payload[2..]).map_err(|_| PageTokenError::Invalid)
    }
}

fn filter_byte(filter: CompletedFilter) -> u8 {
    match filter {
        CompletedFilter::Any => 0,
        CompletedFilter::Open => 1,
        CompletedFilter::Done => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> PageTokens {
        PageTokens::new(b"test key").unwrap()
    }

    #[test]
    fn a_token_decodes_to_the_id_it_was_made_from() {
        let (owner, last) = (Uuid::now_v7(), Uuid::now_v7());
        let token = tokens().encode(owner, CompletedFilter::Open, last);
        assert_eq!(
            tokens().decode(&token, owner, CompletedFilter::Open),
            Ok(last)
        );
    }

    #[test]
    fn altered_foreign_or_refiltered_tokens_are_refused() {
        let (owner, last) = (Uuid::now_v7(), Uuid::now_v7());
        let token = tokens().encode(owner, CompletedFilter::Any, last);
        let other_key = PageTokens::new(b"another key").unwrap();
        assert_eq!(
            other_key.decode(&token, owner, CompletedFilter::Any),
            Err(PageTokenError::Invalid)
        );
        assert_eq!(
            tokens().decode(&token, Uuid::now_v7(), CompletedFilter::Any),
            Err(PageTokenError::Invalid)
        );
        assert_eq!(
            tokens().decode(&token, owner, CompletedFilter::Done),
            Err(PageTokenError::FilterChanged)
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            let altered = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(
                tokens().decode(&altered, owner, CompletedFilter::Any),
                Err(PageTokenError::Invalid),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        for garbage in ["", "not base64!", "AAAA"] {
            assert_eq!(
                tokens().decode(garbage, owner, CompletedFilter::Any),
                Err(PageTokenError::Invalid)
            );
        }
    }
}
