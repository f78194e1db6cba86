//! Nesting limits checked before any recursive parse (SPEC §10).
//!
//! Why this exists: async-graphql parses a document with a recursive-descent (pest) parser and
//! builds its syntax tree with recursive functions. A 3 KB unauthenticated request such as
//! `POST /graphql {"query":"{ __typename @skip(if: [[[[…1,500 levels…true]]]]) }"}` overflowed the
//! worker thread's stack inside that parser — before any query depth limit runs — and a stack
//! overflow aborts the whole process (it is not a panic, `catch_unwind` cannot stop it). Nested
//! object literals `{a:{a:…}}`, deep selection sets, the GET form and batches did the same.
//!
//! The rule: a request body (JSON, counted from its outermost value), a GraphQL document
//! (selection sets, argument lists, list and object literals) or a `variables` value nested
//! deeper than [`MAX_NESTING`] levels is refused with an error before anything recursive looks
//! at it. serde_json's own recursion limit (128) stays on as a second line; these scanners run
//! first with the stricter 64.
//!
//! Both scanners are a single forward pass over the bytes with a depth counter and a few flags:
//! no recursion, no allocation. They only measure nesting; they do not validate. Malformed input
//! never panics (unbalanced closing brackets just stop at zero) and is left for the real parser to
//! reject afterwards. Wherever the scanner and a parser could disagree about what is inside a
//! string, the scanner errs on the side of counting a bracket (a false refusal of absurd input,
//! never a missed deep one).

/// The deepest nesting accepted in a request body, a GraphQL document or a `variables` value.
pub const MAX_NESTING: usize = 64;

