//! Backup: reads files and directories into a new snapshot.
//!
//! The work runs as a pipeline of dedicated threads joined by bounded
//! channels, so it uses every core, keeps CPU work off the async runtime and
//! holds a bounded amount of data in memory however large the backup:
//!
//! - the **walker** lists the paths depth-first in name order (`lstat` only)
//!   and decides from the parent snapshot which files changed;
//! - **readers** open changed files, chunk them (keyed FastCDC), hash the
//!   chunks and drop those the repository or this backup already has; small
//!   files (≤ 256 KiB) have readers of their own, four per core, so many of
//!   their reads wait on the disk at once, and new small chunks travel to the
//!   encoders in batches;
//! - **encoders** compress and encrypt the new chunks and append them to the
//!   open pack of their type (data and tree blobs apart); full packs are
//!   uploaded a few at a time on the async runtime;
//! - the **assembler** turns the walk into tree blobs bottom-up, waiting for
//!   each file's content list in order.
//!
//! Memory is bounded by the channel capacities and reused buffers (at most
//! 64 files queued for reading per reader pool; a read buffer of 2 MiB per
//! large-file reader, grown to the largest chunk + 2 MiB only while a long
//! chunk needs it, and of 260 KiB per small-file reader; a chunk, or a
//! batch of small chunks up to 256 KiB, per reader waiting for an encoder
//! and per encoder; the open tree pack; an open data pack per encoder, which
//! blobs are compressed and sealed straight into: for a local repository,
//! two buffers per encoder holding less than 2 MiB and a blob each, since
//! data packs are written to disk as they fill; for an object store, the
//! open packs, one finished pack waiting and one per storage connection
//! uploading, up to four), plus what grows with the backup's content:
//! the repository index, one set entry (33 bytes) per blob this backup adds,
//! and the listings of the directories currently open (so the largest single
//! directory, which becomes one tree blob).
//!
//! Writes happen in the order packs → index files → snapshot. The snapshot is
//! the commit point: a backup interrupted at any moment leaves no snapshot
//! and nothing that refers to missing data. Index files are written every few
//! packs (and every few minutes), so a later backup reuses what an
//! interrupted one uploaded; packs uploaded after the last index file are
//! unreferenced garbage for a later prune.
//!
//! A file is read only if it is new or its type, size, mtime, ctime, inode or
//! device differ from the parent snapshot (or `force` is set); extended
//! attributes are taken from the parent snapshot when inode and ctime match
//! (changing one updates the ctime), so an unchanged file costs one `lstat`
//! relative to its open directory. Unchanged
//! directories encode to the same tree blobs as before, so an unchanged
//! backup uploads nothing but the snapshot.
//!
//! Problems with single items (a file vanished, could not be opened, changed
//! while being read) are reported through [`Progress::warn`] and
//! [`BackupOutcome::unreadable`], and the backup goes on; storage and crypto
//! failures end it with an error and no snapshot.

