//! `normalize_recovery_code`: any text gives 12 symbols of the unambiguous alphabet or nothing,
//! and normalising again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Some(code) = twofold::totp::normalize_recovery_code(input) {
        assert_eq!(code.len(), 12);
        assert!(code.bytes().all(|b| b"23456789ABCDEFGHJKMNPQRSTUVWXYZ".contains(&b)), "{code}");
        assert_eq!(twofold::totp::normalize_recovery_code(&code).as_deref(), Some(code.as_str()));
    }
});
