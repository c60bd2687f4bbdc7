//! The crate's layers, checked: every `crate::`, `super::` and child-module path in
//! `src/` is resolved to the file it names, and no file may name a file of a higher
//! layer or take part in a cycle of files.
//!
//! The layers, lowest first (a module may use its own layer's modules only where the
//! table below lets it, and every layer under it):
//!
//! | rank | modules | what they are |
//! |---|---|---|
//! | 0 | `domain`, `background` | plain types and the periodic-task helper |
//! | 1 | `store` | the profile and catalog stores |
//! | 2 | `config` | settings (they name the store's retention) |
//! | 3 | `recommend` | models and the engine |
//! | 4 | `decide` | the ruleset and the decision core, above the engine it calls |
//! | 5 | `audit` | the decision log (recording, reading, replaying) and drift |
//! | 6 | `ingest` | data entering: events, webhooks, imports, the demo |
//! | 7 | `http` | routes, extractors, the error table |
//! | 8 | `app`, `telemetry` | start-up: logging, the state, serving, training, imports |
//! | 9 | `eval`, `cli` | the offline evaluation and the command line |
//!
//! The scan reads source text, not the compiler's resolution: it knows paths, `use`
//! trees and inline modules, and skips comments, strings and test modules' `super::*`
//! (a test module naming its own file).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rank of a top-level module.
fn rank(module: &str) -> Option<u8> {
    Some(match module {
        "domain" | "background" => 0,
        "store" => 1,
        "config" => 2,
        "recommend" => 3,
        "decide" => 4,
        "audit" => 5,
        "ingest" => 6,
        "http" => 7,
        "app" | "telemetry" => 8,
        "eval" | "cli" => 9,
        _ => return None,
    })
}