mod ahead;
mod assemble;
mod claimed;
mod exclude;
mod level;
mod metadata;
mod parent;
mod prefetch;
mod targets;
mod walk;
mod workers;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arca_chunk::{READ_ALIGN, StreamChunker};
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::ahead::{ParentLookup, ReadAhead, Scout};
use self::assemble::{Assembled, run_assembler};
use self::exclude::Excludes;
use self::metadata::OwnerNames;
use self::parent::ParentTrees;
use self::prefetch::Prefetch;
use self::targets::{TargetNode, Targets};
use self::walk::Walker;
use self::workers::{
    FileQueues, Packer, SMALL_FILE_BYTES, Shared, Stopped, run_encoder, run_reader,
};
use crate::index::IndexFile;
use crate::pack::FinishedPack;
use crate::progress::Progress;
use crate::snapshot::{Snapshot, SnapshotSummary};
use crate::tree::Tree;
use crate::{Error, Id, Repository, Result};

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Files and directories to back up; relative paths are taken from the
    /// current directory. The snapshot records them as absolute paths.
    pub paths: Vec<PathBuf>,
    /// Tags recorded in the snapshot.
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot; empty = this machine's.
    pub hostname: String,
    /// Snapshot time; `None` = now.
    pub time: Option<Timestamp>,
    /// Exclude patterns (see the `exclude` rules: restic's semantics).
    pub excludes: Vec<String>,
    /// Files with one exclude pattern per line (`#` starts a comment).
    pub exclude_files: Vec<PathBuf>,
    /// Leave out the contents of directories holding a valid `CACHEDIR.TAG`.
    pub exclude_caches: bool,
    /// Do not descend into directories on other file systems (mount points
    /// are kept as empty directories).
    pub one_file_system: bool,
    /// Snapshot to compare against; `None` = the latest snapshot with the
    /// same host name and the same set of paths (and every tag of
    /// `parent_tags`).
    pub parent: Option<Id>,
    /// Tags the implicit parent must carry (restic's `backup --group-by
    /// host,paths,tags` does the like): backups of different sources into one
    /// repository, told apart by a tag, never compare against each other's
    /// trees.
    pub parent_tags: Vec<String>,
    /// Read every file, even those the parent snapshot says are unchanged.
    pub force: bool,
    /// Record access times. Off by default, as in restic: reading files
    /// changes their access time, so recording it makes every backup's trees
    /// differ from the last one's. Without it, the access time is stored as
    /// the modification time.
    pub with_atime: bool,
}

/// The result of a completed backup.
#[derive(Debug)]
pub struct BackupOutcome {
    /// ID of the new snapshot.
    pub snapshot_id: Id,
    /// The new snapshot (with its summary).
    pub snapshot: Snapshot,
    /// Items that could not be backed up and are missing from the snapshot,
    /// with the reason (the CLI exits with code 3 when this is not empty).
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Regular files queued for reading at most (bounds open work and memory).
const FILES_IN_FLIGHT: usize = 64;
/// Batches of walker events queued for the assembler at most.
const EVENT_BATCHES_QUEUED: usize = 4;
/// Finished packs waiting for an upload slot at most.
const PACKS_QUEUED: usize = 1;
/// Blobs (or batches of small ones) queued for the encoders: none, a reader
/// hands them over to an encoder directly. With more readers than encoders,
/// one is nearly always waiting with a blob when an encoder is free, and a
/// queue only held more chunks in memory (first backup of the 2 GiB
/// benchmark tree, five runs each: a queue of one per core 79-85 MiB RSS,
/// 5.70-6.05 s; none 77-80 MiB, 5.67-6.12 s).
const ENCODE_QUEUE: usize = 0;
/// Packs uploaded at the same time at most (fewer if the backend has fewer
/// connections: more would only hold their buffers while they wait).
const CONCURRENT_UPLOADS: usize = 4;
/// Stack of the walker thread, which recurses once per directory level.
const WALKER_STACK_BYTES: usize = 32 * 1024 * 1024;

/// When the backup writes the index of the packs uploaded so far: how much
/// an interrupted backup may have to upload again.
#[derive(Debug, Clone, Copy)]
struct IndexFlush {
    /// After this many packs.
    packs: usize,
    /// Or once this long has passed since the last index file.
    age: Duration,
}

impl Default for IndexFlush {
    fn default() -> Self {
        IndexFlush {
            // 8 packs of 16 MiB: an interrupted backup re-uploads at most
            // ~128 MiB; the extra index files are small and a later prune
            // merges them.
            packs: 8,
            age: Duration::from_secs(60),
        }
    }
}

/// Backs up `opts.paths` into `repo` and writes a snapshot.
///
/// Returns an error, and writes no snapshot, if the repository cannot be
/// read or written; items that cannot be read are reported and skipped.
/// Dropping the future stops the backup (its threads wind down on their own)
/// and, likewise, leaves no snapshot.
pub async fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupOutcome> {
    PreparedBackup::new(opts.clone())?.run(repo, progress).await
}

/// A backup whose options are checked: prepare it before opening the
/// repository, so that a bad exclude file or path is reported before a
/// password is asked for.
///
/// Reading the tree's metadata ahead ([`Prefetch`]) starts only when the
/// backup runs, once the key is derived. Started sooner, it overlapped the
/// cold walk with key derivation but added what it holds to Argon2id's 64
/// MiB, most of a backup's peak memory: on the benchmark tree
/// (docs/PERFORMANCE.md) 78 MiB of peak RSS instead of 72, for no time
/// saved beyond the runs' spread.
pub struct PreparedBackup {
    opts: BackupOptions,
    excludes: Excludes,
    targets: Targets,
}

impl std::fmt::Debug for PreparedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedBackup")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Threads reading metadata ahead of the walker (see [`Prefetch`]): a few
/// reads of inodes in flight keep a disk or network file system busy (cold
/// unchanged re-backup of the benchmark tree, 8 runs each: 2 threads
/// 0.31-0.37 s, 4 threads 0.29-0.33 s, 8 threads no better than 2).
const PREFETCH_THREADS: usize = 4;

impl PreparedBackup {
    /// Checks the options (exclude patterns and files, paths).
    pub fn new(opts: BackupOptions) -> Result<Self> {
        let excludes = Excludes::new(&opts.excludes, &opts.exclude_files, opts.exclude_caches)?;
        let targets = Targets::new(&opts.paths, |path| {
            excludes.is_excluded_with_ancestors(path)
        })?;
        Ok(PreparedBackup {
            opts,
            excludes,
            targets,
        })
    }

