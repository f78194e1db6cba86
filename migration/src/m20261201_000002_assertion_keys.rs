//! `assertion_keys`: the Ed25519 keys that sign verification assertions (SPEC §7), one set for
//! the whole deployment. The private key is stored sealed under the encryption key (as TOTP
//! secrets are), the public key in the clear (it is published). Exactly one key is current
//! (`slot = 1`, unique); a rotation retires it (`slot` NULL, `retired_at` set) and inserts the
//! next, and retired keys stay published for the assertions' lifetime.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AssertionKeys {
    Table,
    Kid,
    Secret,
    KeyId,
    PublicKey,
    Slot,
    CreatedAt,
    RetiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AssertionKeys::Table)
                    .col(ColumnDef::new(AssertionKeys::Kid).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(AssertionKeys::Secret).binary().not_null())
                    .col(ColumnDef::new(AssertionKeys::KeyId).string_len(32).not_null())
                    .col(ColumnDef::new(AssertionKeys::PublicKey).binary().not_null())
                    .col(ColumnDef::new(AssertionKeys::Slot).integer().null())
                    .col(ColumnDef::new(AssertionKeys::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(AssertionKeys::RetiredAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_assertion_keys_slot")
                    .table(AssertionKeys::Table)
                    .col(AssertionKeys::Slot)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AssertionKeys::Table).to_owned()).await
    }
}
