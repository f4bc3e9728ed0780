//! Safe local file names for received media: a sender chooses the file name, so it
//! must never become a path as it is. No separators or control characters, no hidden
//! or special names, and never an existing file.

use std::path::{Path, PathBuf};

/// The longest name kept, in characters.
const MAX_NAME: usize = 200;

/// `name` made safe to create inside a folder: separators and control characters
/// become `_`, leading dots are dropped, and an empty result becomes `fallback`.
pub fn safe_file_name(name: &str, fallback: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() || c == ':' {
                '_'
            } else {
                c
            }
        })
        .take(MAX_NAME)
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').to_owned();
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '_' || c == '.') {
        fallback.to_owned()
    } else {
        trimmed
    }
}

/// A path in `dir` for a received file called `name` (made safe with
/// [`safe_file_name`]) that does not exist yet: `name`, then `stem (1).ext`,
/// `stem (2).ext`, ...
pub fn unique_path(dir: &Path, name: &str, fallback: &str) -> std::io::Result<PathBuf> {
    let name = safe_file_name(name, fallback);
    let candidate = dir.join(&name);
    if !candidate.exists() {
        return Ok(candidate);
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (name.clone(), String::new()),
    };
    for n in 1..10_000 {
        let candidate = dir.join(format!("{stem} ({n}){ext}"));
        if !candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(std::io::Error::other(format!(
        "too many files named like {name} in {}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_danger() {
        assert_eq!(safe_file_name("cat.png", "x"), "cat.png");
        assert_eq!(safe_file_name("../../etc/passwd", "x"), "_.._etc_passwd");
        assert_eq!(safe_file_name("a\\b\nc", "x"), "a_b_c");
        assert_eq!(safe_file_name("..", "id"), "id");
        assert_eq!(safe_file_name("", "id"), "id");
        assert_eq!(safe_file_name(".bashrc", "id"), "bashrc");
        assert_eq!(safe_file_name("/", "id"), "id");
    }

    #[test]
    fn existing_files_get_a_suffix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = unique_path(dir.path(), "cat.png", "x").expect("path");
        assert_eq!(first, dir.path().join("cat.png"));
        std::fs::write(&first, b"1").expect("write");
        assert_eq!(
            unique_path(dir.path(), "cat.png", "x").expect("path"),
            dir.path().join("cat (1).png")
        );
        std::fs::write(dir.path().join("cat (1).png"), b"2").expect("write");
        assert_eq!(
            unique_path(dir.path(), "cat.png", "x").expect("path"),
            dir.path().join("cat (2).png")
        );
    }
}