    /// Compares against this snapshot instead of the latest one with the
    /// same host name and paths (see [`BackupOptions::parent`]).
    pub fn set_parent(&mut self, parent: Option<Id>) {
        self.opts.parent = parent;
    }

    /// Runs the backup (see [`backup`]).
    pub async fn run(
        self,
        repo: &Repository,
        progress: Arc<dyn Progress>,
    ) -> Result<BackupOutcome> {
        backup_with(repo, self, progress, IndexFlush::default()).await
    }
}

async fn backup_with(
    repo: &Repository,
    prepared: PreparedBackup,
    progress: Arc<dyn Progress>,
    flush: IndexFlush,
) -> Result<BackupOutcome> {
    let backup_start = Timestamp::now();
    let PreparedBackup {
        opts,
        excludes,
        targets,
    } = prepared;
    // Lists the tree while the index and the parent tree load.
    let roots: Vec<PathBuf> = targets.paths.iter().map(PathBuf::from).collect();
    let prefetch = Prefetch::start(&roots, &excludes, PREFETCH_THREADS);
    let hostname = if opts.hostname.is_empty() {
        local_hostname()
    } else {
        opts.hostname.clone()
    };
    // Blobs only in packs pending deletion count as absent (see marks.rs).
    let (index, write_start) = repo.load_index_for_writing().await?;
    tracing::debug!(blobs = index.len(), "index loaded");
    let parent = find_parent(
        repo,
        opts.parent,
        &hostname,
        &targets.paths,
        &opts.parent_tags,
    )
    .await?;
    let previous_root = match &parent {
        Some((id, snapshot)) => match repo.load_tree(&index, &snapshot.tree).await {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!(parent = %id, "cannot load the parent snapshot's tree, reading every file: {e}");
                None
            }
        },
        None => None,
    };
    tracing::debug!(parent = ?parent.as_ref().map(|(id, _)| id.short()), "parent tree loaded");

    // One connection stays free for index writes and tree loads.
    let uploads = repo
        .backend()
        .connections()
        .map_or(CONCURRENT_UPLOADS, |connections| {
            connections.saturating_sub(1)
        })
        .clamp(1, CONCURRENT_UPLOADS);
    let shared = Arc::new(Shared::new(repo.clone(), index, progress, uploads));
    let (pack_sender, pack_receiver) = mpsc::channel(PACKS_QUEUED);
    let blob_key = repo.blob_key()?;
    let pipeline = Pipeline::start(
        &shared,
        &opts,
        excludes,
        targets.root,
        prefetch,
        previous_root,
        pack_sender,
        blob_key,
    );
    let uploaded = upload_packs(repo, pack_receiver, uploads, flush).await;
    if uploaded.is_err() {
        shared.request_stop();
    }
    let assembled = pipeline.join().await;
    tracing::debug!("backup pipeline finished");
    uploaded?;
    if let Some(failure) = shared.take_failure() {
        return Err(failure);
    }
    let Assembled { root, counts } = assembled.map_err(|Stopped| Error::BackupIncomplete {
        reason: "the backup pipeline stopped early".into(),
    })?;

