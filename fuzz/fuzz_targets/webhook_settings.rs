//! `TWOFOLD_WEBHOOK_*` (input: url 0xFF secret 0xFF events 0xFF max-age seconds): never a panic;
//! accepted settings have an http(s) URL with a host, a non-empty list of webhook kinds without
//! repeats, and an age of 1 s–30 d.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let parts = twofold_fuzz::split(data, 4);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let secret = (!parts[1].is_empty()).then(|| text(parts[1]));
    let events = (!parts[2].is_empty()).then(|| text(parts[2]));
    let mut age = [0u8; 8];
    for (a, b) in age.iter_mut().zip(parts[3]) {
        *a = *b;
    }
    let max_age = Duration::from_secs(u64::from_le_bytes(age));
    if let Ok(s) =
        twofold::webhook::WebhookSettings::parse(&text(parts[0]), secret.as_deref(), events.as_deref(), max_age)
    {
        assert!(matches!(s.url.scheme(), "http" | "https"));
        assert!(s.url.host_str().is_some_and(|h| !h.is_empty()));
        assert!(!s.kinds.is_empty());
        for (i, k) in s.kinds.iter().enumerate() {
            assert!(twofold::service::EventKind::WEBHOOK.contains(k));
            assert!(!s.kinds[..i].contains(k));
        }
        assert!((1..=30 * 86_400).contains(&s.max_age.as_secs()));
    }
});
