//! argon2id at the configured default parameters (`ARGON2_MEMORY_KIB` 19456, `_ITERATIONS`
//! 2, `_PARALLELISM` 1). `cargo bench -p auth-service --bench password`.
//!
//! `argon2/hash` is the bare hash (what bounds sign-in throughput: `MAX_CONCURRENT_HASHES`
//! of them at once); `hasher/*` goes through the service's [`PasswordHasher`] (semaphore
//! permit + `spawn_blocking`) as sign-up (`hash`) and sign-in (`verify`) do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use argon2::{Algorithm, Argon2, PasswordHasher as _, Version};
use auth_service::{
    config::AuthConfig,
    internals::{Password, PasswordCheck, PasswordHasher},
};
use criterion::{Criterion, criterion_group, criterion_main};
use grpc_edge::violations::FieldViolations;
use std::{hint::black_box, time::Duration};

use test_support::PASSWORD;

fn password() -> Password {
    Password::parse_new(PASSWORD.into(), "password", &mut FieldViolations::new()).unwrap()
}

fn argon2id(c: &mut Criterion) {
    let config = AuthConfig::for_database("127.0.0.1:0".parse().unwrap(), "sqlite::memory:");
    let params = config.passwords.argon2_params().unwrap();
    assert_eq!(
        (params.m_cost(), params.t_cost(), params.p_cost()),
        (19456, 2, 1),
        "the benchmark is meant for the default parameters"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let hasher = PasswordHasher::new(&config.passwords).unwrap();
    let stored = rt.block_on(hasher.hash(password())).unwrap();
    assert_eq!(
        rt.block_on(hasher.verify(password(), Some(stored.clone())))
            .unwrap(),
        PasswordCheck::Right {
            needs_rehash: false
        }
    );

    let mut group = c.benchmark_group("argon2id");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("argon2/hash", |b| {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        b.iter(|| {
            argon2
                .hash_password(black_box(PASSWORD.as_bytes()))
                .unwrap()
        })
    });
    group.bench_function("hasher/hash", |b| {
        b.iter(|| rt.block_on(hasher.hash(password())).unwrap())
    });
    group.bench_function("hasher/verify", |b| {
        b.iter(|| {
            rt.block_on(hasher.verify(password(), Some(stored.clone())))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, argon2id);
criterion_main!(benches);