/// Source text with comments, string and char literals blanked out (kept as spaces so
/// positions and braces still line up).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = 2 + hashes;
            let end = src[i + start..]
                .find(&close)
                .map_or(rest.len(), |e| start + e + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if rest.get(1) == Some(&b'\\') {
                rest[2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map_or(1, |e| e + 3)
            } else {
                let len = src[i + 1..].chars().next().map_or(0, char::len_utf8);
                if rest.get(1 + len) == Some(&b'\'') {
                    len + 2
                } else {
                    1
                }
            };
            blank(&mut out, &rest[..end]);
            i += end;
        } else {
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

/// A file's module path: `src/http/cart.rs` is `["http", "cart"]`, `src/http/mod.rs`
/// `["http"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file that holds the longest prefix of `path` that is a module.
fn file_of(src: &Path, path: &[String]) -> Option<PathBuf> {
    module_file(src, path).map(|(f, _)| f)
}

/// The file of the longest prefix of `path` that is a module, and that prefix's length.
fn module_file(src: &Path, path: &[String]) -> Option<(PathBuf, usize)> {
    (1..=path.len()).rev().find_map(|n| {
        let dir: PathBuf = path[..n].iter().collect();
        let file = src.join(&dir).with_extension("rs");
        let module = src.join(&dir).join("mod.rs");
        [file, module]
            .into_iter()
            .find(|f| f.is_file())
            .map(|f| (f, n))
    })
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A module path a file names, and whether the file re-exports it (`pub use`).
type Named = (Vec<String>, bool);

/// Every path a file names, as absolute module paths: the leaves of its `use` trees and
/// the `crate::`/`super::` paths in its code, each with the inline modules it is in, and
/// whether it is re-exported (`pub use`).
fn paths_named(src: &Path, file: &Path) -> Vec<Named> {
    let text = std::fs::read_to_string(file).expect("a readable source file");
    let code = code_only(&text);
    let base = module_of(src, file);
    let chars: Vec<char> = code.chars().collect();
    // Inline modules (`mod tests { .. }`), by the brace depth they open at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut i = 0;
    let word_at = |i: usize| -> String {
        chars[i..]
            .iter()
            .take_while(|&&c| is_ident(c))
            .collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            depth = depth.saturating_sub(1);
            while inline.last().is_some_and(|&(_, d)| d > depth) {
                inline.pop();
            }
            i += 1;
            continue;
        }
        if !is_ident(c) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let word = word_at(i);
        let here: Vec<String> = base
            .iter()
            .cloned()
            .chain(inline.iter().map(|(m, _)| m.clone()))
            .collect();
        if word == "mod" {
            let rest: String = chars[i + 3..].iter().collect();
            let name = rest.trim_start();
            let ident: String = name.chars().take_while(|&c| is_ident(c)).collect();
            if name[ident.len()..].trim_start().starts_with('{') {
                inline.push((ident, depth + 1));
            }
            i += 3;
            continue;
        }
        if word == "use" {
            let end = chars[i..]
                .iter()
                .position(|&c| c == ';')
                .map_or(chars.len(), |e| i + e);
            let tree: String = chars[i + 3..end].iter().collect();
            let before: String = chars[i.saturating_sub(12)..i].iter().collect();
            let public = before.trim_end().ends_with("pub") || before.trim_end().ends_with(')');
            for leaf in use_leaves(&tree) {
                if let Some(p) = absolute(src, &here, &leaf, inline.is_empty()) {
                    out.push((p, public));
                }
            }
            i = end;
            continue;
        }
        // `pub(super)` and `pub(crate)` name a visibility, not a module.
        let in_visibility = chars[..i].iter().rev().find(|c| !c.is_whitespace()) == Some(&'(');
        if (word == "crate" || word == "super") && !in_visibility {
            let mut j = i;
            let mut path = Vec::new();
            loop {
                let w = word_at(j);
                if w.is_empty() {
                    break;
                }
                j += w.len();
                path.push(w);
                if chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':') {
                    j += 2;
                } else {
                    break;
                }
            }
            if let Some(p) = absolute(src, &here, &path, inline.is_empty()) {
                out.push((p, false));
            }
            i = j;
            continue;
        }
        i += word.len();
    }
    out
}

/// The leaf paths of a `use` tree: `crate::a::{b, c::{d, e}}` gives `crate::a::b`,
/// `crate::a::c::d` and `crate::a::c::e`.
fn use_leaves(tree: &str) -> Vec<Vec<String>> {
    fn walk(s: &[char], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
            if *i >= s.len() {
                break;
            }
            match s[*i] {
                '{' => {
                    *i += 1;
                    loop {
                        walk(s, i, &path, out);
                        while *i < s.len() && s[*i].is_whitespace() {
                            *i += 1;
                        }
                        match s.get(*i) {
                            Some(',') => *i += 1,
                            Some('}') => {
                                *i += 1;
                                return;
                            }
                            _ => return,
                        }
                    }
                }
                ':' => *i += 1,
                c if is_ident(c) => {
                    let w: String = s[*i..].iter().take_while(|&&c| is_ident(c)).collect();
                    *i += w.len();
                    if w == "as" {
                        // `x as y`: the alias names nothing new.
                        while *i < s.len() && s[*i].is_whitespace() {
                            *i += 1;
                        }
                        *i += s[*i..].iter().take_while(|&&c| is_ident(c)).count();
                    } else {
                        path.push(w);
                    }
                }
                '*' => *i += 1,
                _ => break,
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    let chars: Vec<char> = tree.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    walk(&chars, &mut i, &[], &mut out);
    out
}

/// `path` as seen from module `here`, made absolute; `None` for paths outside the crate
/// (std, dependencies) and for a test module's `super` (its own file).
fn absolute(src: &Path, here: &[String], path: &[String], top: bool) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut abs: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => here.to_vec(),
        "super" => {
            if !top {
                // `super` inside an inline module: the file itself.
                return None;
            }
            let mut up = here.to_vec();
            up.pop()?;
            up
        }
        child => {
            // A child module of `here` (`pub use profile::Profile` in `domain/mod.rs`).
            let mut m = here.to_vec();
            m.push(child.to_string());
            file_of(src, &m).filter(|f| module_of(src, f) == m)?;
            here.to_vec()
        }
    };
    let rest = if matches!(first.as_str(), "crate" | "self" | "super") {
        &path[1..]
    } else {
        path
    };
    let mut rest = rest;
    while rest.first().is_some_and(|w| w == "super") {
        abs.pop()?;
        rest = &rest[1..];
    }
    abs.extend(rest.iter().cloned());
    Some(abs)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every file of `src/` (but `main.rs`, a crate of its own) with the files it names. A
/// name a module re-exports (`pub use profile::Profile` in `domain/mod.rs`) counts as
/// the file that defines it, so re-exports make no cycles of their own.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let name = |f: &Path| f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
    files.retain(|f| !matches!(name(f).as_str(), "main.rs" | "lib.rs" | "layering.rs"));
    let named: Vec<(PathBuf, Vec<Named>)> = files
        .iter()
        .map(|f| (f.clone(), paths_named(&src, f)))
        .collect();
    // File -> re-exported name -> the path it stands for.
    let mut reexports: BTreeMap<PathBuf, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (f, paths) in &named {
        for (p, public) in paths {
            if let (true, Some(last)) = (*public, p.last()) {
                reexports
                    .entry(f.clone())
                    .or_default()
                    .insert(last.clone(), p.clone());
            }
        }
    }
    let resolve = |path: &[String]| -> Option<PathBuf> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let (file, n) = module_file(&src, &path)?;
            match path.get(n).and_then(|item| reexports.get(&file)?.get(item)) {
                Some(target) if *target != path => path = target.clone(),
                _ => return Some(file),
            }
        }
        module_file(&src, &path).map(|(f, _)| f)
    };
    named
        .iter()
        .map(|(f, paths)| {
            let to = paths
                .iter()
                .filter(|(_, public)| !public)
                .filter_map(|(p, _)| resolve(p))
                .map(|t| name(&t))
                .filter(|t| *t != name(f) && t != "lib.rs")
                .collect();
            (name(f), to)
        })
        .collect()
}

