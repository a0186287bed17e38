//! Token issuance: what every sign-in, sign-up and refresh pays besides the database and the
//! password hash. `cargo bench -p auth-service --bench tokens`.
//!
//! The keys come from the real [`KeyRing`] (in-memory SQLite, migrated, the first Ed25519
//! key generated as at first start), and the issuer is built from the configuration the way
//! the service builds it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use access_token::SecretString;
use auth_service::{
    config::{AuthConfig, SigningMode},
    internals::{
        KeyRing, SigningKeys, Subject, TokenIssuer, hash_refresh_token, new_refresh_token,
    },
};
use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use migrations::{AuthMigrator, MigratorTrait};
use std::{hint::black_box, sync::Arc};
use uuid::Uuid;

/// The configured issuer and the loaded keys for `mode`.
fn issuer_and_keys(
    rt: &tokio::runtime::Runtime,
    mode: SigningMode,
) -> (TokenIssuer, Arc<SigningKeys>) {
    let mut config = AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), "sqlite::memory:");
    config.tokens.jwt.signing_algorithm = mode;
    config.tokens.jwt.shared_secret = Some(SecretString::from(
        "a-benchmark-secret-of-more-than-32-bytes-length",
    ));
    config.validate().unwrap();
    let t = &config.tokens;
    let issuer = TokenIssuer::new(&t.jwt.jwt_issuer, &t.jwt.jwt_audience, t.access_ttl());
    let keys = rt.block_on(async {
        let db = service_db::open(
            "AUTH_DATABASE_URL",
            &config.database_url,
            &config.pool,
            |db| async move { AuthMigrator::up(&db, None).await },
        )
        .await
        .unwrap();
        KeyRing::load(db, t, Utc::now(), &Default::default())
            .await
            .unwrap()
            .current(Utc::now())
            .await
            .unwrap()
    });
    (issuer, keys)
}

fn issue(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let subject = Subject {
        user_id: Uuid::now_v7(),
        email: "ada@example.com",
        session_id: Uuid::now_v7(),
    };
    let iat = Utc::now();

    let mut group = c.benchmark_group("issue");
    for (name, mode) in [("hs256", SigningMode::Hs256), ("eddsa", SigningMode::EdDsa)] {
        let (issuer, keys) = issuer_and_keys(&rt, mode);
        let kid = keys.signing_kid().to_owned();
        assert!(
            issuer
                .sign(&keys, &kid, subject, Uuid::now_v7(), iat)
                .is_ok()
        );
        group.bench_function(format!("access_token/{name}"), |b| {
            b.iter(|| {
                issuer.sign(
                    black_box(&keys),
                    black_box(&kid),
                    black_box(subject),
                    Uuid::now_v7(),
                    black_box(iat),
                )
            })
        });
    }
    // The refresh token and the hash the database keeps of it.
    group.bench_function("refresh_token", |b| {
        b.iter(|| hash_refresh_token(&new_refresh_token().unwrap()))
    });
    group.finish();
}

criterion_group!(benches, issue);
criterion_main!(benches);
