//! Opaque WatchTasks resume tokens: a position in the caller's change log. Unsigned: a
//! position is no secret and only ever reads the caller's own log, so a made-up one can at
//! most be refused (ahead of the head, or swept) or replay the caller's own changes.
//! Independent of PAGE_TOKEN_SECRET, so replicas never need to agree on a key to resume.

use crate::domain::Position;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

const VERSION: u8 = 1;

/// The token of `position`.
pub fn encode(position: Position) -> String {
    let mut bytes = [0_u8; 9];
    bytes[0] = VERSION;
    bytes[1..].copy_from_slice(&position.0.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The position in `token`, `None` if it is not one of ours.
pub fn decode(token: &str) -> Option<Position> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    let (&version, rest) = bytes.split_first()?;
    let position = i64::from_be_bytes(<[u8; 8]>::try_from(rest).ok()?);
    (version == VERSION && position >= 0).then_some(Position(position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_anything_else_is_refused() {
        for position in [0, 1, 41, i64::MAX] {
            assert_eq!(
                decode(&encode(Position(position))),
                Some(Position(position))
            );
        }
        let negative =
            URL_SAFE_NO_PAD.encode([[VERSION].as_slice(), &(-1_i64).to_be_bytes()].concat());
        let other_version = URL_SAFE_NO_PAD.encode([2_u8, 0, 0, 0, 0, 0, 0, 0, 1]);
        for bad in [
            "",
            "x",
            "AQ",
            "not base64!",
            negative.as_str(),
            other_version.as_str(),
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
