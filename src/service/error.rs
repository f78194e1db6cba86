//! What each operation can fail with. Every operation family has its own enum, so each
//! transport maps it with one exhaustive `match` (no "unexpected error" arm), and an
//! unexpected failure is [`Internal`], carrying its source.

use crate::crypto::CryptoError;
use crate::store;
use crate::totp::QrError;

/// An unexpected failure: the database, the keys, a stored row that makes no sense. Logged with
/// its source; callers see only an opaque internal error.
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("sealed secret: {0}")]
    Crypto(#[from] CryptoError),
    #[error("QR code: {0}")]
    Qr(#[from] QrError),
    #[error(transparent)]
    Assertion(#[from] crate::assertion::Error),
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("stored credential is malformed: {0}")]
    Malformed(String),
}

impl Internal {
    /// Whether the database is the cause (dialects answer it with their own code).
    pub fn is_database(&self) -> bool {
        matches!(self, Internal::Store(_) | Internal::Assertion(crate::assertion::Error::Store(_)))
    }
}

/// A counted failure, or a refusal because of the lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    InvalidCode { attempts_remaining: u32 },
    CodeAlreadyUsed { attempts_remaining: u32 },
    TooManyAttempts { retry_after_seconds: u64 },
}

/// Failures of beginning an enrolment (`prepareTwoFactor`, `setupTotp`, both REST shims).
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("Two-factor authentication is already enabled.")]
    TotpAlreadyEnabled,
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Failures of enabling with a code of the pending secret.
#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    #[error("Two-factor authentication is already enabled.")]
    TotpAlreadyEnabled,
    #[error("There is no pending two-factor setup; start one first (it may have expired).")]
    NoPendingSetup,
    #[error("The code is not valid.")]
    InvalidCode { attempts_remaining: u32 },
    #[error("Too many failed attempts; try again in {retry_after_seconds} seconds.")]
    TooManyAttempts { retry_after_seconds: u64 },
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Failures of a code check on an enabled credential: verify, recovery code, disable,
/// regenerate.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("Two-factor authentication is not enabled.")]
    TotpNotEnabled,
    #[error("The code is not valid.")]
    InvalidCode { attempts_remaining: u32 },
    #[error("This code has already been used; wait for the next one.")]
    CodeAlreadyUsed { attempts_remaining: u32 },
    #[error("Too many failed attempts; try again in {retry_after_seconds} seconds.")]
    TooManyAttempts { retry_after_seconds: u64 },
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// Failures of an admin action on a user (reset, unlock).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("The user has no two-factor credential.")]
    TotpNotEnabled,
    #[error(transparent)]
    Internal(#[from] Internal),
}

impl From<store::Error> for AdminError {
    fn from(e: store::Error) -> Self {
        AdminError::Internal(e.into())
    }
}

impl From<Rejection> for CheckError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::InvalidCode { attempts_remaining } => CheckError::InvalidCode { attempts_remaining },
            Rejection::CodeAlreadyUsed { attempts_remaining } => CheckError::CodeAlreadyUsed { attempts_remaining },
            Rejection::TooManyAttempts { retry_after_seconds } => CheckError::TooManyAttempts { retry_after_seconds },
        }
    }
}

impl From<Rejection> for EnableError {
    fn from(r: Rejection) -> Self {
        match r {
            // A pending secret has no used step, so nothing is ever replayed during enable; were
            // it, it is a code that does not enable.
            Rejection::InvalidCode { attempts_remaining } | Rejection::CodeAlreadyUsed { attempts_remaining } => {
                EnableError::InvalidCode { attempts_remaining }
            }
            Rejection::TooManyAttempts { retry_after_seconds } => EnableError::TooManyAttempts { retry_after_seconds },
        }
    }
}

macro_rules! internal_from {
    ($($source:ty),*) => {$(
        impl From<$source> for EnrolError {
            fn from(e: $source) -> Self { EnrolError::Internal(e.into()) }
        }
        impl From<$source> for EnableError {
            fn from(e: $source) -> Self { EnableError::Internal(e.into()) }
        }
        impl From<$source> for CheckError {
            fn from(e: $source) -> Self { CheckError::Internal(e.into()) }
        }
    )*};
}

internal_from!(store::Error, CryptoError, QrError);
