//! `twofold admin import` files: any bytes give entries or line-numbered problems, never a panic;
//! every entry has a user id of 1–255 bytes, a secret of at least 16 bytes, 6 or 8 digits and a
//! period of 15–120 s, and no user appears twice.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match twofold::admin::parse_import(data) {
        Ok(entries) => {
            let mut users = std::collections::HashSet::new();
            for (line, e) in entries {
                assert!(line >= 2);
                assert!((1..=255).contains(&e.user_id.len()));
                assert!(users.insert(e.user_id.clone()), "{} twice", e.user_id);
                assert!(e.secret.as_bytes().len() >= twofold::admin::MIN_IMPORT_SECRET);
                assert!(matches!(e.params.digits, 6 | 8));
                assert!((15..=120).contains(&e.params.period));
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            let lines = data.iter().filter(|&&b| b == b'\n').count() as u64 + 2;
            for p in problems {
                assert!(p.line <= lines, "{p} (of {lines} lines)");
            }
        }
    }
});
