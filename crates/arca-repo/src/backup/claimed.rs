//! The set of blobs this backup stores: every blob it saw first.
//!
//! It gains one entry per new blob and keeps it for the whole backup, so its
//! cost per entry is what a backup of millions of small files pays in memory.
//! A hash set of `(type, ID)` costs ~34 bytes a bucket at 7/8 load and doubles
//! when full (heaptrack: 107 MiB for 1M blobs at its last resize). Here the
//! newest few thousand entries sit in a small hash set, which is merged into
//! one sorted array of 33-byte keys when it fills, looked up through a
//! [`PrefixTable`] like the index. The array is bounded too: when it holds
//! [`Limits::memory_entries`] it is written out as a sorted *run* to an
//! unnamed temporary file (gone when the process ends, however it ends), and
//! only a Bloom filter and the first key of every block of the run stay in
//! memory, ~1.5 bytes per entry instead of 33. Runs of equal size are merged
//! (a binary counter), so there are at most log₂ of them and a lookup
//! reads at most one 4 KiB block per run, from the page cache, only when
//! that run's filter matches.
//!
//! Spilling is a memory optimisation, never a reason to fail a backup: if the
//! temporary file cannot be created or written (no writable `TMPDIR`, a full
//! disk), the entries stay in memory as before. Reading a run back can fail
//! too, and then the backup does: whether a blob is stored must not be guessed.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;

use crate::Id;
use crate::blob::BlobType;
use crate::index::PrefixTable;

/// A blob's ID and whether it is a tree blob; sorts by ID first, which the
/// prefix table needs.
type Key = ([u8; 32], bool);

/// Bytes of a key in a run file: the ID, then 0 (data) or 1 (tree), so the
/// files sort like [`Key`]s.
const RECORD: usize = 33;
/// Records per block of a run: the unit a lookup reads (4 KiB and a bit).
const BLOCK_RECORDS: usize = 128;
/// Bloom filter bits per entry and probes per lookup: ~1 % false positives.
const FILTER_BITS_PER_ENTRY: usize = 10;
const FILTER_PROBES: u64 = 7;

/// How much of the set is kept in memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Entries the hash set takes before they are merged into the array.
    recent_entries: usize,
    /// Entries the array holds before it is spilled into a run (8.7 MB of keys).
    memory_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            recent_entries: 1 << 16,
            memory_entries: 1 << 18,
        }
    }
}

/// Blobs claimed by this backup (see the module docs).
#[derive(Debug)]
pub(crate) struct ClaimedBlobs {
    sorted: Vec<Key>,
    prefixes: PrefixTable,
    recent: HashSet<Key>,
    limits: Limits,
    /// Sorted runs on disk, largest (oldest) first.
    runs: Vec<Run>,
    /// Creates a run's file; `None` once it failed, so the set stays in memory.
    spill: Option<fn() -> io::Result<File>>,
}

impl Default for ClaimedBlobs {
    fn default() -> Self {
        ClaimedBlobs::new(Limits::default(), tempfile::tempfile)
    }
}

impl ClaimedBlobs {
    fn new(limits: Limits, spill: fn() -> io::Result<File>) -> Self {
        ClaimedBlobs {
            sorted: Vec::new(),
            prefixes: PrefixTable::build(std::iter::empty()),
            recent: HashSet::new(),
            limits,
            runs: Vec::new(),
            spill: Some(spill),
        }
    }

    /// Adds the blob; `true` if it was not in the set yet. Fails only if a
    /// run cannot be read back.
    pub(crate) fn insert(&mut self, blob_type: BlobType, id: &Id) -> io::Result<bool> {
        let key = (id.0, blob_type == BlobType::Tree);
        if self.recent.contains(&key)
            || self.sorted[self.prefixes.range(&key.0)]
                .binary_search(&key)
                .is_ok()
        {
            return Ok(false);
        }
        for run in &self.runs {
            if run.contains(&key)? {
                return Ok(false);
            }
        }
        self.recent.insert(key);
        if self.recent.len() >= self.limits.recent_entries {
            self.merge_recent()?;
        }
        Ok(true)
    }

    /// Moves the hash set's entries into the sorted array, and the array
    /// into a run when it is full.
    fn merge_recent(&mut self) -> io::Result<()> {
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
        let spilled = if self.sorted.len() >= self.limits.memory_entries {
            self.spill_sorted()
        } else {
            Ok(())
        };
        // Rebuilt even after a failed merge: the array may have been spilled.
        self.prefixes = PrefixTable::build(self.sorted.iter().map(|(id, _)| id));
        spilled
    }

