//! The house has no cycles (issue 11): no module of `src/` imports, directly or through others, a
//! module that imports it back. Read from the source (`crate::…` paths outside comments), at the
//! level of the top-level modules (`store`, `service`, `web`, …).

use std::collections::{BTreeMap, BTreeSet};

/// Top-level module → the top-level modules its code names as `crate::<module>`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            let module = relative.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
            if module == "main" || module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let deps = graph.entry(module.clone()).or_default();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let name: String = code[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != module {
                        deps.insert(name);
                    }
                }
            }
        }
    }
    graph
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.contains_key("store") && graph.contains_key("service"), "read the modules: {graph:?}");
    for start in graph.keys() {
        // Depth-first from `start`: reaching `start` again is a cycle.
        let mut stack: Vec<Vec<&str>> = vec![vec![start.as_str()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = *path.last().unwrap();
            for next in graph.get(last).into_iter().flatten() {
                assert!(next != start, "cycle: {} -> {next}", path.join(" -> "));
                if seen.insert(next.as_str()) {
                    let mut longer = path.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
    // The layers: the transports do not reach the database, the service does not know the web.
    for transport in ["graphql", "graphql_http", "rest", "playground", "web", "http"] {
        assert!(!graph[transport].contains("store"), "{transport} imports store");
    }
    for inner in ["service", "store", "totp", "crypto", "assertion"] {
        for web in ["http", "web", "rest", "graphql", "graphql_http", "playground"] {
            assert!(!graph[inner].contains(web), "{inner} imports {web}");
        }
    }
}
