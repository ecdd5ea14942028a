//! The documentation's relative links lead somewhere: every `[text](target)`
//! of `README.md` and `docs/*.md` that is not a URL names a file or folder of
//! the repository, and its `#anchor`, if any, one of the target's headings as
//! GitHub names them. Also: every script in `scripts/` has its section in
//! `docs/protocol.md`. Plain file reading, no Redis.

use std::collections::HashMap;
use std::path::Path;

use remq_testkit::{documentation_files, repository_root};

/// The lines of `markdown` outside fenced code blocks, with their numbers
/// (1-based), inline code spans blanked out (a link in code is no link).
fn prose(markdown: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut fenced = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut text = String::with_capacity(line.len());
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                text.push(c);
            } else {
                text.push(if in_code { ' ' } else { c });
            }
        }
        lines.push((index + 1, text));
    }
    lines
}

/// The targets of the inline links `[text](target)` on `line`.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        // Up to the matching `)`: targets may hold balanced parentheses.
        let mut depth = 0;
        let end = after.char_indices().find(|&(_, c)| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' if depth == 0 => true,
            ')' => {
                depth -= 1;
                false
            }
            _ => false,
        });
        match end {
            Some((end, _)) => {
                // `[text](target "title")`: the target is the first word.
                let target = after[..end].split_whitespace().next().unwrap_or("");
                targets.push(target.to_owned());
                rest = &after[end..];
            }
            None => break,
        }
    }
    targets
}

/// The anchor GitHub gives a heading: lowercase; letters, digits, spaces, `-`
/// and `_` kept, everything else dropped; spaces become `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings (outside code blocks), a
/// repeated heading numbered `-1`, `-2` … as GitHub does.
fn anchors(markdown: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else { continue };
        if fenced {
            continue;
        }
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(heading);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.push(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
        *count += 1;
    }
    anchors
}

/// What is wrong with the link `target` in `from`, if anything.
fn check(from: &Path, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("an empty link".to_owned());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() { from.to_path_buf() } else { from.parent().unwrap().join(path) };
    if !file.exists() {
        return Some(format!("{} does not exist", file.display()));
    }
    let anchor = anchor?;
    if file.extension().is_none_or(|ext| ext != "md") {
        return Some(format!("#{anchor} points into {}, which has no headings", file.display()));
    }
    let markdown = std::fs::read_to_string(&file).unwrap();
    let known = anchors(&markdown);
    if known.iter().any(|a| a == anchor) {
        None
    } else {
        Some(format!("{} has no heading #{anchor}; it has: {}", file.display(), known.join(", ")))
    }
}

#[test]
fn every_relative_link_in_the_docs_leads_to_a_file_and_heading() {
    let mut failures = Vec::new();
    let mut links = 0;
    for path in documentation_files() {
        let markdown = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let shown = path.strip_prefix(repository_root()).unwrap().display().to_string();
        for (number, line) in prose(&markdown) {
            for target in link_targets(&line) {
                links += 1;
                if let Some(problem) = check(&path, &target) {
                    failures.push(format!("{shown}:{number}: ({target}): {problem}"));
                }
            }
        }
    }
    assert!(links > 50, "only {links} links found: is the link reader broken?");
    assert!(failures.is_empty(), "{} broken link(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_script_has_its_section_in_the_protocol_page() {
    let protocol = std::fs::read_to_string(repository_root().join("docs/protocol.md")).unwrap();
    let sections = anchors(&protocol);
    let mut scripts = Vec::new();
    for entry in std::fs::read_dir(repository_root().join("scripts")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".lua") {
            scripts.push(name);
        }
    }
    assert!(scripts.len() >= 7, "scripts/ holds {scripts:?}");
    let missing: Vec<&String> =
        scripts.iter().filter(|name| !sections.contains(&slug(&format!("`{name}`")))).collect();
    assert!(missing.is_empty(), "docs/protocol.md has no `### `<script>`` section for {missing:?}");
}

#[test]
fn anchors_follow_githubs_rules() {
    assert_eq!(
        slug("Failover: when the id counter goes backwards"),
        "failover-when-the-id-counter-goes-backwards"
    );
    assert_eq!(slug("`publish_batch.lua`"), "publish_batchlua");
    assert_eq!(
        slug("Consumer groups: one consumer's work over worker replicas"),
        "consumer-groups-one-consumers-work-over-worker-replicas"
    );
    assert_eq!(anchors("# A\n```sh\n# not a heading\n```\n## A\n#hashtag\n"), ["a", "a-1"]);
    assert_eq!(
        link_targets("see [x](a.md#b) and [y](https://e.org/(z)) and [`c`](c.md \"t\")"),
        ["a.md#b", "https://e.org/(z)", "c.md"]
    );
}
