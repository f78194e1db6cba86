//! The nesting scanners against the real parsers: on any bytes that serde_json parses, the JSON
//! scanner says "too deep" exactly when the value nests deeper than the limit; the GraphQL
//! scanner never panics, and a document it lets through never overflows async-graphql's parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use twofold::nesting::{MAX_NESTING, graphql_too_deep, json_too_deep};

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    for max in [0, 3, 8, MAX_NESTING] {
        let deep = json_too_deep(data, max);
        if let Ok(value) = serde_json::from_slice::<Value>(data) {
            assert_eq!(deep, depth(&value) > max, "max {max}");
        }
    }
    let text = String::from_utf8_lossy(data);
    if !graphql_too_deep(&text, MAX_NESTING) {
        // What the GraphQL handler does next (a stack overflow here would abort the process).
        let _ = async_graphql::parser::parse_query(text.as_ref());
    }
});
