//! Rewriting snapshots' metadata: `tag --add/--remove/--set`.
//!
//! A snapshot file is immutable (its name is the hash of its sealed bytes),
//! so a change writes a new snapshot and then removes the old file, in that
//! order: at every moment at least one of them exists, so a concurrent
//! prune always sees the tree as used, and a crash in between leaves both
//! (the new one recording the old one as its `original`), never neither.

use crate::forget::remove;
use crate::snapshot::Snapshot;
use crate::{Error, Id, Repository, Result};

/// A change of tags (restic's `tag` flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagChange {
    /// Replace all tags with these.
    pub set: Option<Vec<String>>,
    /// Add these (if missing).
    pub add: Vec<String>,
    /// Remove these.
    pub remove: Vec<String>,
}

impl TagChange {
    /// Refuses a change that does nothing or mixes `--set` with the others.
    pub fn validate(&self) -> Result<()> {
        if self.set.is_some() && !self.add.is_empty() {
            return Err(conflict("--add"));
        }
        if self.set.is_some() && !self.remove.is_empty() {
            return Err(conflict("--remove"));
        }
        if self.set.is_none() && self.add.is_empty() && self.remove.is_empty() {
            return Err(Error::InvalidOptions(
                "nothing to do: give --add, --remove or --set".into(),
            ));
        }
        Ok(())
    }

    /// The tags after the change (order kept, new ones appended, no
    /// duplicates).
    pub fn apply(&self, tags: &[String]) -> Vec<String> {
        let mut result: Vec<String> = Vec::new();
        let start = self.set.as_deref().unwrap_or(tags);
        for tag in start.iter().chain(&self.add) {
            if !tag.is_empty() && !result.contains(tag) {
                result.push(tag.clone());
            }
        }
        result.retain(|tag| !self.remove.contains(tag));
        result
    }
}

fn conflict(other: &str) -> Error {
    Error::ConflictingOptions {
        first: "--set".into(),
        second: other.into(),
    }
}

/// One rewritten snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rewritten {
    /// The snapshot's ID before.
    pub old: Id,
    /// The new snapshot's ID.
    pub new: Id,
}

/// Applies `change` to each of `snapshots`, rewriting those whose tags
/// change; returns them. Refuses with an append-only key, and (rewriting
/// nothing) if any snapshot to rewrite is under a legal hold at `now`: its
/// ID would disappear from under the hold.
pub async fn change_tags(
    repo: &Repository,
    snapshots: &[(Id, Snapshot)],
    change: &TagChange,
    now: jiff::Timestamp,
) -> Result<Vec<Rewritten>> {
    change.validate()?;
    let changed: Vec<(Id, Snapshot)> = snapshots
        .iter()
        .filter_map(|(id, snapshot)| {
            let tags = change.apply(&snapshot.tags);
            (tags != snapshot.tags).then(|| {
                let mut new = snapshot.clone();
                new.tags = tags;
                new.original = Some(snapshot.original.unwrap_or(*id));
                (*id, new)
            })
        })
        .collect();
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    repo.require_full_access("tag")?;
    let held = crate::hold::active_holds(repo, now).await?;
    let blocked: Vec<Id> = changed
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| held.contains_key(id))
        .collect();
    if !blocked.is_empty() {
        return Err(Error::SnapshotsHeld { snapshots: blocked });
    }
    let mut rewritten = Vec::with_capacity(changed.len());
    for (old, snapshot) in changed {
        let new = repo.save_snapshot(&snapshot).await?;
        remove(repo, &[old], now).await?;
        rewritten.push(Rewritten { old, new });
    }
    Ok(rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn changes_apply_like_restic() {
        let add_remove = TagChange {
            add: tags(&["c", "a"]),
            remove: tags(&["b"]),
            ..Default::default()
        };
        assert_eq!(add_remove.apply(&tags(&["a", "b"])), tags(&["a", "c"]));
        let set = TagChange {
            set: Some(tags(&["x", "x", "y"])),
            ..Default::default()
        };
        assert_eq!(set.apply(&tags(&["a"])), tags(&["x", "y"]));
        let clear = TagChange {
            set: Some(Vec::new()),
            ..Default::default()
        };
        assert!(clear.apply(&tags(&["a"])).is_empty());
        assert!(clear.validate().is_ok());
    }

    #[test]
    fn bad_changes_are_refused() {
        assert!(matches!(
            TagChange::default().validate(),
            Err(Error::InvalidOptions(m)) if m.contains("nothing to do")
        ));
        let mixed = TagChange {
            set: Some(tags(&["a"])),
            remove: tags(&["b"]),
            ..Default::default()
        };
        assert!(matches!(
            mixed.validate(),
            Err(Error::ConflictingOptions { second, .. }) if second == "--remove"
        ));
    }
}