/// Whether the JSON text `bytes` nests arrays/objects deeper than `max` levels.
///
/// Depth is counted from the outermost value: `1` and `"x"` are depth 0, `[]` and `{}` depth 1,
/// `[[]]` depth 2. Brackets inside JSON strings (with `\"` and `\\` escapes) do not count.
pub fn json_too_deep(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether the GraphQL document `query` nests deeper than `max` levels.
///
/// `{` (selection sets, object literals), `[` (list literals, list types) and `(` (argument and
/// variable-definition lists) all count in one counter: a selection set inside an argument list
/// inside a list literal adds up. Brackets inside string literals `"…"` (escapes `\"`, `\\`; a
/// line break ends the literal, as in the grammar), block strings `"""…"""` (where `\"""` is an
/// escaped triple quote) and `#` comments (to the end of the line) do not count.
pub fn graphql_too_deep(query: &str, max: usize) -> bool {
    let b = query.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                // A comment runs to the next line terminator; a quote in it opens nothing.
                i += 1;
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if b[i + 1..].starts_with(b"\"\"") => {
                // Block string: ends at the first `"""` not preceded by a backslash escape.
                i += 3;
                while i < b.len() {
                    if b[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                    } else if b[i..].starts_with(b"\"\"\"") {
                        i += 3;
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                // String literal: ends at an unescaped `"`, or (invalid, left to the parser) at a
                // line break, after which scanning resumes counting brackets.
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\n' | b'\r' => break,
                        b'\\' if matches!(b.get(i + 1), Some(b'"' | b'\\')) => i += 2,
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max {
                    return true;
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    }

    /// `n` levels cycling through `{`, `[`, `(` (a selection set in an argument list in a list…).
    fn mixed(n: usize) -> String {
        let kinds = [("{", "}"), ("[", "]"), ("(", ")")];
        let mut open = String::new();
        let mut close = String::new();
        for level in 0..n {
            let (o, c) = kinds[level % 3];
            open.push_str(o);
            close.insert_str(0, c);
        }
        format!("{open}x{close}")
    }

    #[test]
    fn json_depth_is_counted_from_the_outermost_value() {
        assert!(!json_too_deep(b"", 0));
        assert!(!json_too_deep(b"1", 0));
        assert!(!json_too_deep(b"\"[[[\"", 0));
        assert!(json_too_deep(b"[]", 0));
        assert!(!json_too_deep(b"[]", 1));
        assert!(!json_too_deep(b"{}", 1));
        assert!(json_too_deep(b"[[]]", 1));
        assert!(!json_too_deep(b"[[]]", 2));
        // Siblings do not add up.
        assert!(!json_too_deep(b"[[],[],{\"a\":1}]", 2));
        assert!(!json_too_deep(b"[[],[],{\"a\":[]}]", 3));
        assert!(json_too_deep(b"[[],[],{\"a\":[]}]", 2));
    }

    #[test]
    fn json_64_levels_pass_and_65_fail() {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let ok = nested(open, "1", close, MAX_NESTING);
            let deep = nested(open, "1", close, MAX_NESTING + 1);
            assert!(!json_too_deep(ok.as_bytes(), MAX_NESTING), "{open}");
            assert!(json_too_deep(deep.as_bytes(), MAX_NESTING), "{open}");
            // serde_json agrees on what the depth is.
            assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
        }
        let mut ok = String::new();
        let mut close = String::new();
        for level in 0..MAX_NESTING {
            ok.push_str(if level % 2 == 0 { "[" } else { "{\"k\":" });
            close.insert_str(0, if level % 2 == 0 { "]" } else { "}" });
        }
        let deep = format!("{ok}[0]{close}");
        let ok = format!("{ok}0{close}");
        assert!(!json_too_deep(ok.as_bytes(), MAX_NESTING));
        assert!(json_too_deep(deep.as_bytes(), MAX_NESTING));
    }

    #[test]
    fn json_brackets_in_strings_do_not_count() {
        let s = format!(r#"{{"query": "{}", "k\"[{{": "\\", "x": [1]}}"#, "[{".repeat(500));
        assert!(serde_json::from_str::<serde_json::Value>(&s).is_ok());
        assert!(!json_too_deep(s.as_bytes(), 2));
        assert!(json_too_deep(s.as_bytes(), 1));
        // `\\` ends with the string's quote: the brackets after it count again.
        let s = r#"["\\", [[[]]]]"#;
        assert!(json_too_deep(s.as_bytes(), 3));
        assert!(!json_too_deep(s.as_bytes(), 4));
        // `\"` does not end the string: the brackets after it are still inside.
        let s = r#"["\" [[[[ ", 1]"#;
        assert!(!json_too_deep(s.as_bytes(), 1));
    }

    #[test]
    fn json_malformed_input_does_not_panic() {
        assert!(!json_too_deep(b"]]]]}}}}", 0));
        assert!(!json_too_deep(b"]]]][", 1));
        assert!(json_too_deep(b"]]]][[", 1));
        assert!(!json_too_deep(b"\"unterminated [[[[", 1));
        assert!(!json_too_deep(b"\"\\", 0));
        assert!(json_too_deep(&[b'['; 100_000], MAX_NESTING));
    }

    #[test]
    fn graphql_64_levels_pass_and_65_fail_for_each_bracket_kind() {
        for (open, close) in [("{", "}"), ("[", "]"), ("(", ")")] {
            let ok = nested(open, "x", close, MAX_NESTING);
            let deep = nested(open, "x", close, MAX_NESTING + 1);
            assert!(!graphql_too_deep(&ok, MAX_NESTING), "{open}");
            assert!(graphql_too_deep(&deep, MAX_NESTING), "{open}");
        }
        assert!(!graphql_too_deep(&mixed(MAX_NESTING), MAX_NESTING));
        assert!(graphql_too_deep(&mixed(MAX_NESTING + 1), MAX_NESTING));
    }

    #[test]
    fn graphql_realistic_documents() {
        // The crash from the security review, and its object-literal and selection-set forms.
        let list = format!("{{ __typename @skip(if: {}true{}) }}", "[".repeat(1500), "]".repeat(1500));
        assert!(graphql_too_deep(&list, MAX_NESTING));
        let object = format!("{{ f(a: {}1{}) }}", "{a:".repeat(1500), "}".repeat(1500));
        assert!(graphql_too_deep(&object, MAX_NESTING));
        let selections = format!("{}a{}", "{ a ".repeat(1500), "}".repeat(1500));
        assert!(graphql_too_deep(&selections, MAX_NESTING));
        // Selection set (1) + arguments (2) + 61 list levels = 64: accepted; one more is not.
        let ok = format!("{{ __typename @skip(if: {}true{}) }}", "[".repeat(62), "]".repeat(62));
        assert!(!graphql_too_deep(&ok, MAX_NESTING));
        let deep = format!("{{ __typename @skip(if: {}true{}) }}", "[".repeat(63), "]".repeat(63));
        assert!(graphql_too_deep(&deep, MAX_NESTING));
        // Siblings do not add up; list types in variable definitions count.
        let q = "query Q($a: [[Int!]!], $b: String = \"x\") { a(x: 1) { b } c(y: [1, 2]) { d { e } } }";
        assert!(!graphql_too_deep(q, 3));
        assert!(graphql_too_deep(q, 2));
    }

    #[test]
    fn graphql_brackets_in_strings_block_strings_and_comments_do_not_count() {
        let q = format!("{{ a(s: \"{}\") }}", "{[(".repeat(100));
        assert!(!graphql_too_deep(&q, 2));
        assert!(graphql_too_deep(&q, 1));
        let q = format!("{{ a(s: \"\"\"{}\n{}\"\"\") }}", "{[(".repeat(100), "\"{{".repeat(50));
        assert!(!graphql_too_deep(&q, 2));
        let q = format!("{{ # {}\n a }}", "{[(\"".repeat(100));
        assert!(!graphql_too_deep(&q, 1));
        let q = format!("{{ # {}\r a(x: 1) }}", "{[(".repeat(100));
        assert!(!graphql_too_deep(&q, 2));
        assert!(graphql_too_deep(&q, 1));
        // `#` inside a string is not a comment: the line goes on counting after the string.
        let q = "{ a(s: \"#\") { b } }";
        assert!(graphql_too_deep(q, 1));
        assert!(!graphql_too_deep(q, 2));
    }

    #[test]
    fn graphql_escaped_quotes() {
        // `\"` stays inside the string.
        assert!(!graphql_too_deep(r#"{ a(s: "\" [[[[[[ ") }"#, 2));
        // `\\` then `"` closes it: the brackets after count.
        assert!(graphql_too_deep(r#"{ a(s: "\\", t: [[[1]]]) }"#, 4));
        assert!(!graphql_too_deep(r#"{ a(s: "\\", t: [[[1]]]) }"#, 5));
        // In a block string `\"""` is an escaped triple quote, not the end.
        assert!(!graphql_too_deep(r#"{ a(s: """ \""" [[[[[[ """) }"#, 2));
        // …but a backslash before it is a literal backslash: `\\"""` still is `\` + `\"""`.
        assert!(!graphql_too_deep(r#"{ a(s: """ \\""" [[[[[[ """) }"#, 2));
        // A plain `"""` ends the block string.
        assert!(graphql_too_deep(r#"{ a(s: """ x """, t: [[[1]]]) }"#, 4));
        // `""` is an empty string, not a block string.
        assert!(graphql_too_deep(r#"{ a(s: "", t: [[[1]]]) }"#, 4));
        assert!(!graphql_too_deep(r#"{ a(s: "", t: [[[1]]]) }"#, 5));
    }

    #[test]
    fn graphql_a_quote_in_a_comment_opens_no_string() {
        let q = "{ # it's \"quoted\n a(x: [[[1]]]) # and \" again\n }";
        assert!(graphql_too_deep(q, 4));
        assert!(!graphql_too_deep(q, 5));
        let q = "{ # a lone \" here\n a(x: [[[1]]]) }";
        assert!(graphql_too_deep(q, 4));
    }

    #[test]
    fn graphql_a_line_break_ends_a_string_literal() {
        // Invalid GraphQL, but the brackets on the next line must be counted, not hidden.
        let q = format!("{{ a(s: \"open\n{}1{}) }}", "[".repeat(100), "]".repeat(100));
        assert!(graphql_too_deep(&q, MAX_NESTING));
        // An escape cannot swallow the line break either.
        let q = format!("{{ a(s: \"open\\\n{}1{}) }}", "[".repeat(100), "]".repeat(100));
        assert!(graphql_too_deep(&q, MAX_NESTING));
    }

    #[test]
    fn graphql_unterminated_and_malformed_input_does_not_panic() {
        for q in [
            "",
            "\"",
            "\"\"",
            "\"\"\"",
            "\"\"\"\"",
            "\"\"\"\\",
            "\"\"\"\\\"",
            "\"\"\"\\\"\"",
            "\"\\",
            "\"\\\"",
            "#",
            "# [[[[",
            "{ a(s: \"[[[[",
            "{ a(s: \"\"\"[[[[",
            ")))}}}]]]",
            "é{ \"ü\" }ß",
        ] {
            assert!(!graphql_too_deep(q, 2), "{q:?}");
        }
        assert!(graphql_too_deep(")))(((", 2));
        assert!(graphql_too_deep(&"{".repeat(100_000), MAX_NESTING));
    }

    /// xorshift64*: deterministic pseudo-random numbers without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        const ALPHABET: &[u8] = b"[]{}()\"\\#\n\r ax,:\xc3\xa9";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| if round % 2 == 0 { ALPHABET[rng.below(ALPHABET.len())] } else { rng.next() as u8 })
                .collect();
            let max = rng.below(6);
            let _ = json_too_deep(&bytes, max);
            let _ = graphql_too_deep(&String::from_utf8_lossy(&bytes), max);
        }
    }

    /// Random JSON values: the scanner's depth is exactly serde_json's.
    #[test]
    fn json_depth_matches_serde_json_on_random_values() {
        fn value(rng: &mut Rng, budget: usize, out: &mut String) {
            match rng.below(if budget == 0 { 3 } else { 5 }) {
                0 => out.push('1'),
                1 => out.push_str(rng.pick(&[r#""[{""#, r#""\"[""#, r#""\\""#, r#""}]\\\"""#, r#""""#])),
                2 => out.push_str("null"),
                3 => {
                    out.push('[');
                    for i in 0..rng.below(3) {
                        if i > 0 {
                            out.push(',');
                        }
                        value(rng, budget - 1, out);
                    }
                    out.push(']');
                }
                _ => {
                    out.push('{');
                    for i in 0..rng.below(3) {
                        if i > 0 {
                            out.push(',');
                        }
                        // Distinct keys: serde_json keeps only the last of duplicates.
                        out.push_str([r#""k":"#, r#""[\"{":"#, r#""\\":"#][i]);
                        value(rng, budget - 1, out);
                    }
                    out.push('}');
                }
            }
        }
        fn depth(v: &serde_json::Value) -> usize {
            match v {
                serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..5_000 {
            let mut text = String::new();
            value(&mut rng, 8, &mut text);
            let parsed: serde_json::Value = serde_json::from_str(&text).expect(&text);
            let d = depth(&parsed);
            assert!(!json_too_deep(text.as_bytes(), d), "{text}");
            if d > 0 {
                assert!(json_too_deep(text.as_bytes(), d - 1), "{text}");
            }
        }
    }

    /// Random documents built from brackets, strings, block strings and comments with a known
    /// depth: the scanner measures exactly that depth.
    #[test]
    fn graphql_depth_matches_generated_documents() {
        const NOISE: &[&str] = &["{", "}", "[", "]", "(", ")", "\"", "\\", "#", " ", "x", "\\\"\"\"", "\"\"", "é"];
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        for _ in 0..5_000 {
            let mut doc = String::new();
            let mut stack: Vec<char> = Vec::new();
            let mut deepest = 0;
            for _ in 0..rng.below(40) {
                match rng.below(7) {
                    0 | 1 => {
                        let (open, close) = [('{', '}'), ('[', ']'), ('(', ')')][rng.below(3)];
                        doc.push(open);
                        stack.push(close);
                        deepest = deepest.max(stack.len());
                    }
                    2 => {
                        if let Some(close) = stack.pop() {
                            doc.push(close);
                        }
                    }
                    3 => {
                        // A string literal: noise without line breaks, quotes or backslashes
                        // escaped.
                        doc.push('"');
                        for _ in 0..rng.below(6) {
                            match rng.pick(NOISE) {
                                "\"" => doc.push_str("\\\""),
                                "\\" => doc.push_str("\\\\"),
                                "\\\"\"\"" => doc.push_str("\\\\\\\""),
                                "\"\"" => doc.push_str("\\\"\\\""),
                                s => doc.push_str(s),
                            }
                        }
                        // A space after it: `""` then `"` would be the start of a block string.
                        doc.push_str("\" ");
                    }
                    4 => {
                        // A block string: noise, line breaks, escaped triple quotes.
                        doc.push_str("\"\"\"");
                        for _ in 0..rng.below(6) {
                            match rng.pick(NOISE) {
                                "\"" => doc.push_str("\"\n"),
                                "\"\"" => doc.push_str("\"\"x"),
                                "\\" => doc.push_str("\\\\ "),
                                s => doc.push_str(s),
                            }
                        }
                        doc.push_str(" \"\"\" ");
                    }
                    5 => {
                        // A comment to the end of the line.
                        doc.push('#');
                        for _ in 0..rng.below(6) {
                            doc.push_str(rng.pick(NOISE));
                        }
                        doc.push_str(rng.pick(&["\n", "\r", "\r\n"]));
                    }
                    _ => doc.push_str(rng.pick(&[" ", ",", "a", "$v", "@skip", "1.5", "...", ":"])),
                }
            }
            while let Some(close) = stack.pop() {
                doc.push(close);
            }
            assert!(!graphql_too_deep(&doc, deepest), "{doc:?}");
            if deepest > 0 {
                assert!(graphql_too_deep(&doc, deepest - 1), "{doc:?}");
            }
        }
    }
}
