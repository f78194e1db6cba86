//! Audit event kinds and the metrics each one counts.

/// Audit event kinds (the strings stored in the database and shown through GraphQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SetupStarted,
    Enabled,
    Verified,
    VerifyFailed,
    CodeReplayed,
    RecoveryCodeUsed,
    RecoveryCodesRegenerated,
    Disabled,
    LockedOut,
    AdminReset,
    AdminUnlocked,
    Imported,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::SetupStarted,
        EventKind::Enabled,
        EventKind::Verified,
        EventKind::VerifyFailed,
        EventKind::CodeReplayed,
        EventKind::RecoveryCodeUsed,
        EventKind::RecoveryCodesRegenerated,
        EventKind::Disabled,
        EventKind::LockedOut,
        EventKind::AdminReset,
        EventKind::AdminUnlocked,
        EventKind::Imported,
    ];

    /// The kinds a webhook receiver may be sent (SPEC §9), the default of
    /// `TWOFOLD_WEBHOOK_EVENTS`.
    pub const WEBHOOK: [EventKind; 9] = [
        EventKind::Enabled,
        EventKind::Disabled,
        EventKind::LockedOut,
        EventKind::CodeReplayed,
        EventKind::RecoveryCodeUsed,
        EventKind::RecoveryCodesRegenerated,
        EventKind::AdminReset,
        EventKind::AdminUnlocked,
        EventKind::Imported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SetupStarted => "SETUP_STARTED",
            EventKind::Enabled => "ENABLED",
            EventKind::Verified => "VERIFIED",
            EventKind::VerifyFailed => "VERIFY_FAILED",
            EventKind::CodeReplayed => "CODE_REPLAYED",
            EventKind::RecoveryCodeUsed => "RECOVERY_CODE_USED",
            EventKind::RecoveryCodesRegenerated => "RECOVERY_CODES_REGENERATED",
            EventKind::Disabled => "DISABLED",
            EventKind::LockedOut => "LOCKED_OUT",
            EventKind::AdminReset => "ADMIN_RESET",
            EventKind::AdminUnlocked => "ADMIN_UNLOCKED",
            EventKind::Imported => "IMPORTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The Prometheus counter behind each audit event kind.
pub(super) fn count(kind: EventKind) {
    use metrics::counter;
    match kind {
        EventKind::SetupStarted => counter!("twofold_enrolments_total").increment(1),
        EventKind::Enabled => counter!("twofold_enables_total").increment(1),
        EventKind::Disabled => counter!("twofold_disables_total").increment(1),
        EventKind::RecoveryCodesRegenerated => counter!("twofold_recovery_codes_regenerated_total").increment(1),
        EventKind::LockedOut => counter!("twofold_lockouts_total").increment(1),
        EventKind::Verified => {
            counter!("twofold_verifications_total", "method" => "totp", "result" => "success").increment(1)
        }
        EventKind::RecoveryCodeUsed => {
            counter!("twofold_verifications_total", "method" => "recovery_code", "result" => "success").increment(1)
        }
        EventKind::VerifyFailed => counter!("twofold_verifications_total", "result" => "failure").increment(1),
        EventKind::CodeReplayed => {
            counter!("twofold_verifications_total", "result" => "failure").increment(1);
            counter!("twofold_replays_refused_total").increment(1);
        }
        EventKind::AdminReset => counter!("twofold_admin_actions_total", "action" => "reset").increment(1),
        EventKind::AdminUnlocked => counter!("twofold_admin_actions_total", "action" => "unlock").increment(1),
        EventKind::Imported => counter!("twofold_imports_total").increment(1),
    }
}
