//! The public keys as a JWKS document (RFC 7517, OKP keys per RFC 8037), served over HTTP GET
//! at `/.well-known/jwks.json` for standard JWT libraries.

use crate::{error::AuthError, rules::PublicKeys};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// The JWKS document of the keys `public_keys` lists.
pub async fn jwks_json(public_keys: &PublicKeys) -> Result<String, AuthError> {
    let keys: Vec<_> = public_keys
        .list()
        .await?
        .into_iter()
        .map(|k| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "use": "sig",
                "alg": k.algorithm,
                "kid": k.kid,
                "x": URL_SAFE_NO_PAD.encode(&k.public_key),
            })
        })
        .collect();
    serde_json::to_string(&serde_json::json!({ "keys": keys }))
        .map_err(|e| AuthError::internal(format!("jwks: {e}")))
}
