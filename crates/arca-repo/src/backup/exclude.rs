//! Exclude rules with restic's semantics: `--exclude`, `--exclude-file` and
//! `--exclude-caches`.
//!
//! A pattern is a glob (`*` and `?` stay within one path component, `**`
//! spans any number of them, `[...]` classes, `\` escapes). A pattern that
//! starts with `/` is matched against the whole absolute path; any other
//! pattern may match at any depth, so `*.tmp` excludes every `.tmp` file and
//! `cache/blobs` excludes `/x/cache/blobs`. An excluded directory is not
//! descended into. Negated patterns (`!pattern`) are not supported and are
//! rejected rather than silently ignored.

use std::io::Read;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// The file name that marks a cache directory (<https://bford.info/cachedir/>).
pub(crate) const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
/// The bytes a valid `CACHEDIR.TAG` starts with.
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Compiled exclude patterns.
#[derive(Debug, Clone)]
pub(crate) struct Excludes {
    set: GlobSet,
    /// Whether directories tagged with a valid `CACHEDIR.TAG` lose their contents.
    pub(crate) exclude_caches: bool,
}

impl Excludes {
    /// Compiles `patterns` plus the patterns in each of `files` (one per line,
    /// blank lines and lines starting with `#` ignored, surrounding
    /// whitespace trimmed).
    pub(crate) fn new(
        patterns: &[String],
        files: &[PathBuf],
        exclude_caches: bool,
    ) -> Result<Self> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(compile(pattern, "--exclude")?);
        }
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?;
            for (line_no, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let origin = format!("{}:{}", file.display(), line_no + 1);
                builder.add(compile(line, &origin)?);
            }
        }
        let set = builder
            .build()
            .map_err(|e| Error::InvalidOptions(format!("exclude patterns: {e}")))?;
        Ok(Excludes {
            set,
            exclude_caches,
        })
    }

    /// Whether the absolute `path` matches an exclude pattern.
    pub(crate) fn is_excluded(&self, path: &Path) -> bool {
        self.set.is_match(path)
    }

    /// Whether `path` or one of its ancestors matches (used for the paths
    /// given on the command line: excluding `/home/u` also excludes a backup
    /// target `/home/u/data`, as in restic).
    pub(crate) fn is_excluded_with_ancestors(&self, path: &Path) -> bool {
        !self.set.is_empty() && path.ancestors().any(|p| self.set.is_match(p))
    }
}

/// Compiles one pattern; `origin` names where it came from for error messages.
fn compile(pattern: &str, origin: &str) -> Result<globset::Glob> {
    if pattern.starts_with('!') {
        return Err(Error::InvalidOptions(format!(
            "{origin}: negated exclude pattern {pattern:?} is not supported; list only what to exclude"
        )));
    }
    let trimmed = if pattern.len() > 1 {
        pattern.trim_end_matches('/')
    } else {
        pattern
    };
    let anchored = if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("**/{trimmed}")
    };
    GlobBuilder::new(&anchored)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| {
            Error::InvalidOptions(format!(
                "{origin}: invalid exclude pattern {pattern:?}: {e}"
            ))
        })
}

/// Whether `dir` holds a `CACHEDIR.TAG` with the standard signature. Errors
/// reading the tag count as "not a cache": the directory is then backed up,
/// which is the safe direction.
pub(crate) fn is_cache_dir(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(CACHEDIR_TAG)) else {
        return false;
    };
    let mut head = Vec::with_capacity(CACHEDIR_SIGNATURE.len());
    match file
        .take(CACHEDIR_SIGNATURE.len() as u64)
        .read_to_end(&mut head)
    {
        Ok(_) => head == CACHEDIR_SIGNATURE,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excludes(patterns: &[&str]) -> Excludes {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        Excludes::new(&patterns, &[], false).unwrap()
    }

    #[test]
    fn unanchored_pattern_matches_any_component() {
        let ex = excludes(&["*.tmp", "node_modules"]);
        assert!(ex.is_excluded(Path::new("/a.tmp")));
        assert!(ex.is_excluded(Path::new("/home/u/b.tmp")));
        assert!(ex.is_excluded(Path::new("/src/node_modules")));
        assert!(!ex.is_excluded(Path::new("/src/node_modules_x")));
        assert!(!ex.is_excluded(Path::new("/home/u/b.tmp.keep")));
    }

    #[test]
    fn star_does_not_cross_separators() {
        let ex = excludes(&["/home/*/cache"]);
        assert!(ex.is_excluded(Path::new("/home/u/cache")));
        assert!(!ex.is_excluded(Path::new("/home/u/v/cache")));
    }

    #[test]
    fn double_star_spans_directories() {
        let ex = excludes(&["/srv/**/*.log"]);
        assert!(ex.is_excluded(Path::new("/srv/a/b/c.log")));
        assert!(ex.is_excluded(Path::new("/srv/c.log")));
        assert!(!ex.is_excluded(Path::new("/var/c.log")));
    }

    #[test]
    fn relative_pattern_with_slash_matches_at_any_depth() {
        let ex = excludes(&["cache/blobs"]);
        assert!(ex.is_excluded(Path::new("/x/y/cache/blobs")));
        assert!(!ex.is_excluded(Path::new("/x/cache/blobs2")));
    }

    #[test]
    fn anchored_pattern_only_matches_from_root() {
        let ex = excludes(&["/data"]);
        assert!(ex.is_excluded(Path::new("/data")));
        assert!(!ex.is_excluded(Path::new("/x/data")));
        assert!(ex.is_excluded_with_ancestors(Path::new("/data/sub/file")));
        assert!(!ex.is_excluded_with_ancestors(Path::new("/x/data/file")));
    }

    #[test]
    fn trailing_slash_is_ignored() {
        let ex = excludes(&["build/"]);
        assert!(ex.is_excluded(Path::new("/p/build")));
    }

    #[test]
    fn negation_is_rejected_with_a_clear_error() {
        let err = Excludes::new(&["!keep".to_owned()], &[], false).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn exclude_file_skips_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("excludes");
        std::fs::write(&file, "# comment\n\n  *.bak  \n/abs/path\n").unwrap();
        let ex = Excludes::new(&[], &[file], false).unwrap();
        assert!(ex.is_excluded(Path::new("/a/b.bak")));
        assert!(ex.is_excluded(Path::new("/abs/path")));
        assert!(!ex.is_excluded(Path::new("/# comment")));
    }

    #[test]
    fn invalid_pattern_names_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("excludes");
        std::fs::write(&file, "ok\n[unclosed\n").unwrap();
        let err = Excludes::new(&[], std::slice::from_ref(&file), false).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{}:2", file.display())),
            "{err}"
        );
    }

    #[test]
    fn cache_dir_needs_the_signature() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_cache_dir(dir.path()));
        std::fs::write(dir.path().join(CACHEDIR_TAG), "not a signature").unwrap();
        assert!(!is_cache_dir(dir.path()));
        let mut tag = CACHEDIR_SIGNATURE.to_vec();
        tag.extend_from_slice(b"\n# This file is a cache directory tag.\n");
        std::fs::write(dir.path().join(CACHEDIR_TAG), tag).unwrap();
        assert!(is_cache_dir(dir.path()));
    }
}
