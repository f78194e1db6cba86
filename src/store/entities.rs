//! sea-orm entities. These are storage types only: they are never exposed through GraphQL or
//! REST (the transports have their own output types).

pub mod credential {
    use sea_orm::entity::prelude::*;

    /// One TOTP credential per user, pending or enabled. Times are Unix milliseconds.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "totp_credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// AES-256-GCM nonce ‖ ciphertext ‖ tag of the raw secret (never the plaintext).
        pub secret: Vec<u8>,
        /// Which encryption key sealed `secret`.
        pub key_id: String,
        pub algorithm: String,
        pub digits: i32,
        pub period: i32,
        pub enabled: bool,
        pub pending_expires_at: Option<i64>,
        pub enabled_at: Option<i64>,
        pub last_used_step: Option<i64>,
        pub failed_attempts: i32,
        pub locked_until: Option<i64>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod recovery_code {
    use sea_orm::entity::prelude::*;

    /// One unused recovery code, stored only as a keyed hash. Used codes are deleted.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "recovery_codes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: String,
        pub code_hash: Vec<u8>,
        /// The encryption key whose HMAC key hashed the code (NULL: written before this was
        /// recorded).
        pub key_id: Option<String>,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_event {
    use sea_orm::entity::prelude::*;

    /// One audit event (never a code or secret).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: String,
        pub kind: String,
        pub at: i64,
        pub correlation_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
