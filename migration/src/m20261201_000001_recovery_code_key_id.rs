//! `recovery_codes.key_id`: the id of the encryption key whose HMAC key hashed each code.
//!
//! Recovery codes are stored only as keyed hashes, which cannot be re-keyed the way a sealed
//! secret can be re-encrypted: a code hashed under an old key matches only while that key stays
//! configured. Recording the key beside each hash lets `twofold admin reseal` tell how many users
//! still depend on an old key. Rows written before this migration have no key id (NULL).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    KeyId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RecoveryCodes::Table)
                    .add_column(ColumnDef::new(RecoveryCodes::KeyId).string_len(32).null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(RecoveryCodes::Table).drop_column(RecoveryCodes::KeyId).to_owned())
            .await
    }
}