    let unreadable = shared.take_unreadable();
    let added = &shared.added;
    let time = opts.time.unwrap_or(backup_start);
    let summary = SnapshotSummary {
        backup_start,
        backup_end: Timestamp::now(),
        files_new: counts.files_new,
        files_changed: counts.files_changed,
        files_unmodified: counts.files_unmodified,
        dirs_new: counts.dirs_new,
        dirs_changed: counts.dirs_changed,
        dirs_unmodified: counts.dirs_unmodified,
        data_blobs: added.data_blobs.load(std::sync::atomic::Ordering::Relaxed),
        tree_blobs: added.tree_blobs.load(std::sync::atomic::Ordering::Relaxed),
        data_added: added.bytes.load(std::sync::atomic::Ordering::Relaxed),
        data_added_packed: added
            .bytes_packed
            .load(std::sync::atomic::Ordering::Relaxed),
        total_files_processed: counts.files_processed,
        total_bytes_processed: counts.bytes_processed,
        files_unreadable: unreadable.len() as u64,
    };
    let uid = nix::unistd::getuid().as_raw();
    let snapshot = Snapshot {
        time,
        time_offset_seconds: jiff::tz::TimeZone::system().to_offset(time).seconds(),
        parent: parent.map(|(id, _)| id),
        original: None,
        tree: root,
        paths: targets.paths,
        hostname,
        username: OwnerNames::default().user(uid).unwrap_or_default(),
        uid,
        gid: nix::unistd::getgid().as_raw(),
        tags: opts.tags.clone(),
        excludes: opts.excludes.clone(),
        program_version: concat!("arca ", env!("CARGO_PKG_VERSION")).to_owned(),
        summary: Some(summary),
    };
    let snapshot_id = repo.commit_snapshot(&snapshot, write_start).await?;
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        unreadable,
    })
}

/// This machine's host name, or empty if it cannot be read.
fn local_hostname() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The snapshot to compare against: `explicit`, or the latest snapshot of
/// `hostname` with exactly the same `paths` (sorted) and every one of `tags`.
/// Damaged snapshot files are skipped here; `arca check` reports them.
async fn find_parent(
    repo: &Repository,
    explicit: Option<Id>,
    hostname: &str,
    paths: &[String],
    tags: &[String],
) -> Result<Option<(Id, Snapshot)>> {
    if let Some(id) = explicit {
        return Ok(Some((id, repo.load_snapshot(&id).await?)));
    }
    let (snapshots, _damaged) = repo.list_snapshots_lenient().await?;
    Ok(snapshots
        .into_iter()
        .filter(|(_, s)| {
            s.hostname == hostname
                && same_paths(&s.paths, paths)
                && tags.iter().all(|tag| s.tags.contains(tag))
        })
        .max_by_key(|(_, s)| s.time))
}

/// Whether two path lists name the same set of paths.
fn same_paths(recorded: &[String], sorted: &[String]) -> bool {
    let mut recorded = recorded.to_vec();
    recorded.sort();
    recorded.dedup();
    recorded == sorted
}

