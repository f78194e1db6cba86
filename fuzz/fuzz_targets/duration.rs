//! `parse_duration`: any text is refused or is `<digits><unit>` (spaces around it allowed) and
//! means exactly `digits × unit` seconds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(d) = twofold::config::parse_duration(text) {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let factor = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => panic!("accepted the unit {other:?} in {text:?}"),
        };
        assert_eq!(n.parse::<u64>().ok().and_then(|n| n.checked_mul(factor)), Some(d.as_secs()), "{text:?}");
        assert_eq!(twofold::config::parse_duration(&format!("{}s", d.as_secs())), Ok(d));
    }
});
