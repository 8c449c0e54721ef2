//! The set of blobs this backup stores: every blob it saw first.
//!
//! It gains one entry per new blob and keeps it for the whole backup, so its
//! cost per entry is what a backup of a million small files pays in memory. A
//! hash set of `(type, ID)` costs ~34 bytes a bucket at 7/8 load and doubles
//! when full: heaptrack showed 107 MiB for 1M blobs at its last resize, with
//! the old and new tables alive. Here most entries live in one sorted array
//! of 33-byte keys, looked up through a [`PrefixTable`] like the index; only
//! the newest few thousand sit in a small hash set, which is merged into the
//! array when it fills. The array grows in place (the merge runs from the
//! back), so 1M blobs cost ~33 MiB.

use std::collections::HashSet;

use crate::Id;
use crate::blob::BlobType;
use crate::index::PrefixTable;

/// A blob's ID and whether it is a tree blob; sorts by ID first, which the
/// prefix table needs.
type Key = ([u8; 32], bool);

/// Entries the hash set takes before they are merged into the array.
const RECENT_MAX: usize = 1 << 16;

/// Blobs claimed by this backup (see the module docs).
#[derive(Debug)]
pub(crate) struct ClaimedBlobs {
    sorted: Vec<Key>,
    prefixes: PrefixTable,
    recent: HashSet<Key>,
    recent_max: usize,
}

impl Default for ClaimedBlobs {
    fn default() -> Self {
        ClaimedBlobs::with_recent_max(RECENT_MAX)
    }
}

impl ClaimedBlobs {
    fn with_recent_max(recent_max: usize) -> Self {
        ClaimedBlobs {
            sorted: Vec::new(),
            prefixes: PrefixTable::build(std::iter::empty()),
            recent: HashSet::new(),
            recent_max,
        }
    }

    /// Adds the blob; `true` if it was not in the set yet.
    pub(crate) fn insert(&mut self, blob_type: BlobType, id: &Id) -> bool {
        let key = (id.0, blob_type == BlobType::Tree);
        let range = self.prefixes.range(&key.0);
        if self.sorted[range].binary_search(&key).is_ok() || !self.recent.insert(key) {
            return false;
        }
        if self.recent.len() >= self.recent_max {
            self.merge_recent();
        }
        true
    }

    /// Moves the hash set's entries into the sorted array.
    fn merge_recent(&mut self) {
        let mut recent: Vec<Key> = self.recent.drain().collect();
        recent.sort_unstable();
        let old_len = self.sorted.len();
        self.sorted.reserve_exact(recent.len());
        // Placeholders for the merge below, which fills the array from the
        // back: no entry is overwritten before it has moved.
        self.sorted.extend_from_slice(&recent);
        let (mut old, mut new) = (old_len, recent.len());
        for slot in (0..self.sorted.len()).rev() {
            if new == 0 {
                break;
            }
            if old > 0 && self.sorted[old - 1] > recent[new - 1] {
                self.sorted[slot] = self.sorted[old - 1];
                old -= 1;
            } else {
                self.sorted[slot] = recent[new - 1];
                new -= 1;
            }
        }
        self.prefixes = PrefixTable::build(self.sorted.iter().map(|(id, _)| id));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(first: u8, last: u8) -> Id {
        let mut bytes = [first; 32];
        bytes[31] = last;
        Id(bytes)
    }

    #[test]
    fn each_blob_is_new_once_across_merges() {
        let mut claimed = ClaimedBlobs::with_recent_max(3);
        for n in 0..20u8 {
            assert!(claimed.insert(BlobType::Data, &id(n.wrapping_mul(37), n)));
        }
        assert!(
            claimed.sorted.len() >= 18,
            "merged: {}",
            claimed.sorted.len()
        );
        assert!(claimed.sorted.is_sorted());
        for n in 0..20u8 {
            assert!(!claimed.insert(BlobType::Data, &id(n.wrapping_mul(37), n)));
            // The same ID as a tree blob is another blob.
            assert!(claimed.insert(BlobType::Tree, &id(n.wrapping_mul(37), n)));
        }
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_set(
            inserts in proptest::collection::vec((any::<bool>(), 0u8..4, 0u8..40), 0..300),
            recent_max in 1usize..9,
        ) {
            let mut claimed = ClaimedBlobs::with_recent_max(recent_max);
            let mut model = HashSet::new();
            for (tree, first, last) in inserts {
                let blob_type = if tree { BlobType::Tree } else { BlobType::Data };
                // Few distinct first bytes: many IDs share a prefix.
                let id = id(first.wrapping_mul(85), last);
                prop_assert_eq!(claimed.insert(blob_type, &id), model.insert((blob_type, id)));
            }
            prop_assert!(claimed.sorted.is_sorted());
            prop_assert_eq!(claimed.sorted.len() + claimed.recent.len(), model.len());
        }
    }
}
