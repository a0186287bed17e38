//! Access-token verification in the task-service: [`TokenVerifier::verify`] (what a token the
//! interceptor has not seen costs), and the [`Authenticate`] interceptor itself on a request
//! carrying the token, with its verified-token cache and without.
//!
//! `cargo bench -p task-service --bench interceptor`. The keys and tokens are made here:
//! HS256 with jsonwebtoken under [`SHARED_SECRET_KID`], EdDSA by signing `header.claims` with
//! ed25519-dalek under a kid inserted with [`VerificationKeys::insert_ed25519`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use access_token::{AccessClaims, SHARED_SECRET_KID, TokenVerifier, VerificationKeys, token_kid};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use clock::{ManualClock, SharedClock};
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use std::{hint::black_box, sync::Arc};
use task_service::internals::{Authenticate, FetchedKeys, VerifiedTokens};
use tonic::{Request, service::Interceptor};

const ISSUER: &str = "todo-auth";
const AUDIENCE: &str = "todo-api";
/// The services' default leeway (`JWT_LEEWAY_SECS`).
const LEEWAY_SECS: u32 = 30;
/// Verification time, Unix seconds.
const NOW: i64 = 1_800_000_000;
const HS256_SECRET: &[u8] = b"a-benchmark-secret-of-more-than-32-bytes-length";
const ED25519_KID: &str = "ed25519-bench-current";

fn claims(exp: i64) -> AccessClaims {
    AccessClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: "0193a0c4-5b7e-7c3a-9d2e-4f6a8b0c1d2e".into(),
        email: "ada@example.com".into(),
        iat: exp - 900,
        nbf: exp - 900,
        exp,
        jti: "0193a0c4-5b7e-7c3a-9d2e-4f6a8b0c1d2f".into(),
        sid: "0193a0c4-5b7e-7c3a-9d2e-4f6a8b0c1d30".into(),
    }
}

fn hs256_token(secret: &[u8], kid: &str, claims: &AccessClaims) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A compact JWS signed with Ed25519 the way any EdDSA issuer would: base64url(header) "."
/// base64url(claims), signed, then "." base64url(signature).
fn eddsa_token(key: &SigningKey, kid: &str, claims: &AccessClaims) -> String {
    let header = serde_json::json!({ "typ": "JWT", "alg": "EdDSA", "kid": kid });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
    );
    let signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

