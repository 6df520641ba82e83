//! The server's modules form layers that only point down (the rule is stated at the
//! top of `src/lib.rs`). This test reads every `crate::` and `super::` path in the
//! non-test code of each file under `src/`, resolves it to the module it names, and
//! fails on:
//! 1. a file that is not placed in a layer (every new module must be placed);
//! 2. a path into a higher layer;
//! 3. a cycle between files, even inside one layer (sibling tangles).
//!
//! Re-exports in a `mod.rs` (`pub(crate) use child::Item;`) are followed to the file
//! that defines the item, so using a re-export is not mistaken for depending on the
//! parent module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module prefix → layer (see `src/lib.rs`). The longest matching prefix decides.
const LAYERS: &[(&str, u32)] = &[
    // 1. leaf (the first six are re-exports of ctxstore-api)
    ("error", 1),
    ("proto", 1),
    ("types", 1),
    ("ring", 1),
    ("ranges", 1),
    ("context", 1),
    ("util", 1),
    ("keys", 1),
    ("config", 1),
    ("cluster_config", 1),
    ("auth", 1),
    ("metrics", 1),
    ("otel", 1),
    ("logging", 1),
    // 2. storage
    ("storage", 2),
    // 3. state machine (and the leader's load statistics)
    ("meta::state", 3),
    ("load", 3),
    ("pd", 3),
    ("fsm", 3),
    // 4. replica handle, transport, meta cache
    ("raft::handle", 4),
    ("raft::logger", 4),
    ("raft::transport", 4),
    ("node::lease", 4),
    ("meta::cache", 4),
    // 5. node context
    ("node::ctx", 5),
    // 6. replica actor
    ("raft", 6),
    // 7. replica creation
    ("node::replicas", 7),
    // 8. node services
    ("meta::service", 8),
    ("meta", 8),
    ("node::purge", 8),
    ("node::lease_keeper", 8),
    ("node::split", 8),
    // 9. gRPC
    ("server", 9),
    // 10. process
    ("node", 10),
    ("dev", 10),
    ("bench_support", 10),
    ("", 10),
];

/// Files compiled only for tests (their imports are test code).
const TEST_ONLY: &[&str] = &["raft::ready_sim", "docs_tests"];

/// Modules the crate root re-exports from `ctxstore-api` (leaf modules without a file
/// here).
const EXTERNAL: &[&str] = &["context", "ranges", "ring", "types", "util"];

/// Upward imports tolerated for now, as `(from module, to module)`. Empty: none.
const ALLOWED: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> u32 {
    LAYERS
        .iter()
        .filter(|(p, _)| p.is_empty() || module == *p || module.starts_with(&format!("{p}::")))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, l)| *l)
        .expect("the empty prefix matches everything")
}

/// Every `.rs` file under `dir`, with its module path (`src/raft/peer.rs` →
/// `raft::peer`, `src/storage/mod.rs` → `storage`, `src/lib.rs` → ``). Binaries are
/// crates of their own and are skipped.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src");
        if rel.starts_with("bin") {
            continue;
        }
        let mut parts: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
            parts.pop();
        }
        out.insert(parts.join("::"), f);
    }
    out
}

/// The file's code without its unit-test module (everything from a `#[cfg(test)]`
/// followed by `mod tests {`).
fn non_test_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() == "#[cfg(test)]"
            && lines.get(i + 1).is_some_and(|n| {
                n.trim_start().starts_with("mod tests") || n.contains("mod tests {")
            })
        {
            return lines[..i].join("\n");
        }
    }
    text.to_string()
}

/// Strips `//` comments (doc comments mention paths that are not imports).
fn strip_comments(code: &str) -> String {
    code.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads `a::b::c` (identifiers joined by `::`) at the start of `s`; returns the
/// segments and the rest.
fn read_path(s: &str) -> (Vec<String>, &str) {
    let mut segs = Vec::new();
    let mut rest = s;
    loop {
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segs.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) if r.starts_with(|c: char| is_ident(c)) => rest = r,
            _ => break,
        }
    }
    (segs, rest)
}

/// The leading paths of a `{a::b, c::{d, e}}` group (only the first level: enough to
/// know which modules it names).
fn group_paths(s: &str) -> Vec<Vec<String>> {
    let Some(body) = s.strip_prefix("::{") else {
        return Vec::new();
    };
    let mut depth = 0;
    let mut items = Vec::new();
    let mut cur = String::new();
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        if depth == 0 {
            cur.push(c);
        }
    }
    items.push(cur);
    items
        .iter()
        .map(|i| read_path(i.trim()).0)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Every path the code names through `crate::` or `super::`, as absolute module
/// paths (item names included; resolution trims them).
fn named_paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let here: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(String::from).collect()
    };
    for (needle, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            let mut b = here.clone();
            b.pop();
            b
        }),
    ] {
        let mut i = 0;
        while let Some(pos) = code[i..].find(needle) {
            let at = i + pos;
            i = at + needle.len();
            // Not part of a longer identifier (`my_crate::`) or a `super::super::`.
            if code[..at].ends_with(|c: char| is_ident(c)) {
                continue;
            }
            let rest = &code[i..];
            let (mut start, mut rest) = (base.clone(), rest);
            if needle == "super::" {
                while let Some(r) = rest.strip_prefix("super::") {
                    start.pop();
                    rest = r;
                }
            }
            if rest.starts_with('{') {
                for p in group_paths(&format!("::{rest}")) {
                    out.push([start.clone(), p].concat());
                }
                continue;
            }
            let (segs, after) = read_path(rest);
            if segs.is_empty() {
                continue;
            }
            let full = [start, segs].concat();
            let groups = group_paths(after);
            if groups.is_empty() {
                out.push(full);
            } else {
                for g in groups {
                    out.push([full.clone(), g].concat());
                }
            }
        }
    }
    out
}