fn top_module(file: &str) -> &str {
    file.split(['/', '.']).next().unwrap_or(file)
}

/// The files of every cycle (strongly connected component of more than one file).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative over the sorted graph so the output is stable.
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_file_names_a_file_of_a_higher_layer() {
    let graph = imports();
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        let Some(rf) = rank(top_module(from)) else {
            wrong.push(format!("{from}: a module with no layer (add it to `rank`)"));
            continue;
        };
        for to in tos {
            let rt = rank(top_module(to)).unwrap_or(u8::MAX);
            let same_module = top_module(from) == top_module(to);
            if !same_module && rt >= rf {
                wrong.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or across:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other_even_through_others() {
    let graph = imports();
    let found = cycles(&graph);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let arrows: Vec<String> = c
                .iter()
                .flat_map(|f| {
                    graph[f]
                        .iter()
                        .filter(|t| c.contains(t))
                        .map(move |t| format!("{f} -> {t}"))
                })
                .collect();
            format!("{}:\n  {}", c.join(", "), arrows.join("\n  "))
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", shown.join("\n"));
}

#[test]
fn the_scan_sees_use_trees_inline_paths_and_skips_strings_and_comments() {
    let leaves = use_leaves(" crate::a::{b, c::{d as e, f}, self}");
    let shown: Vec<String> = leaves.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        shown,
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::f",
            "crate::a::self"
        ]
    );
    let code = code_only("let s = \"crate::http\"; // crate::app\nlet c = '{'; crate::store::X");
    assert!(!code.contains("crate::http") && !code.contains("crate::app"));
    assert!(code.contains("crate::store::X") && !code.contains('{'));
    // The checks run on this crate: the graph must hold the arrows everyone knows of.
    let graph = imports();
    assert!(
        graph["http/cart.rs"]
            .iter()
            .any(|t| t.starts_with("decide/"))
    );
    assert!(
        graph["store/mod.rs"]
            .iter()
            .any(|t| t.starts_with("domain/"))
    );
    assert!(
        cycles(&BTreeMap::from([
            ("a".to_string(), BTreeSet::from(["b".to_string()])),
            ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ]))
        .len()
            == 1
    );
}