    /// Writes the array out as a run and empties it (keeping its capacity
    /// for the next entries), then merges runs of equal size.
    fn spill_sorted(&mut self) -> io::Result<()> {
        let Some(create) = self.spill else {
            return Ok(());
        };
        let keys = self.sorted.iter().copied().map(Ok);
        match Run::create(create, self.sorted.len(), keys) {
            Ok(run) => {
                self.runs.push(run);
                self.sorted.clear();
            }
            Err(error) => return self.stop_spilling(error),
        }
        while let [.., older, newer] = self.runs.as_slice()
            && newer.len >= older.len
        {
            match Run::create(create, older.len + newer.len, MergedKeys::new(older, newer)) {
                Ok(merged) => {
                    self.runs.truncate(self.runs.len() - 2);
                    self.runs.push(merged);
                }
                Err(error) => return self.stop_spilling(error),
            }
        }
        Ok(())
    }

    /// After a failed spill or merge: a run that cannot be read is the
    /// backup's failure; one that cannot be written only means the rest of
    /// the set stays in memory.
    fn stop_spilling(&mut self, error: SpillError) -> io::Result<()> {
        match error {
            SpillError::Read(error) => Err(error),
            SpillError::Write(error) => {
                tracing::warn!(%error, "cannot spill the set of new blobs to a temporary file; keeping it in memory");
                self.spill = None;
                Ok(())
            }
        }
    }
}

/// Why a run could not be made.
#[derive(Debug)]
enum SpillError {
    /// Reading the runs being merged failed.
    Read(io::Error),
    /// Creating or writing the new run's file failed.
    Write(io::Error),
}

/// A sorted run of keys in a temporary file, with what finds a key in it.
#[derive(Debug)]
struct Run {
    file: File,
    /// Keys in the file.
    len: usize,
    /// The first key of every block of [`BLOCK_RECORDS`] records.
    fences: Vec<Key>,
    /// Bloom filter over the keys.
    filter: Vec<u64>,
}

impl Run {
    /// Writes `len` keys, in order, to a new file from `create`.
    fn create(
        create: fn() -> io::Result<File>,
        len: usize,
        keys: impl Iterator<Item = io::Result<Key>>,
    ) -> Result<Run, SpillError> {
        let file = create().map_err(SpillError::Write)?;
        let words = (len * FILTER_BITS_PER_ENTRY).div_ceil(64).max(1);
        let mut filter = vec![0u64; words];
        let mut fences = Vec::with_capacity(len.div_ceil(BLOCK_RECORDS));
        let mut out = BufWriter::with_capacity(1 << 16, &file);
        let mut written = 0;
        for key in keys {
            let key = key.map_err(SpillError::Read)?;
            if written % BLOCK_RECORDS == 0 {
                fences.push(key);
            }
            for bit in filter_bits(&key, words) {
                filter[bit / 64] |= 1 << (bit % 64);
            }
            out.write_all(&encode(&key)).map_err(SpillError::Write)?;
            written += 1;
        }
        out.flush().map_err(SpillError::Write)?;
        drop(out);
        debug_assert_eq!(written, len, "a run's length is known before it is written");
        Ok(Run {
            file,
            len: written,
            fences,
            filter,
        })
    }

    /// Whether `key` is in the run: the filter, then one block read.
    fn contains(&self, key: &Key) -> io::Result<bool> {
        if !filter_bits(key, self.filter.len())
            .all(|bit| self.filter[bit / 64] & (1 << (bit % 64)) != 0)
        {
            return Ok(false);
        }
        let block = match self.fences.partition_point(|fence| fence <= key) {
            0 => return Ok(false),
            after => after - 1,
        };
        let first = block * BLOCK_RECORDS;
        let count = BLOCK_RECORDS.min(self.len - first);
        let mut buf = [0u8; RECORD * BLOCK_RECORDS];
        let records = &mut buf[..count * RECORD];
        self.file.read_exact_at(records, (first * RECORD) as u64)?;
        let (records, _) = records.as_chunks::<RECORD>();
        Ok(records.binary_search(&encode(key)).is_ok())
    }
}

fn encode(key: &Key) -> [u8; RECORD] {
    let mut record = [0; RECORD];
    record[..32].copy_from_slice(&key.0);
    record[32] = u8::from(key.1);
    record
}

