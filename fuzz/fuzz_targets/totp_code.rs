//! `normalize_totp_code`: any text gives exactly `digits` ASCII digits (the input without its
//! whitespace) or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    for digits in [6u8, 8] {
        if let Some(code) = twofold::totp::normalize_totp_code(input, digits) {
            assert_eq!(code.len(), usize::from(digits));
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
            let stripped: String = input.chars().filter(|c| !c.is_whitespace()).collect();
            assert_eq!(code, stripped);
        }
    }
});