/// Uploads packs as the encoders finish them, at most `concurrent` at a
/// time, and writes index files for the uploaded packs per `flush` and at
/// the end.
async fn upload_packs(
    repo: &Repository,
    mut packs: mpsc::Receiver<FinishedPack>,
    concurrent: usize,
    flush: IndexFlush,
) -> Result<()> {
    // Each upload is its own task: an upload holds a storage connection
    // until it is polled to completion, so uploads merely queued here would
    // starve the index write below of connections and deadlock the backup.
    // Dropping the JoinSet (the backup was cancelled) aborts them.
    let mut uploads = JoinSet::new();
    let upload = |pack: FinishedPack| {
        let repo = repo.clone();
        async move { repo.save_pack(pack).await }
    };
    let mut pending = IndexFile::default();
    let mut last_flush = Instant::now();
    let mut more_packs = true;
    loop {
        tokio::select! {
            pack = packs.recv(), if more_packs && uploads.len() < concurrent => match pack {
                Some(pack) => {
                    uploads.spawn(upload(pack));
                }
                None => more_packs = false,
            },
            Some(uploaded) = uploads.join_next(), if !uploads.is_empty() => {
                let uploaded = match uploaded {
                    Ok(uploaded) => uploaded?,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => return Err(Error::BackupIncomplete { reason: format!("pack upload stopped: {e}") }),
                };
                pending.packs.push(uploaded);
                if pending.packs.len() >= flush.packs || pending.is_full() || last_flush.elapsed() >= flush.age {
                    repo.save_indexes(std::mem::take(&mut pending)).await?;
                    last_flush = Instant::now();
                }
            },
            else => break,
        }
    }
    if !pending.packs.is_empty() {
        repo.save_indexes(pending).await?;
    }
    Ok(())
}

/// The pipeline's threads.
struct Pipeline {
    stages: Vec<JoinHandle<()>>,
    assembler: JoinHandle<Result<Assembled, Stopped>>,
}

impl Pipeline {
    /// Starts every stage; packs come out of `packs`, the first tree pack
    /// sealed under `blob_key`.
    #[allow(clippy::too_many_arguments)]
    fn start(
        shared: &Arc<Shared>,
        opts: &BackupOptions,
        excludes: Excludes,
        targets: TargetNode,
        prefetch: Prefetch,
        previous_root: Option<Tree>,
        packs: mpsc::Sender<FinishedPack>,
        blob_key: Arc<arca_crypto::BlobKey>,
    ) -> Self {
        let cores = shared.cores;
        let (small_sender, small_receiver) = crossbeam_channel::bounded(FILES_IN_FLIGHT);
        let (large_sender, large_receiver) = crossbeam_channel::bounded(FILES_IN_FLIGHT);
        // A rendezvous: the scout chooses each read as a reader takes it.
        let (ahead_sender, ahead_receiver) = crossbeam_channel::bounded(0);
        let (event_sender, event_receiver) = crossbeam_channel::bounded(EVENT_BATCHES_QUEUED);
        let (encode_sender, encode_receiver) = crossbeam_channel::bounded(ENCODE_QUEUE);
        let mut stages = Vec::new();

        let read_ahead = Arc::new(ReadAhead::new(ahead::Limits::default()));
        let runtime = tokio::runtime::Handle::current();
        let scout = Scout {
            shared: Arc::clone(shared),
            read_ahead: Arc::clone(&read_ahead),
            candidates: prefetch.large_files(),
            jobs: ahead_sender,
            parent: ParentLookup::new(
                ParentTrees::new(Arc::clone(shared), runtime.clone()),
                previous_root.clone(),
            ),
            force: opts.force,
        };
        stages.push(spawn_stage("arca-scout", shared, None, move |_| {
            scout.run()
        }));
        let walker = Walker {
            shared: Arc::clone(shared),
            excludes,
            one_file_system: opts.one_file_system,
            force: opts.force,
            with_atime: opts.with_atime,
            parent_trees: ParentTrees::new(Arc::clone(shared), runtime),
            events: event_sender,
            batch: Vec::new(),
            jobs: FileQueues {
                small: small_sender,
                large: large_sender,
            },
            owners: OwnerNames::default(),
            prefetched: prefetch.listings(),
            read_ahead,
            files_found: 0,
            bytes_found: 0,
        };
        stages.push(spawn_stage(
            "arca-walk",
            shared,
            Some(WALKER_STACK_BYTES),
            move |_| {
                walker.run(&targets, previous_root.as_ref());
                // The walk has read everything the prefetch would.
                drop(prefetch);
            },
        ));
        // A reader alternates between waiting for a direct read (no kernel
        // read-ahead) and chunking what it got: one more than the cores keeps
        // them busy (first backup of the 2 GiB benchmark tree: 2 readers
        // 6.7-7.0 s, 3 readers 6.1-6.25 s, 4 readers 6.0-6.2 s). Reading a
        // small file is nearly all waiting: four readers per core keep more
        // of those reads in flight (the benchmark's 48 k small files alone:
        // 2.6-2.9 s with 3 readers for every file, 2.2-2.3 s with 8 more
        // for the small ones). A small-file reader's buffer holds the
        // largest small file and the read that finds its end.
        let small_read_ahead = SMALL_FILE_BYTES as usize + READ_ALIGN;
        // Closed from the start: small files are not read ahead.
        let (_, no_read_ahead) = crossbeam_channel::bounded(0);
        let readers = [
            ("read", &large_receiver, &ahead_receiver, cores + 1, None),
            (
                "read-small",
                &small_receiver,
                &no_read_ahead,
                4 * cores,
                Some(small_read_ahead),
            ),
        ];
        for (name, jobs, ahead, count, read_ahead) in readers {
            for n in 0..count {
                let chunker = shared.repo.chunker().clone();
                let mut chunker = match read_ahead {
                    Some(bytes) => StreamChunker::with_read_ahead(chunker, bytes),
                    None => StreamChunker::new(chunker),
                };
                let (jobs, ahead, encode) = (jobs.clone(), ahead.clone(), encode_sender.clone());
                stages.push(spawn_stage(
                    &format!("arca-{name}-{n}"),
                    shared,
                    None,
                    move |shared| {
                        run_reader(shared, &mut chunker, &jobs, &ahead, &encode);
                    },
                ));
            }
        }
        let compression = shared.repo.compression();
        let packer = Arc::new(Packer::new(
            shared.repo.config().pack_size as usize,
            cores,
            compression,
            blob_key,
        ));
        for n in 0..cores {
            let (jobs, packer, packs) =
                (encode_receiver.clone(), Arc::clone(&packer), packs.clone());
            stages.push(spawn_stage(
                &format!("arca-encode-{n}"),
                shared,
                None,
                move |shared| {
                    run_encoder(shared, compression, &jobs, &packer, &packs);
                },
            ));
        }
        drop(packs);
        let assembler = spawn_stage("arca-assemble", shared, None, move |shared| {
            run_assembler(shared, &event_receiver, &encode_sender)
        });
        Pipeline { stages, assembler }
    }

