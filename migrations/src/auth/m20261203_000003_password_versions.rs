//! Each account's password has a version, moved by every password change (not by a re-hash of
//! the same password with new parameters). A sign-in opens its session only if the version it
//! verified is still the current one, and a re-hash or a change writes only over the version it
//! read, so neither a sign-in nor a re-hash that raced a password change can outlive it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [big_integer(Users::PasswordVersion).default(0).to_owned()];
        crate::add_columns(manager, Users::Table, columns).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::drop_columns(manager, Users::Table, [Users::PasswordVersion]).await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    PasswordVersion,
}