fn verify(c: &mut Criterion) {
    let verifier = TokenVerifier::new(ISSUER, AUDIENCE, LEEWAY_SECS);
    let valid = claims(NOW + 600);
    let expired = claims(NOW - 3600);

    // HS256: the shared-secret key set the task-service builds in hs256 mode.
    let hs_keys = VerificationKeys::shared_secret(HS256_SECRET);
    let hs_valid = hs256_token(HS256_SECRET, SHARED_SECRET_KID, &valid);
    let hs_bad_signature = hs256_token(
        b"another-secret-of-more-than-32-bytes-length!!",
        SHARED_SECRET_KID,
        &valid,
    );
    let hs_expired = hs256_token(HS256_SECRET, SHARED_SECRET_KID, &expired);

    // EdDSA: the current key and the previous one (still published during rotation).
    let current = SigningKey::from_bytes(&[7u8; 32]);
    let previous = SigningKey::from_bytes(&[8u8; 32]);
    let forger = SigningKey::from_bytes(&[9u8; 32]);
    let mut ed_keys = VerificationKeys::new();
    ed_keys.insert_ed25519(ED25519_KID, current.verifying_key().as_bytes());
    ed_keys.insert_ed25519(
        "ed25519-bench-previous",
        previous.verifying_key().as_bytes(),
    );
    let ed_valid = eddsa_token(&current, ED25519_KID, &valid);
    let ed_bad_signature = eddsa_token(&forger, ED25519_KID, &valid);
    let ed_expired = eddsa_token(&current, ED25519_KID, &expired);
    let ed_unknown_kid = eddsa_token(&current, "ed25519-bench-unknown", &valid);

    // The fixtures are what they claim to be.
    assert!(verifier.verify(&hs_valid, &hs_keys, NOW).is_ok());
    assert!(verifier.verify(&ed_valid, &ed_keys, NOW).is_ok());
    for (token, keys) in [
        (&hs_bad_signature, &hs_keys),
        (&hs_expired, &hs_keys),
        (&ed_bad_signature, &ed_keys),
        (&ed_expired, &ed_keys),
        (&ed_unknown_kid, &ed_keys),
    ] {
        assert!(verifier.verify(token, keys, NOW).is_err());
    }

    let mut group = c.benchmark_group("verify");
    let cases = [
        ("hs256/valid", &hs_valid, &hs_keys),
        ("hs256/bad_signature", &hs_bad_signature, &hs_keys),
        ("hs256/expired", &hs_expired, &hs_keys),
        ("eddsa/valid", &ed_valid, &ed_keys),
        ("eddsa/bad_signature", &ed_bad_signature, &ed_keys),
        ("eddsa/expired", &ed_expired, &ed_keys),
        ("eddsa/unknown_kid", &ed_unknown_kid, &ed_keys),
    ];
    for (name, token, keys) in cases {
        group.bench_function(name, |b| {
            b.iter(|| verifier.verify(black_box(token), black_box(keys), black_box(NOW)))
        });
    }
    group.finish();

    // The interceptor on a request carrying the token: a repeated token (cache hit), every
    // call verified (cache off), a bad signature, and no token at all.
    let clock: SharedClock = ManualClock::new(chrono::DateTime::from_timestamp(NOW, 0).unwrap());
    let mut group = c.benchmark_group("interceptor");
    for (mode, keys, valid, bad) in [
        ("hs256", &hs_keys, &hs_valid, &hs_bad_signature),
        ("eddsa", &ed_keys, &ed_valid, &ed_bad_signature),
    ] {
        let cache = Arc::new(FetchedKeys::fixed(keys.clone()));
        for (case, cache_size, token) in [
            ("valid_cached", 10_000, Some(valid)),
            ("valid_cache_off", 0, Some(valid)),
            ("bad_signature", 10_000, Some(bad)),
            ("no_token", 10_000, None),
        ] {
            let mut interceptor = Authenticate::new(
                Arc::clone(&cache),
                verifier.clone(),
                Arc::new(VerifiedTokens::new(cache_size)),
                clock.clone(),
            );
            let bearer = token.map(|token| format!("Bearer {token}").parse().unwrap());
            let request = || {
                let mut request = Request::new(());
                if let Some(bearer) = &bearer {
                    request
                        .metadata_mut()
                        .insert("authorization", Clone::clone(bearer));
                }
                request
            };
            assert_eq!(
                interceptor.call(request()).is_ok(),
                token == Some(valid),
                "{mode}/{case}"
            );
            group.bench_function(format!("{mode}/{case}"), |b| {
                b.iter(|| interceptor.call(black_box(request())))
            });
        }
    }
    group.finish();

    // Where an HS256 verification's time goes: the header parse (the task-service's
    // KeyRefresh layer does it too, per request) and jsonwebtoken's own decode.
    let mut group = c.benchmark_group("breakdown");
    group.bench_function("token_kid", |b| b.iter(|| token_kid(black_box(&hs_valid))));
    let prebuilt = |algorithm| {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation
    };
    let hs_validation = prebuilt(Algorithm::HS256);
    let hs_key = DecodingKey::from_secret(HS256_SECRET);
    assert!(decode::<AccessClaims>(&hs_valid, &hs_key, &hs_validation).is_ok());
    group.bench_function("jsonwebtoken_decode_prebuilt_validation/hs256", |b| {
        b.iter(|| decode::<AccessClaims>(black_box(&hs_valid), &hs_key, &hs_validation))
    });
    let ed_validation = prebuilt(Algorithm::EdDSA);
    let ed_key = DecodingKey::from_ed_der(current.verifying_key().as_bytes());
    assert!(decode::<AccessClaims>(&ed_valid, &ed_key, &ed_validation).is_ok());
    group.bench_function("jsonwebtoken_decode_prebuilt_validation/eddsa", |b| {
        b.iter(|| decode::<AccessClaims>(black_box(&ed_valid), &ed_key, &ed_validation))
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
