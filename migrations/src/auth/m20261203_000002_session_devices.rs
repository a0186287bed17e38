//! Sessions remember where they are used from, for their owner's ListSessions: the client's
//! address (as seen through trusted proxies) and its user agent, as of the sign-in or the last
//! refresh. Both are personal data: they are erased when the session is signed out, and go
//! with the row when it ends. Sessions from before this migration have neither ("unknown").

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Longest stored user agent, in characters (the service cuts longer ones to this).
const USER_AGENT_MAX_CHARS: u32 = 256;
/// Longest textual IPv6 address (with an IPv4 tail) is 45 characters; some room to spare.
const ADDRESS_MAX_CHARS: u32 = 64;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            string_len_null(Sessions::ClientAddress, ADDRESS_MAX_CHARS),
            string_len_null(Sessions::UserAgent, USER_AGENT_MAX_CHARS),
        ];
        crate::add_columns(manager, Sessions::Table, columns).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [Sessions::UserAgent, Sessions::ClientAddress];
        crate::drop_columns(manager, Sessions::Table, columns).await
    }
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ClientAddress,
    UserAgent,
}
