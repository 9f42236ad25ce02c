//! The page takes the crate's facts (stride, window side, the model's µm/px, the glimpse rule,
//! the decision threshold, ...) from the wasm (`page_facts`) instead of copying them: a copy
//! would drift the day the crate changes. This test reads the page's JavaScript and fails on a
//! literal copy of a fact, and on a fact the page asks for that the crate does not give.

use std::path::{Path, PathBuf};

use celnet::facts::PageFacts;
use serde_json::Value;

/// The page's JavaScript: everything under `www/` but the vendored viewer, and the service
/// worker.
fn page_scripts() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("www")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "js"))
        .collect();
    files.push(PathBuf::from("sw.js"));
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `source` without its comments (strings kept, so `'http://'` is not a comment).
fn without_comments(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match quote {
            Some(q) => {
                out.push(c);
                if c == '\\' {
                    if let Some(n) = next {
                        out.push(n);
                    }
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '/' && next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            None if c == '/' && next == Some('*') => {
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
                continue;
            }
            None => {
                if matches!(c, '\'' | '"' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

/// The numbers written in `code`, as written (`0.5`, `96`, `.5`), with their lines.
fn number_literals(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (line, text) in code.lines().enumerate() {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let starts = chars[i].is_ascii_digit()
                || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
            let after_word = i > 0
                && (chars[i - 1].is_alphanumeric() || matches!(chars[i - 1], '_' | '$' | '.'));
            if starts && !after_word {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                found.push((line + 1, chars[start..i].iter().collect()));
            } else {
                i += 1;
            }
        }
    }
    found
}

fn facts() -> Value {
    serde_json::to_value(PageFacts::get()).unwrap()
}

#[test]
fn the_pages_javascript_holds_no_copy_of_a_crate_fact() {
    let facts = facts();
    // The facts the page must take from the crate, as numbers.
    let numeric = [
        "window_side",
        "glimpse_max_side",
        "default_stride",
        "model_mpp",
        "decision_threshold",
        "page_tile",
    ];
    let mut copies = Vec::new();
    for path in page_scripts() {
        let code = without_comments(&read(&path));
        for (line, literal) in number_literals(&code) {
            let Ok(value) = literal.parse::<f64>() else {
                continue;
            };
            for name in numeric {
                if facts[name].as_f64() == Some(value) {
                    copies.push(format!(
                        "{}:{line}: {literal} is the fact {name}",
                        path.display()
                    ));
                }
            }
        }
        // Words decided by the crate, such as the magnification hint.
        let hint = facts["magnification_hint"].as_str().unwrap();
        let marker = hint.split(", ").next().unwrap();
        if code.contains(marker) {
            copies.push(format!("{}: the magnification hint", path.display()));
        }
        for (name, words) in facts["categories"].as_object().unwrap() {
            if name != "negative" && code.contains(words.as_str().unwrap()) {
                copies.push(format!("{}: the words for category {name}", path.display()));
            }
        }
    }
    assert!(
        copies.is_empty(),
        "copies of crate facts in the page's JavaScript (take them from page_facts):\n{}",
        copies.join("\n")
    );
}

#[test]
fn every_fact_the_page_asks_for_is_given() {
    let facts = facts();
    let mut asked = Vec::new();
    for path in page_scripts() {
        let code = without_comments(&read(&path));
        for (i, _) in code.match_indices("facts.") {
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = code[i + "facts.".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            asked.push((path.display().to_string(), name));
        }
    }
    let html = read(Path::new("index.html"));
    for (i, _) in html.match_indices("data-fact=\"") {
        let rest = &html[i + "data-fact=\"".len()..];
        asked.push((
            "index.html".into(),
            rest[..rest.find('"').unwrap()].to_string(),
        ));
    }
    assert!(asked.len() >= 10, "{asked:?}");
    // `legend` is added as pixels by the browser bindings.
    let missing: Vec<_> = asked
        .iter()
        .filter(|(_, name)| name != "legend" && facts.get(name).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "facts the crate does not give: {missing:?}"
    );
}

#[test]
fn the_scanner_finds_copies_and_skips_comments_and_names() {
    let code = without_comments(
        "const a = 96; // 32 in a comment\nconst b = x96 + y.96 + f(0.50); /* 128 */ s = 'http://x/0.972';",
    );
    let literals: Vec<String> = number_literals(&code).into_iter().map(|(_, l)| l).collect();
    assert_eq!(literals, ["96", "0.50", "0.972"]);
}
