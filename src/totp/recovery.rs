//! Recovery codes: 10 per set, 12 characters each from the 31 symbols that cannot be confused
//! (digits 2–9 and letters without I, L and O), i.e. 12 × log2(31) ≈ 59.5 bits of entropy, shown
//! as `XXXX-XXXX-XXXX`. Input is accepted in any case, with or without separators.

/// How many recovery codes a set has.
pub const RECOVERY_CODE_COUNT: usize = 10;
const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
const GROUP: usize = 4;
const LEN: usize = 12;

/// Generates a fresh set of distinct recovery codes, formatted `XXXX-XXXX-XXXX`.
pub fn generate_recovery_codes() -> Result<Vec<String>, getrandom::Error> {
    let mut codes: Vec<String> = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut buf = [0u8; 64];
    while codes.len() < RECOVERY_CODE_COUNT {
        let mut code = String::with_capacity(LEN + LEN / GROUP);
        let mut taken = 0;
        while taken < LEN {
            getrandom::fill(&mut buf)?;
            for v in buf.iter().map(|b| usize::from(b & 0x1F)) {
                // Rejection sampling (drop 31) keeps every symbol equally likely.
                if v < ALPHABET.len() && taken < LEN {
                    if taken > 0 && taken % GROUP == 0 {
                        code.push('-');
                    }
                    code.push(char::from(ALPHABET[v]));
                    taken += 1;
                }
            }
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// Upper-cases and strips separators (`-`, whitespace). Returns `None` when the result is not a
/// well-formed recovery code.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    let code: String =
        input.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_enough_entropy_and_no_confusables() {
        assert!((ALPHABET.len() as f64).log2() * LEN as f64 >= 50.0);
        let codes = generate_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        for code in &codes {
            assert_eq!(code.len(), 14, "{code}");
            assert_eq!(code.matches('-').count(), 2);
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']));
            let typed = code.to_lowercase().replace('-', " ");
            assert_eq!(normalize_recovery_code(&typed).unwrap(), code.replace('-', ""));
        }
        assert_eq!(normalize_recovery_code("ABCD-EFGH-JKM0"), None);
    }
}
