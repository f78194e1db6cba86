//! The pure TOTP core: secrets, codes, the otpauth URI, the QR PNG and recovery codes.
//!
//! Nothing in here does I/O or knows about HTTP, GraphQL or the database.

mod qr;
mod recovery;
mod uri;

pub use qr::{QrError, qr_data_uri, qr_modules, qr_png};
pub use recovery::{RECOVERY_CODE_COUNT, generate_recovery_codes, normalize_recovery_code};
pub use uri::otpauth_uri;

use std::fmt;
use std::str::FromStr;

/// Length of a TOTP secret in bytes (160 bits, RFC 4226 §4 recommendation).
pub const SECRET_LEN: usize = 20;

/// HMAC algorithm of a TOTP credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in otpauth URIs and in the database (`SHA1`, `SHA256`, `SHA512`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    fn to_totp_rs(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" => Ok(Algorithm::Sha1),
            "SHA256" => Ok(Algorithm::Sha256),
            "SHA512" => Ok(Algorithm::Sha512),
            other => Err(format!("unknown TOTP algorithm `{other}` (expected SHA1, SHA256 or SHA512)")),
        }
    }
}

/// The parameters of one credential: algorithm, number of digits and period in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
}

impl Default for TotpParams {
    /// SHA1, 6 digits, 30 seconds: the only combination every authenticator app honours.
    fn default() -> Self {
        TotpParams { algorithm: Algorithm::Sha1, digits: 6, period: 30 }
    }
}

/// A raw TOTP secret (20 bytes from the OS CSPRNG).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A fresh secret of [`SECRET_LEN`] bytes from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = vec![0u8; SECRET_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(Secret(bytes))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 Base32, upper case, no padding (32 characters for 20 bytes).
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    fn totp(&self, params: TotpParams, skew: u16) -> totp_rs::Totp {
        totp_rs::Builder::new()
            .with_algorithm(params.algorithm.to_totp_rs())
            .with_digits(params.digits)
            .with_skew(skew)
            .with_step_duration(u64::from(params.period.max(1)))
            .with_secret(self.0.clone())
            .build_noncompliant()
    }

    /// The code for the time step that contains `unix_seconds`.
    pub fn code_at(&self, params: TotpParams, unix_seconds: u64) -> String {
        self.totp(params, 0).generate(unix_seconds).to_string()
    }

    /// Checks `code` against the steps `now ± skew` in constant time per candidate and returns
    /// the matched time step, or `None`. The code must already be normalised (see
    /// [`normalize_totp_code`]).
    pub fn matching_step(&self, params: TotpParams, code: &str, unix_seconds: u64, skew: u16) -> Option<u64> {
        self.totp(params, skew).check(code, unix_seconds)
    }
}

/// Removes the spaces a person may type (`123 456`) and checks the result is exactly `digits`
/// ASCII digits. Returns `None` when the input cannot be a TOTP code of that length.
pub fn normalize_totp_code(input: &str, digits: u8) -> Option<String> {
    let code: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    (code.len() == usize::from(digits) && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// The time step that contains `unix_seconds`.
pub fn time_step(unix_seconds: u64, period: u32) -> u64 {
    unix_seconds / u64::from(period.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B test vectors (8 digits, T0 = 0, X = 30).
    #[test]
    fn rfc6238_test_vectors() {
        let sha1 = Secret::from_bytes(b"12345678901234567890".to_vec());
        let sha256 = Secret::from_bytes(b"12345678901234567890123456789012".to_vec());
        let sha512 = Secret::from_bytes(b"1234567890123456789012345678901234567890123456789012345678901234".to_vec());
        let vectors: &[(u64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for &(t, c1, c256, c512) in vectors {
            let p = |algorithm| TotpParams { algorithm, digits: 8, period: 30 };
            assert_eq!(sha1.code_at(p(Algorithm::Sha1), t), c1, "SHA1 at {t}");
            assert_eq!(sha256.code_at(p(Algorithm::Sha256), t), c256, "SHA256 at {t}");
            assert_eq!(sha512.code_at(p(Algorithm::Sha512), t), c512, "SHA512 at {t}");
        }
    }

    #[test]
    fn matching_step_honours_the_window() {
        let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
        let params = TotpParams::default();
        let now = 1_700_000_000;
        let step = time_step(now, 30);
        for delta in [-1i64, 0, 1] {
            let t = (now as i64 + delta * 30) as u64;
            let code = secret.code_at(params, t);
            assert_eq!(secret.matching_step(params, &code, now, 1), Some((step as i64 + delta) as u64));
        }
        let far = secret.code_at(params, now + 90);
        assert_eq!(secret.matching_step(params, &far, now, 1), None);
    }

    #[test]
    fn secrets_are_160_bits_in_32_base32_characters() {
        let s = Secret::generate().unwrap();
        assert_eq!(s.as_bytes().len(), 20);
        let b32 = s.to_base32();
        assert_eq!(b32.len(), 32);
        assert!(b32.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert_ne!(s, Secret::generate().unwrap());
    }

    #[test]
    fn codes_are_normalised() {
        assert_eq!(normalize_totp_code(" 123 456 ", 6).as_deref(), Some("123456"));
        assert_eq!(normalize_totp_code("12345", 6), None);
        assert_eq!(normalize_totp_code("12345a", 6), None);
        assert_eq!(normalize_totp_code("１２３４５６", 6), None);
    }
}
