//! `--include` / `--exclude` for restore: glob patterns matched against the
//! absolute path of an item inside the snapshot (`/home/u/data/file`).
//!
//! Semantics follow restic: a pattern starting with `/` is anchored at the
//! snapshot root, any other pattern may match at any depth (`*.log` matches
//! `/var/x.log`, `cache/*` matches `/a/cache/b`); `*` does not cross `/`, `**`
//! does. A pattern that matches a directory also matches everything below it.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// Compiled include and exclude patterns.
#[derive(Debug)]
pub struct PathFilter {
    includes: Option<GlobSet>,
    excludes: GlobSet,
}

/// What the filter decided for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Excluded: skip the item and, for a directory, everything below it.
    Excluded,
    /// Restore the item (and, for a directory, everything below it that is not excluded).
    Included,
    /// Not matched by any include: skip the item itself, but a directory is
    /// still descended into because something below it may be included.
    Undecided,
}

impl PathFilter {
    /// Compiles the patterns; an empty include list means "include everything".
    pub fn new(includes: &[String], excludes: &[String]) -> Result<Self> {
        let includes = if includes.is_empty() {
            None
        } else {
            Some(compile(includes, "include")?)
        };
        Ok(PathFilter {
            includes,
            excludes: compile(excludes, "exclude")?,
        })
    }

    /// Decides for `path` (absolute, inside the snapshot) given the decision
    /// for its parent directory (`Included` at the root when there are no
    /// includes).
    pub fn decide(&self, path: &Path, parent: Decision) -> Decision {
        if parent == Decision::Excluded || self.excludes.is_match(path) {
            return Decision::Excluded;
        }
        if parent == Decision::Included {
            return Decision::Included;
        }
        match &self.includes {
            None => Decision::Included,
            Some(set) if set.is_match(path) => Decision::Included,
            Some(_) => Decision::Undecided,
        }
    }

    /// The decision for the snapshot root itself.
    pub fn root_decision(&self) -> Decision {
        if self.includes.is_some() {
            Decision::Undecided
        } else {
            Decision::Included
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
            // `/` alone: the whole snapshot.
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

    fn decide_path(filter: &PathFilter, path: &str) -> Decision {
        // Walk from the root like the planner does.
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
    fn no_patterns_include_everything() {
        let f = filter(&[], &[]);
        assert_eq!(decide_path(&f, "/a/b/c"), Decision::Included);
    }

    #[test]
    fn unanchored_pattern_matches_at_any_depth() {
        let f = filter(&[], &["*.log"]);
        assert_eq!(decide_path(&f, "/var/x.log"), Decision::Excluded);
        assert_eq!(decide_path(&f, "/x.log"), Decision::Excluded);
        assert_eq!(decide_path(&f, "/var/x.txt"), Decision::Included);
    }

    #[test]
    fn anchored_pattern_matches_only_from_root() {
        let f = filter(&[], &["/var/*"]);
        assert_eq!(decide_path(&f, "/var/x"), Decision::Excluded);
        assert_eq!(decide_path(&f, "/var/x/deep/file"), Decision::Excluded);
        assert_eq!(decide_path(&f, "/srv/var/x"), Decision::Included);
    }

    #[test]
    fn star_does_not_cross_directories_but_double_star_does() {
        let f = filter(&[], &["/a/*.txt"]);
        assert_eq!(decide_path(&f, "/a/b/c.txt"), Decision::Included);
        let f = filter(&[], &["/a/**/c.txt"]);
        assert_eq!(decide_path(&f, "/a/b/c.txt"), Decision::Excluded);
    }

    #[test]
    fn include_covers_descendants_and_leaves_others_undecided() {
        let f = filter(&["/home/u/data"], &[]);
        assert_eq!(decide_path(&f, "/home"), Decision::Undecided);
        assert_eq!(decide_path(&f, "/home/u/data"), Decision::Included);
        assert_eq!(decide_path(&f, "/home/u/data/x/y"), Decision::Included);
        assert_eq!(decide_path(&f, "/home/u/other"), Decision::Undecided);
    }

    #[test]
    fn exclude_wins_over_include() {
        let f = filter(&["/data"], &["secret"]);
        assert_eq!(decide_path(&f, "/data/secret/key"), Decision::Excluded);
        assert_eq!(decide_path(&f, "/data/public"), Decision::Included);
    }

    #[test]
    fn trailing_slash_is_ignored() {
        let f = filter(&[], &["cache/"]);
        assert_eq!(decide_path(&f, "/x/cache/y"), Decision::Excluded);
    }

    #[test]
    fn bad_patterns_are_rejected_with_the_pattern_named() {
        let err = PathFilter::new(&[], &["a[".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("a["), "{err}");
        let err = PathFilter::new(&[String::new()], &[]).unwrap_err();
        assert!(err.to_string().contains("empty include pattern"), "{err}");
    }

    proptest::proptest! {
        /// Matching a directory (anchored or by name) covers everything below
        /// it, for includes and excludes alike, and nothing beside it.
        #[test]
        fn a_directory_pattern_covers_exactly_its_subtree(
            components in proptest::collection::vec("[a-z0-9_-]{1,6}", 1..6),
            depth in 0usize..5,
            sibling in "[A-Z]{1,4}",
        ) {
            let depth = depth.min(components.len() - 1);
            let dir = format!("/{}", components[..=depth].join("/"));
            let path = format!("/{}", components.join("/"));
            let beside = format!("{dir}{sibling}");
            let mut patterns = vec![dir.clone()];
            // By name only if no ancestor has the same name (it would match there).
            if !components[..depth].contains(&components[depth]) {
                patterns.push(components[depth].clone());
            }
            for pattern in patterns {
                let included = filter(&[pattern.as_str()], &[]);
                proptest::prop_assert_eq!(decide_path(&included, &path), Decision::Included);
                proptest::prop_assert_ne!(decide_path(&included, &beside), Decision::Included);
                let excluded = filter(&[], &[pattern.as_str()]);
                proptest::prop_assert_eq!(decide_path(&excluded, &path), Decision::Excluded);
                proptest::prop_assert_ne!(decide_path(&excluded, &beside), Decision::Excluded);
            }
        }
    }

    #[test]
    fn root_pattern_includes_everything() {
        let f = filter(&["/"], &[]);
        assert_eq!(decide_path(&f, "/a/b"), Decision::Included);
    }
}
