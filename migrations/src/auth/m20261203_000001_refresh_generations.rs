//! Refresh tokens become generations of their session: a token names its session and a
//! generation number, authenticated with the session's secret, and the session row keeps the
//! current generation and when (and with which key) the previous one was exchanged. Storage
//! per session is then one row however often it refreshes, and any older generation is still
//! recognised as reuse. `refresh_tokens` keeps only tokens issued before this migration
//! (until their sessions end); its spent rows older than any grace window are of no further
//! use to anyone but reuse detection of tokens from before the upgrade, which they keep.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            big_integer(Sessions::RefreshGeneration)
                .default(0)
                .to_owned(),
            timestamp_with_time_zone_null(Sessions::RefreshedAt),
            string_len_null(Sessions::RefreshedKid, 64),
        ];
        crate::add_columns(manager, Sessions::Table, columns).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            Sessions::RefreshedKid,
            Sessions::RefreshedAt,
            Sessions::RefreshGeneration,
        ];
        crate::drop_columns(manager, Sessions::Table, columns).await
    }
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    RefreshGeneration,
    RefreshedAt,
    RefreshedKid,
}
