//! The paths given to a backup, as a tree of absolute path components.
//!
//! Like restic, a snapshot's tree reproduces absolute paths: backing up
//! `/home/u/data` gives a root tree holding `home`, which holds `u`, which
//! holds `data`. The directories on the way (`/home`, `/home/u`) are
//! *intermediate*: they get their real metadata but only the children that
//! lead to a target. A target inside another target is covered by it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// One directory level of the target tree.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TargetNode {
    /// This path was given: back it up completely.
    pub(crate) is_target: bool,
    /// Components leading to targets below, by name bytes (the order trees use).
    pub(crate) children: BTreeMap<Vec<u8>, TargetNode>,
}

/// The normalised backup paths.
#[derive(Debug)]
pub(crate) struct Targets {
    /// The root (`/`) of the target tree.
    pub(crate) root: TargetNode,
    /// The absolute paths as recorded in the snapshot, sorted and deduplicated.
    pub(crate) paths: Vec<String>,
}

impl Targets {
    /// Makes every path absolute (relative to the current directory) and
    /// removes `.` and `..` components lexically, without following
    /// symlinks, as restic does. Fails if no path is given or one does not
    /// exist. Paths for which `is_excluded` holds are recorded but not backed up.
    pub(crate) fn new(paths: &[PathBuf], is_excluded: impl Fn(&Path) -> bool) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::InvalidOptions(
                "no paths to back up: give at least one file or directory".into(),
            ));
        }
        let mut root = TargetNode::default();
        let mut recorded = Vec::with_capacity(paths.len());
        for given in paths {
            let absolute = normalise(given)?;
            std::fs::symlink_metadata(&absolute).map_err(|source| Error::Io {
                path: absolute.clone(),
                source,
            })?;
            if !is_excluded(&absolute) {
                insert(&mut root, &absolute);
            }
            recorded.push(absolute.to_string_lossy().into_owned());
        }
        recorded.sort();
        recorded.dedup();
        Ok(Targets {
            root,
            paths: recorded,
        })
    }
}

/// The absolute, lexically normalised form of `path`.
fn normalise(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Adds the absolute path `path` to the tree under `root`.
fn insert(root: &mut TargetNode, path: &Path) {
    let mut node = root;
    for component in path.components() {
        if node.is_target {
            return;
        }
        if let Component::Normal(name) = component {
            node = node.children.entry(name.as_bytes().to_vec()).or_default();
        }
    }
    node.is_target = true;
    node.children.clear();
}

/// A child name of the target tree as an OS string.
pub(crate) fn name_os_str(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(paths: &[&str]) -> TargetNode {
        let mut root = TargetNode::default();
        for path in paths {
            insert(&mut root, Path::new(path));
        }
        root
    }

    fn child<'a>(node: &'a TargetNode, name: &str) -> &'a TargetNode {
        node.children
            .get(name.as_bytes())
            .unwrap_or_else(|| panic!("no child {name}"))
    }

    #[test]
    fn targets_share_intermediate_directories() {
        let root = tree_of(&["/home/u/data", "/home/u/docs", "/etc"]);
        assert!(!root.is_target);
        assert!(child(&root, "etc").is_target);
        let u = child(child(&root, "home"), "u");
        assert!(!u.is_target);
        assert!(child(u, "data").is_target && child(u, "docs").is_target);
        assert_eq!(u.children.len(), 2);
    }

    #[test]
    fn a_target_covers_targets_below_it_in_either_order() {
        let expected = tree_of(&["/home"]);
        assert_eq!(tree_of(&["/home/u/data", "/home"]), expected);
        assert_eq!(tree_of(&["/home", "/home/u/data"]), expected);
        assert!(child(&expected, "home").children.is_empty());
    }

    #[test]
    fn root_target_is_the_root() {
        let root = tree_of(&["/", "/etc"]);
        assert!(root.is_target);
        assert!(root.children.is_empty());
    }

    #[test]
    fn normalise_removes_dots_without_following_links() {
        assert_eq!(
            normalise(Path::new("/a/./b/../c/")).unwrap(),
            PathBuf::from("/a/c")
        );
        assert_eq!(normalise(Path::new("/..")).unwrap(), PathBuf::from("/"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(normalise(Path::new("x")).unwrap(), cwd.join("x"));
    }

    #[test]
    fn missing_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = Targets::new(std::slice::from_ref(&missing), |_| false).unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
        assert!(Targets::new(&[], |_| false).is_err());
    }

    #[test]
    fn recorded_paths_are_absolute_sorted_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir(&a).unwrap();
        let given = [a.join("."), dir.path().to_owned(), a.clone()];
        let targets = Targets::new(&given, |_| false).unwrap();
        let mut expected = vec![dir.path().display().to_string(), a.display().to_string()];
        expected.sort();
        assert_eq!(targets.paths, expected);
    }

    #[test]
    fn excluded_paths_are_recorded_but_not_targets() {
        let dir = tempfile::tempdir().unwrap();
        let targets = Targets::new(&[dir.path().to_owned()], |_| true).unwrap();
        assert_eq!(targets.paths, vec![dir.path().display().to_string()]);
        assert_eq!(targets.root, TargetNode::default());
    }
}
