//! The documentation files the docs tests read.

use std::path::{Path, PathBuf};

/// The repository's root (this package's directory).
pub fn repository_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md` and every `docs/*.md`, sorted: what the docs tests check
/// (links, code blocks, command lines).
pub fn documentation_files() -> Vec<PathBuf> {
    let mut files = vec![repository_root().join("README.md")];
    let docs = repository_root().join("docs");
    for entry in std::fs::read_dir(&docs).unwrap_or_else(|e| panic!("cannot list {}: {e}", docs.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}