/// `mod.rs` re-exports: (parent module, item) → child module defining it.
fn re_exports(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for (m, f) in mods {
        let is_mod_rs = f
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
        if !is_mod_rs {
            continue;
        }
        let code = strip_comments(&std::fs::read_to_string(f).expect("read"));
        for line in code.lines() {
            let l = line.trim();
            let Some(rest) = l
                .strip_prefix("pub(crate) use ")
                .or_else(|| l.strip_prefix("pub use "))
            else {
                continue;
            };
            let rest = rest.strip_prefix("self::").unwrap_or(rest);
            let in_crate = rest.strip_prefix("crate::").is_some();
            let rest = rest.strip_prefix("crate::").unwrap_or(rest);
            let (segs, after) = read_path(rest);
            let Some(child) = segs.first() else { continue };
            let child_mod = if m.is_empty() || in_crate {
                // From the crate root: the longest module prefix of the path.
                let mut best = child.clone();
                for n in 1..=segs.len() {
                    let cand = segs[..n].join("::");
                    if mods.contains_key(&cand) {
                        best = cand;
                    }
                }
                best
            } else {
                format!("{m}::{child}")
            };
            if !mods.contains_key(&child_mod) {
                continue;
            }
            let names: Vec<String> = if after.starts_with("::{") {
                group_paths(after)
                    .into_iter()
                    .filter_map(|p| p.last().cloned())
                    .collect()
            } else {
                segs.last().cloned().into_iter().collect()
            };
            for n in names {
                out.insert((m.clone(), n), child_mod.clone());
            }
        }
    }
    out
}

/// The file module a path lands in: its longest prefix that is a file, following
/// re-exports of the parent's `mod.rs`.
fn resolve(
    path: &[String],
    mods: &BTreeMap<String, PathBuf>,
    exports: &BTreeMap<(String, String), String>,
) -> String {
    if let Some(first) = path.first() {
        if EXTERNAL.contains(&first.as_str()) {
            return first.clone();
        }
    }
    for n in (0..=path.len()).rev() {
        let m = path[..n].join("::");
        if mods.contains_key(&m) {
            if let Some(item) = path.get(n) {
                if let Some(child) = exports.get(&(m.clone(), item.clone())) {
                    return child.clone();
                }
            }
            return m;
        }
    }
    String::new()
}

#[test]
fn modules_import_only_from_their_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    assert!(
        mods.len() > 30,
        "found only {} modules under src",
        mods.len()
    );
    let exports = re_exports(&mods);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut violations = Vec::new();
    for (m, f) in &mods {
        if TEST_ONLY.contains(&m.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("read source");
        let code = strip_comments(&non_test_code(&text));
        for path in named_paths(m, &code) {
            let target = resolve(&path, &mods, &exports);
            if target == *m || target.is_empty() && path.is_empty() {
                continue;
            }
            // A parent naming its own children (mod.rs assembling a module) is the
            // composition, not a dependency of the child on the parent.
            let child_of_here =
                !m.is_empty() && target.starts_with(&format!("{m}::")) || m.is_empty();
            if !child_of_here {
                edges.entry(m.clone()).or_default().insert(target.clone());
            }
            let (from, to) = (layer_of(m), layer_of(&target));
            if to > from && !ALLOWED.contains(&(m.as_str(), target.as_str())) {
                violations.push(format!(
                    "{m} (layer {from}) uses {} from {target} (layer {to})",
                    path.join("::")
                ));
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "upward imports (see the layer rule in src/lib.rs):\n  {}",
        violations.join("\n  ")
    );
    // No cycles between files: depth-first search with colours.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in mods.keys() {
        if let Some(cycle) = visit(n, &edges, &mut state, &mut Vec::new()) {
            panic!("import cycle between files: {}", cycle.join(" -> "));
        }
    }
    assert!(ALLOWED.is_empty(), "the allow-list must end empty");
}

#[test]
fn the_resolver_sees_groups_supers_and_re_exports() {
    let code = "use crate::{fsm::read::View, keys};\nuse super::handle::PeerMsg;\nlet x = crate::storage::Engine::open(p);";
    let paths = named_paths("raft::peer", code);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert!(
        joined.contains(&"fsm::read::View".to_string()),
        "{joined:?}"
    );
    assert!(joined.contains(&"keys".to_string()), "{joined:?}");
    assert!(
        joined.contains(&"raft::handle::PeerMsg".to_string()),
        "{joined:?}"
    );
    assert!(
        joined.contains(&"storage::Engine::open".to_string()),
        "{joined:?}"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    let exports = re_exports(&mods);
    let engine: Vec<String> = ["storage", "Engine", "open"].map(String::from).to_vec();
    assert_eq!(resolve(&engine, &mods, &exports), "storage::engine");
    assert_eq!(layer_of("server::kv"), 9);
    assert_eq!(layer_of("node::ctx"), 5);
    assert_eq!(layer_of("node"), 10);
    assert_eq!(layer_of("raft::peer"), 6);
}