fn decode(record: &[u8]) -> Key {
    let mut id = [0; 32];
    id.copy_from_slice(&record[..32]);
    (id, record[32] != 0)
}

/// The filter bits of `key` in a filter of `words` words (double hashing;
/// IDs are keyed hashes, so any of their bytes are uniform).
fn filter_bits(key: &Key, words: usize) -> impl Iterator<Item = usize> {
    let bits = words as u64 * 64;
    let word = |at: usize| u64::from_le_bytes(key.0[at..at + 8].try_into().expect("8 bytes"));
    let first = word(8) ^ u64::from(key.1);
    let step = word(16) | 1;
    (0..FILTER_PROBES)
        .map(move |probe| (first.wrapping_add(probe.wrapping_mul(step)) % bits) as usize)
}

/// The keys of a run in order, read a few hundred at a time.
struct RunKeys<'a> {
    run: &'a Run,
    next: usize,
    buf: Vec<u8>,
    /// Index of the first record in `buf`.
    buf_first: usize,
}

/// Records a [`RunKeys`] reads at a time.
const READ_RECORDS: usize = 1024;

impl<'a> RunKeys<'a> {
    fn new(run: &'a Run) -> Self {
        RunKeys {
            run,
            next: 0,
            buf: Vec::new(),
            buf_first: 0,
        }
    }
}

impl Iterator for RunKeys<'_> {
    type Item = io::Result<Key>;

    fn next(&mut self) -> Option<io::Result<Key>> {
        if self.next >= self.run.len {
            return None;
        }
        if self.next >= self.buf_first + self.buf.len() / RECORD {
            let count = READ_RECORDS.min(self.run.len - self.next);
            self.buf.resize(count * RECORD, 0);
            self.buf_first = self.next;
            if let Err(error) = self
                .run
                .file
                .read_exact_at(&mut self.buf, (self.next * RECORD) as u64)
            {
                self.next = self.run.len;
                return Some(Err(error));
            }
        }
        let at = (self.next - self.buf_first) * RECORD;
        self.next += 1;
        Some(Ok(decode(&self.buf[at..at + RECORD])))
    }
}

/// The keys of two runs, merged in order.
struct MergedKeys<'a> {
    older: std::iter::Peekable<RunKeys<'a>>,
    newer: std::iter::Peekable<RunKeys<'a>>,
}

impl<'a> MergedKeys<'a> {
    fn new(older: &'a Run, newer: &'a Run) -> Self {
        MergedKeys {
            older: RunKeys::new(older).peekable(),
            newer: RunKeys::new(newer).peekable(),
        }
    }
}

