//! Operator tasks run from the command line against the configured database (no token: the
//! operator has the database).

use std::sync::Arc;

use crate::crypto::{CryptoError, Keyring};
use crate::store::{Reseal, Sealed, Store};

/// What `twofold admin reseal` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealReport {
    /// Secrets (pending or enabled) now sealed under the current key that were not before.
    pub resealed: u64,
    /// The current key's id.
    pub key_id: String,
    /// Users whose recovery codes (some of them) are hashed under another key: those codes match
    /// only while that key stays configured as an old key.
    pub users_with_old_recovery_codes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    /// Secrets sealed under keys that are not configured: nothing was changed.
    #[error(
        "{} stored secret(s) are sealed under keys that are not configured ({}); nothing was changed: add those keys \
         to TWOFOLD_ENCRYPTION_KEYS_OLD and run it again",
        .0.iter().map(|(_, n)| n).sum::<u64>(),
        .0.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownKeys(Vec<(String, u64)>),
    #[error("the secret of a stored row could not be opened ({0}); nothing was changed")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Database(#[from] crate::store::Error),
}

/// Re-encrypts every stored TOTP secret and assertion signing key under the current key in one
/// transaction (SPEC §10),
/// so an old key can be retired without waiting for each user to log in. Refuses, changing
/// nothing, when any secret is sealed under a key the keyring does not have.
pub async fn reseal(store: &Store, keys: Arc<Keyring>) -> Result<ResealReport, ResealError> {
    let unknown: Vec<(String, u64)> =
        store.secrets_per_key().await?.into_iter().filter(|(key, _)| !keys.has_key(key)).collect();
    if !unknown.is_empty() {
        return Err(ResealError::UnknownKeys(unknown));
    }
    let ring = keys.clone();
    let resealed = store
        .reseal_secrets(move |sealed| {
            let keys = &ring;
            if !keys.is_stale(sealed.key_id()) {
                return Ok(None);
            }
            let (aad, key_id, secret) = match sealed {
                Sealed::TotpSecret { user_id, key_id, secret } => (user_id.to_owned(), key_id, secret),
                Sealed::AssertionKey { kid, key_id, secret } => {
                    (crate::assertion::sealing_context(kid), key_id, secret)
                }
            };
            let plain = keys.open(&aad, key_id, secret)?;
            let (secret, key_id) = keys.seal(&aad, &plain)?;
            Ok::<_, CryptoError>(Some(Reseal { secret, key_id }))
        })
        .await??;
    let key_id = keys.current_key_id().to_owned();
    let users_with_old_recovery_codes = store.users_with_recovery_codes_not_under(&key_id).await?;
    Ok(ResealReport { resealed, key_id, users_with_old_recovery_codes })
}
