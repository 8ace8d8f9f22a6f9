//! The dependency rule of ARCHITECTURE.md, checked on the source: `domain` uses nothing of
//! ours outside itself; `engine` knows no adapter at the edge (HTTP in and out, gRPC,
//! wiring) and no storage adapter (`store`): it names only its own ports; `api` reaches state only through
//! the engine, never `store`. A `use` that breaks it fails here,
//! naming the file and line.

use std::path::{Path, PathBuf};

/// A module tree and the modules of this crate its code must not name.
struct Rule {
    tree: &'static str,
    /// The crate's top-level modules code under `tree` may name; None: any but `forbidden`.
    allowed: Option<&'static [&'static str]>,
    forbidden: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule { tree: "src/domain", allowed: Some(&["domain"]), forbidden: &[] },
    Rule {
        tree: "src/engine",
        allowed: None,
        forbidden: &["api", "buyers", "ledger", "server", "retention", "checkpoints", "store"],
    },
    Rule { tree: "src/api", allowed: None, forbidden: &["store"] },
    Rule { tree: "src/buyers", allowed: None, forbidden: &["api", "store", "ledger", "server"] },
    Rule { tree: "src/store", allowed: None, forbidden: &["api", "ledger", "server"] },
];

#[test]
fn every_module_depends_only_inward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    for rule in RULES {
        for file in rust_files(&root.join(rule.tree)) {
            let text = std::fs::read_to_string(&file).expect("source files are readable");
            for (number, line) in text.lines().enumerate() {
                for module in named_modules(line) {
                    let refused = rule.forbidden.contains(&module.as_str())
                        || rule.allowed.is_some_and(|allowed| !allowed.contains(&module.as_str()));
                    if refused {
                        let file = file.strip_prefix(root).unwrap_or(&file).display().to_string();
                        broken.push(format!("{file}:{}: names crate::{module}: {}", number + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "dependencies that point outward:\n{}", broken.join("\n"));
}

/// The use cases run the same on one node and on several: which stores they use is chosen
/// once at start (`engine::ports::Stores`), so no engine code outside `engine/shared.rs`
/// (what a node does beside other nodes) asks.
#[test]
fn no_use_case_asks_whether_it_runs_on_one_node_or_several() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut asking = Vec::new();
    for file in rust_files(&root.join("src/engine")) {
        if file.ends_with("engine/shared.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source files are readable");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default().to_ascii_lowercase();
            if code.contains("self.shared") || code.contains("is_shared") || code.contains("redis") {
                let file = file.strip_prefix(root).unwrap_or(&file).display().to_string();
                asking.push(format!("{file}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(asking.is_empty(), "use cases that branch on the deployment:\n{}", asking.join("\n"));
}

#[test]
fn the_rule_sees_plain_grouped_and_nested_paths() {
    assert_eq!(named_modules("use crate::store::journal::InternalRecord;"), ["store"]);
    assert_eq!(named_modules("use crate::{domain::money::Money, store, api::http};"), ["domain", "store", "api"]);
    assert_eq!(named_modules("let x = crate::store::sales::Sales::keeping(1);"), ["store"]);
    assert_eq!(named_modules("// a comment about crate::store"), Vec::<String>::new());
    assert_eq!(named_modules("use super::error::ApiError;"), Vec::<String>::new());
}

/// The top-level modules a line of code names through `crate::` (comments skipped).
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut named = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            named.extend(group.split(',').filter_map(|item| first_ident(item.trim())));
        } else {
            named.extend(first_ident(rest));
        }
    }
    named
}

fn first_ident(text: &str) -> Option<String> {
    let ident: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!ident.is_empty()).then_some(ident)
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("the source tree is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    assert!(!files.is_empty(), "no Rust files under {}", dir.display());
    files
}
