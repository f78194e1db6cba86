use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TotpCredentials::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(TotpCredentials::UserId).string_len(255).not_null().primary_key())
                    .col(ColumnDef::new(TotpCredentials::Secret).binary().not_null())
                    .col(ColumnDef::new(TotpCredentials::KeyId).string_len(32).not_null())
                    .col(ColumnDef::new(TotpCredentials::Algorithm).string_len(8).not_null())
                    .col(ColumnDef::new(TotpCredentials::Digits).integer().not_null())
                    .col(ColumnDef::new(TotpCredentials::Period).integer().not_null())
                    .col(ColumnDef::new(TotpCredentials::Enabled).boolean().not_null().default(false))
                    .col(ColumnDef::new(TotpCredentials::PendingExpiresAt).big_integer().null())
                    .col(ColumnDef::new(TotpCredentials::EnabledAt).big_integer().null())
                    .col(ColumnDef::new(TotpCredentials::LastUsedStep).big_integer().null())
                    .col(ColumnDef::new(TotpCredentials::FailedAttempts).integer().not_null().default(0))
                    .col(ColumnDef::new(TotpCredentials::LockedUntil).big_integer().null())
                    .col(ColumnDef::new(TotpCredentials::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(TotpCredentials::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_totp_credentials_pending_expires_at")
                    .table(TotpCredentials::Table)
                    .col(TotpCredentials::PendingExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RecoveryCodes::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(RecoveryCodes::UserId).string_len(255).not_null())
                    .col(ColumnDef::new(RecoveryCodes::CodeHash).binary().not_null())
                    .col(ColumnDef::new(RecoveryCodes::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_recovery_codes_user_hash")
                    .table(RecoveryCodes::Table)
                    .col(RecoveryCodes::UserId)
                    .col(RecoveryCodes::CodeHash)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(AuditEvents::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(AuditEvents::UserId).string_len(255).not_null())
                    .col(ColumnDef::new(AuditEvents::Kind).string_len(32).not_null())
                    .col(ColumnDef::new(AuditEvents::At).big_integer().not_null())
                    .col(ColumnDef::new(AuditEvents::CorrelationId).string_len(128).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_user_id_id")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::UserId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_audit_events_at").table(AuditEvents::Table).col(AuditEvents::At).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditEvents::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(RecoveryCodes::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(TotpCredentials::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum TotpCredentials {
    Table,
    UserId,
    Secret,
    KeyId,
    Algorithm,
    Digits,
    Period,
    Enabled,
    PendingExpiresAt,
    EnabledAt,
    LastUsedStep,
    FailedAttempts,
    LockedUntil,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    UserId,
    Kind,
    At,
    CorrelationId,
}
