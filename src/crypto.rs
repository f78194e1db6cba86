//! Secrets at rest: AES-256-GCM with a key id beside each ciphertext, and the HMAC-SHA-256 keys
//! that hash recovery codes. Keys can be rotated: the current key seals and hashes, old keys only
//! open and match older rows.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("no encryption key with id {0} is configured")]
    UnknownKey(String),
    #[error("ciphertext could not be authenticated")]
    Corrupt,
    #[error("the operating system's random number generator failed")]
    Random,
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
    recovery_hmac_key: [u8; 32],
}

impl Key {
    fn new(raw: &[u8; 32]) -> Self {
        let digest = Sha256::digest(raw);
        let id = format!("k{}", data_encoding::HEXLOWER.encode(&digest[..6]));
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(raw).expect("HMAC takes keys of any length");
        mac.update(b"twofold recovery-code hash key v1");
        let recovery_hmac_key: [u8; 32] = mac.finalize().into_bytes().into();
        Key { id, cipher: Aes256Gcm::new(raw.into()), recovery_hmac_key }
    }
}

/// The configured encryption keys: one current, any number of old ones.
pub struct Keyring {
    current: Key,
    old: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("current", &self.current.id).field("old", &self.old.len()).finish()
    }
}

/// Decodes a base64 (standard or URL-safe, padded or not) 32-byte key.
pub fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let decoded = [
        &data_encoding::BASE64,
        &data_encoding::BASE64_NOPAD,
        &data_encoding::BASE64URL,
        &data_encoding::BASE64URL_NOPAD,
    ]
    .iter()
    .find_map(|enc| enc.decode(text.as_bytes()).ok())
    .ok_or_else(|| "is not valid base64".to_owned())?;
    decoded.try_into().map_err(|v: Vec<u8>| format!("must decode to 32 bytes, got {}", v.len()))
}

/// A fresh random 32-byte key, base64-encoded.
pub fn generate_key() -> Result<String, CryptoError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|_| CryptoError::Random)?;
    Ok(data_encoding::BASE64.encode(&raw))
}

impl Keyring {
    pub fn new(current: &[u8; 32], old: &[[u8; 32]]) -> Self {
        Keyring { current: Key::new(current), old: old.iter().map(Key::new).collect() }
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    fn key(&self, id: &str) -> Result<&Key, CryptoError> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))
    }

    /// Seals `plaintext` under the current key, bound to `user_id` as associated data (a row
    /// copied to another user does not open). Returns (nonce ‖ ciphertext ‖ tag, key id).
    pub fn seal(&self, user_id: &str, plaintext: &[u8]) -> Result<(Vec<u8>, String), CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: user_id.as_bytes() })
            .map_err(|_| CryptoError::Corrupt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok((out, self.current.id.clone()))
    }

    /// Opens a row sealed by [`Keyring::seal`] under the key `key_id`.
    pub fn open(&self, user_id: &str, key_id: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.key(key_id)?;
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Corrupt)?;
        key.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: user_id.as_bytes() })
            .map_err(|_| CryptoError::Corrupt)
    }

    /// Whether `key_id` names a configured key (current or old).
    pub fn has_key(&self, key_id: &str) -> bool {
        self.key(key_id).is_ok()
    }

    /// Whether a row sealed under `key_id` should be re-sealed under the current key.
    pub fn is_stale(&self, key_id: &str) -> bool {
        key_id != self.current.id
    }

    fn recovery_hash_with(key: &Key, user_id: &str, normalized_code: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key.recovery_hmac_key)
            .expect("HMAC takes keys of any length");
        mac.update(user_id.as_bytes());
        mac.update(&[0]);
        mac.update(normalized_code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// The keyed hash of a normalised recovery code under the current key (what is stored).
    pub fn recovery_hash(&self, user_id: &str, normalized_code: &str) -> Vec<u8> {
        Self::recovery_hash_with(&self.current, user_id, normalized_code)
    }

    /// The hash under every configured key, to match codes stored before a rotation.
    pub fn recovery_hash_candidates(&self, user_id: &str, normalized_code: &str) -> Vec<Vec<u8>> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|k| Self::recovery_hash_with(k, user_id, normalized_code))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_rotation() {
        let old = Keyring::new(&[1; 32], &[]);
        let (sealed, kid) = old.seal("alice", b"secret bytes").unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"secret bytes"));
        let rotated = Keyring::new(&[2; 32], &[[1; 32]]);
        assert_eq!(rotated.open("alice", &kid, &sealed).unwrap(), b"secret bytes");
        assert!(rotated.is_stale(&kid));
        assert!(rotated.open("bob", &kid, &sealed).is_err(), "bound to the user");
        assert!(Keyring::new(&[3; 32], &[]).open("alice", &kid, &sealed).is_err());
        assert!(rotated.recovery_hash_candidates("alice", "ABCD").contains(&old.recovery_hash("alice", "ABCD")));
    }

    #[test]
    fn keys_decode_from_base64() {
        assert_eq!(decode_key(&data_encoding::BASE64.encode(&[7; 32])).unwrap(), [7; 32]);
        assert!(decode_key("c2hvcnQ=").is_err());
        assert!(decode_key("not base64!").is_err());
    }
}