    /// Waits for every stage to end; re-raises a stage's panic.
    async fn join(self) -> Result<Assembled, Stopped> {
        let joined = tokio::task::spawn_blocking(move || {
            let mut panic = None;
            for stage in self.stages {
                if let Err(payload) = stage.join() {
                    panic.get_or_insert(payload);
                }
            }
            let assembled = self.assembler.join();
            match (panic, assembled) {
                (Some(payload), _) | (None, Err(payload)) => std::panic::resume_unwind(payload),
                (None, Ok(assembled)) => assembled,
            }
        })
        .await;
        joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// Starts a pipeline stage on its own thread. A panicking stage stops the
/// others (so nothing waits forever for it) before the panic reaches
/// [`Pipeline::join`].
fn spawn_stage<T: Send + 'static>(
    name: &str,
    shared: &Arc<Shared>,
    stack_bytes: Option<usize>,
    body: impl FnOnce(&Shared) -> T + Send + 'static,
) -> JoinHandle<T> {
    struct StopOnPanic(Arc<Shared>);
    impl Drop for StopOnPanic {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.request_stop();
            }
        }
    }
    let guard = StopOnPanic(Arc::clone(shared));
    let mut builder = std::thread::Builder::new().name(name.to_owned());
    if let Some(bytes) = stack_bytes {
        builder = builder.stack_size(bytes);
    }
    builder
        .spawn(move || body(&guard.0))
        .expect("the operating system refused to start a backup thread")
}
