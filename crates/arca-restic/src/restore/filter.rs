//! `--include` / `--exclude` with restic's semantics, as Arca's restore has
//! them: a pattern starting with `/` is anchored at the snapshot root, others
//! match at any depth; `*` stays within one path component, `**` crosses
//! them; what matches a directory applies to everything below it.
//!
//! This mirrors `arca_repo::restore::filter`, which is private to arca-repo;
//! once that is public, this module goes and its callers use it.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// Compiled include and exclude patterns.
#[derive(Debug)]
pub(crate) struct PathFilter {
    includes: Option<GlobSet>,
    excludes: GlobSet,
}

/// What the filter decided for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Skip the item and everything below it.
    Excluded,
    /// Restore the item and everything below it that is not excluded.
    Included,
    /// Not restored itself unless something below it is.
    Undecided,
}

impl PathFilter {
    /// Compiles the patterns; no includes means everything is included.
    pub(crate) fn new(includes: &[String], excludes: &[String]) -> Result<Self> {
        Ok(PathFilter {
            includes: if includes.is_empty() {
                None
            } else {
                Some(compile(includes, "include")?)
            },
            excludes: compile(excludes, "exclude")?,
        })
    }

    /// The decision for the snapshot root.
    pub(crate) fn root_decision(&self) -> Decision {
        if self.includes.is_some() {
            Decision::Undecided
        } else {
            Decision::Included
        }
    }

    /// Decides for `path` (absolute inside the snapshot) given its parent's decision.
    pub(crate) fn decide(&self, path: &Path, parent: Decision) -> Decision {
        if parent == Decision::Excluded || self.excludes.is_match(path) {
            Decision::Excluded
        } else if parent == Decision::Included {
            Decision::Included
        } else {
            match &self.includes {
                Some(set) if !set.is_match(path) => Decision::Undecided,
                _ => Decision::Included,
            }
        }
    }
}

fn compile(patterns: &[String], what: &str) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        if pattern.is_empty() {
            return Err(Error::InvalidOptions(format!("empty {what} pattern")));
        }
        let trimmed = pattern.trim_end_matches('/');
        let anchored = if trimmed.is_empty() {
            "/**".to_owned()
        } else if trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("**/{trimmed}")
        };
        let glob = GlobBuilder::new(&anchored)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::InvalidOptions(format!("bad {what} pattern {pattern:?}: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| Error::InvalidOptions(format!("bad {what} patterns: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(filter: &PathFilter, path: &str) -> Decision {
        let mut decision = filter.root_decision();
        let mut current = String::new();
        for component in path.trim_start_matches('/').split('/') {
            current.push('/');
            current.push_str(component);
            decision = filter.decide(Path::new(&current), decision);
        }
        decision
    }

    fn filter(includes: &[&str], excludes: &[&str]) -> PathFilter {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        PathFilter::new(&owned(includes), &owned(excludes)).unwrap()
    }

    #[test]
    fn restic_semantics() {
        assert_eq!(decide(&filter(&[], &[]), "/a/b"), Decision::Included);
        assert_eq!(
            decide(&filter(&[], &["*.log"]), "/var/x.log"),
            Decision::Excluded
        );
        assert_eq!(
            decide(&filter(&[], &["/x.log"]), "/var/x.log"),
            Decision::Included
        );
        assert_eq!(
            decide(&filter(&["/a/b"], &[]), "/a/b/c/d"),
            Decision::Included
        );
        assert_eq!(decide(&filter(&["/a/b"], &[]), "/a/c"), Decision::Undecided);
        assert_eq!(
            decide(&filter(&["/a"], &["/a/b"]), "/a/b/c"),
            Decision::Excluded
        );
        assert!(PathFilter::new(&[String::new()], &[]).is_err());
    }
}
