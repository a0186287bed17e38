//! Nothing but dependencies with features: see `Cargo.toml`.