impl Iterator for MergedKeys<'_> {
    type Item = io::Result<Key>;

    fn next(&mut self) -> Option<io::Result<Key>> {
        // The runs are disjoint: a key is only added when no run has it.
        let older_first = match (self.older.peek(), self.newer.peek()) {
            (Some(Ok(older)), Some(Ok(newer))) => older < newer,
            (Some(Err(_)), _) | (_, None) => true,
            (None, _) | (_, Some(Err(_))) => false,
        };
        if older_first {
            self.older.next()
        } else {
            self.newer.next()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;

    use super::*;

    fn id(first: u8, last: u8) -> Id {
        let mut bytes = [first; 32];
        bytes[31] = last;
        Id(bytes)
    }

    fn limits(recent_entries: usize, memory_entries: usize) -> Limits {
        Limits {
            recent_entries,
            memory_entries,
        }
    }

    fn cannot_create() -> io::Result<File> {
        Err(io::Error::other("no temporary directory"))
    }

    /// A file that takes writes but fails every read.
    fn write_only() -> io::Result<File> {
        // Tests run in parallel: every file gets a name of its own.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "arca-claimed-write-only-{}-{n}",
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(file)
    }

    #[test]
    fn each_blob_is_new_once_across_merges_and_spills() {
        let mut claimed = ClaimedBlobs::new(limits(3, 8), tempfile::tempfile);
        for n in 0..200u8 {
            assert!(
                claimed
                    .insert(BlobType::Data, &id(n.wrapping_mul(37), n))
                    .unwrap()
            );
        }
        assert!(claimed.sorted.is_sorted());
        // Runs of 8+ keys merged like a binary counter: each older run is larger.
        assert!(claimed.runs.len() >= 2, "{} runs", claimed.runs.len());
        assert!(
            claimed
                .runs
                .windows(2)
                .all(|pair| pair[0].len > pair[1].len)
        );
        let total: usize = claimed.runs.iter().map(|run| run.len).sum::<usize>()
            + claimed.sorted.len()
            + claimed.recent.len();
        assert_eq!(total, 200);
        for n in 0..200u8 {
            assert!(
                !claimed
                    .insert(BlobType::Data, &id(n.wrapping_mul(37), n))
                    .unwrap()
            );
            // The same ID as a tree blob is another blob.
            assert!(
                claimed
                    .insert(BlobType::Tree, &id(n.wrapping_mul(37), n))
                    .unwrap()
            );
        }
    }

    #[test]
    fn a_set_that_cannot_spill_stays_in_memory() {
        let mut claimed = ClaimedBlobs::new(limits(2, 4), cannot_create);
        for n in 0..50u8 {
            assert!(claimed.insert(BlobType::Data, &id(n, n)).unwrap());
        }
        assert!(claimed.runs.is_empty());
        assert!(claimed.spill.is_none());
        for n in 0..50u8 {
            assert!(!claimed.insert(BlobType::Data, &id(n, n)).unwrap());
        }
    }

    #[test]
    fn a_run_that_cannot_be_read_back_is_an_error_not_a_guess() {
        let mut claimed = ClaimedBlobs::new(limits(2, 4), write_only);
        let mut failed = None;
        for n in 0..50u8 {
            // Inserting again looks the key up in the runs (its filter matches).
            let again = claimed
                .insert(BlobType::Data, &id(n, n))
                .and_then(|_| claimed.insert(BlobType::Data, &id(n, n)));
            if let Err(error) = again {
                failed = Some(error);
                break;
            }
        }
        let error = failed.expect("a lookup or merge read the write-only run");
        assert_eq!(error.raw_os_error(), Some(nix::libc::EBADF), "{error}");
    }

    #[test]
    fn a_failed_merge_leaves_a_set_that_still_answers() {
        let mut claimed = ClaimedBlobs::new(limits(2, 4), write_only);
        // New keys only: the first error comes from reading a run to merge it
        // (or from a lookup whose filter matched), after the array was spilled.
        let failed = (0..50u8).find_map(|n| claimed.insert(BlobType::Data, &id(n, n)).err());
        assert!(
            failed.is_some(),
            "the second spill merges the write-only first run"
        );
        // Other readers may still ask before the backup stops: an answer or
        // the same error, never a panic.
        for n in 0..50u8 {
            let _ = claimed.insert(BlobType::Tree, &id(n, n));
        }
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_set(
            inserts in proptest::collection::vec((any::<bool>(), 0u8..4, 0u8..40), 0..400),
            recent_entries in 1usize..9,
            memory_entries in 1usize..24,
        ) {
            let mut claimed = ClaimedBlobs::new(limits(recent_entries, memory_entries), tempfile::tempfile);
            let mut model = HashSet::new();
            for (tree, first, last) in inserts {
                let blob_type = if tree { BlobType::Tree } else { BlobType::Data };
                // Few distinct first bytes: many IDs share a prefix and filter bits.
                let id = id(first.wrapping_mul(85), last);
                prop_assert_eq!(claimed.insert(blob_type, &id).unwrap(), model.insert((blob_type, id)));
            }
            prop_assert!(claimed.sorted.is_sorted());
            let spilled: usize = claimed.runs.iter().map(|run| run.len).sum();
            prop_assert_eq!(spilled + claimed.sorted.len() + claimed.recent.len(), model.len());
            for (blob_type, id) in model {
                prop_assert!(!claimed.insert(blob_type, &id).unwrap());
            }
        }

        #[test]
        fn run_lookups_find_exactly_their_keys(
            ids in proptest::collection::btree_set(any::<[u8; 32]>(), 1..600),
            probes in proptest::collection::vec(any::<[u8; 32]>(), 0..50),
        ) {
            let keys: Vec<Key> = ids.iter().map(|id| (*id, id[0] % 2 == 0)).collect();
            let run = Run::create(tempfile::tempfile, keys.len(), keys.iter().copied().map(Ok)).unwrap();
            for key in &keys {
                prop_assert!(run.contains(key).unwrap());
                prop_assert!(!run.contains(&(key.0, !key.1)).unwrap());
            }
            for probe in probes {
                prop_assert_eq!(run.contains(&(probe, false)).unwrap(), keys.contains(&(probe, false)));
            }
            let read: Vec<Key> = RunKeys::new(&run).collect::<io::Result<_>>().unwrap();
            prop_assert_eq!(read, keys);
        }
    }
}
