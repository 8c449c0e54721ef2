//! Recovery drills: restore, verify, check, time, clean up, record.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arca_repo::audit::{self, AuditRecord, Entry, Outcome};
use arca_repo::progress::Progress;
use arca_repo::restore::filter::{Decision, PathFilter};
use arca_repo::restore::{RestoreOptions, restore};
use arca_repo::select::{SnapshotFilter, pick};
use arca_repo::snapshot::Snapshot;
use arca_repo::tree::{Node, NodeType};
use arca_repo::{Id, Repository};
use jiff::SignedDuration;

use crate::{Error, Result};

/// The audit trail's operation name for a drill.
pub const DRILL_OPERATION: &str = "drill";
/// A volume's own directory, never restored into or removed.
const LOST_AND_FOUND: &str = "lost+found";
/// Lines of the consistency command's output kept in the report.
const OUTPUT_TAIL_LINES: usize = 20;
/// Verification failures listed in a report (the count is always exact).
const FAILURES_LISTED: usize = 20;

/// What to drill and how.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// A snapshot ID, unique prefix or `latest`; `None` picks with
    /// `filter`, `as_of` and `skip_previous` (`arca_repo::select::pick`).
    pub snapshot: Option<String>,
    /// Which snapshots qualify when `snapshot` is `None`.
    pub filter: SnapshotFilter,
    /// The newest snapshot not after this time (the agent's `RESTORE_AS_OF`).
    pub as_of: Option<jiff::Timestamp>,
    /// Skip this many newer matching snapshots (`SELECT_PREVIOUS`).
    pub skip_previous: usize,
    /// Where to restore: a missing or empty directory (`lost+found` aside,
    /// which is left alone). `None`: a fresh
    /// directory under the system's temporary directory.
    pub target: Option<PathBuf>,
    /// Leave the restored copy in place.
    pub keep: bool,
    /// The recovery time objective to meet, if any.
    pub rto: Option<SignedDuration>,
    /// A shell command run (`sh -c`) in the restored tree after
    /// verification; a non-zero exit fails the drill. It sees
    /// `ARCA_DRILL_DIR` (the restored tree) and `ARCA_DRILL_SNAPSHOT`.
    pub command: Option<String>,
    /// Restore and verify only paths matching these patterns (and their
    /// parents), as `arca restore --include`.
    pub includes: Vec<String>,
    /// Append an audit record (operation [`DRILL_OPERATION`]).
    pub record: bool,
    /// Host recorded in the audit record.
    pub hostname: String,
    /// User recorded in the audit record.
    pub username: String,
}

/// Why a drill failed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DrillFailure {
    /// Restored data does not match the snapshot, or could not be restored.
    Verification {
        /// How many items failed.
        count: u64,
        /// The first few, as `path: reason`.
        sample: Vec<String>,
    },
    /// The consistency command failed.
    Command {
        /// Its exit code (`None`: killed by a signal, or not started).
        exit_code: Option<i32>,
    },
    /// Restore and verification took longer than the RTO.
    RtoMissed {
        /// Seconds measured.
        measured_seconds: f64,
        /// Seconds allowed.
        rto_seconds: f64,
    },
}

impl std::fmt::Display for DrillFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrillFailure::Verification { count, sample } => {
                write!(f, "verification failed for {count} item(s)")?;
                if let Some(first) = sample.first() {
                    write!(f, ", first: {first}")?;
                }
                Ok(())
            }
            DrillFailure::Command {
                exit_code: Some(code),
            } => write!(f, "consistency command exited with {code}"),
            DrillFailure::Command { exit_code: None } => {
                f.write_str("consistency command did not finish (not started, or killed)")
            }
            DrillFailure::RtoMissed {
                measured_seconds,
                rto_seconds,
            } => write!(
                f,
                "RTO missed: {measured_seconds:.1} s measured, {rto_seconds:.0} s allowed"
            ),
        }
    }
}

/// What the consistency command did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommandResult {
    /// The command line, as given.
    pub command: String,
    /// Its exit code (`None`: killed by a signal, or not started).
    pub exit_code: Option<i32>,
    /// The last lines of its output (stdout, then stderr).
    pub output_tail: Vec<String>,
}

/// The result of one drill.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DrillReport {
    /// Verified, the command (if any) succeeded and the RTO (if any) met.
    pub passed: bool,
    /// Why not, if not.
    pub failures: Vec<DrillFailure>,
    /// The snapshot drilled.
    pub snapshot: Id,
    /// When it was taken.
    pub snapshot_time: jiff::Timestamp,
    /// Its host and paths.
    pub hostname: String,
    /// Paths the snapshot was taken of.
    pub paths: Vec<String>,
    /// When the drill started.
    pub started: jiff::Timestamp,
    /// Seconds from start until the restored copy was verified.
    pub measured_seconds: f64,
    /// The RTO compared with, if any.
    pub rto_seconds: Option<f64>,
    /// Items (files, directories, links, …) whose metadata was checked.
    pub files_verified: u64,
    /// Bytes of file content restored and checked against the blob IDs.
    pub bytes_verified: u64,
    /// Bytes read from the repository.
    pub bytes_read: u64,
    /// The consistency command's result, if one was given.
    pub command: Option<CommandResult>,
    /// Where the copy was restored.
    pub target: PathBuf,
    /// Whether the copy is still there (`keep`, or removal failed).
    pub kept: bool,
    /// The audit record written, if any.
    pub audit_record: Option<Id>,
}

impl DrillReport {
    /// The failures as one line, `None` if the drill passed.
    pub fn reason(&self) -> Option<String> {
        (!self.failures.is_empty()).then(|| {
            self.failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// The audit record's arguments: the drill's measurements as
    /// `name=value` words, read back by [`DrillRecord::from_audit`].
    fn audit_arguments(&self) -> Vec<String> {
        let mut words = vec![
            format!("snapshot={}", self.snapshot),
            format!("result={}", if self.passed { "passed" } else { "failed" }),
            format!("measured_seconds={:.3}", self.measured_seconds),
            format!("bytes_verified={}", self.bytes_verified),
            format!("files_verified={}", self.files_verified),
        ];
        if let Some(rto) = self.rto_seconds {
            words.push(format!("rto_seconds={rto:.0}"));
        }
        words
    }
}

/// A drill as read back from the audit trail.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DrillRecord {
    /// When it ended.
    pub time: jiff::Timestamp,
    /// Host it ran on.
    pub hostname: String,
    /// The snapshot drilled.
    pub snapshot: Option<Id>,
    /// Whether it passed.
    pub passed: bool,
    /// Seconds measured.
    pub measured_seconds: Option<f64>,
    /// The RTO it was held to.
    pub rto_seconds: Option<f64>,
    /// Bytes verified.
    pub bytes_verified: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl DrillRecord {
    /// The drill an audit record describes; `None` for other operations.
    pub fn from_audit(record: &AuditRecord) -> Option<DrillRecord> {
        if record.operation != DRILL_OPERATION {
            return None;
        }
        let value = |name: &str| {
            record.arguments.iter().find_map(|word| {
                word.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('='))
            })
        };
        Some(DrillRecord {
            time: record.time,
            hostname: record.hostname.clone(),
            snapshot: record.snapshots.first().copied(),
            passed: record.outcome == Outcome::Success,
            measured_seconds: value("measured_seconds").and_then(|v| v.parse().ok()),
            rto_seconds: value("rto_seconds").and_then(|v| v.parse().ok()),
            bytes_verified: value("bytes_verified").and_then(|v| v.parse().ok()),
            error: record.error.clone(),
        })
    }
}

/// Runs a drill. Returns `Err` only when there is nothing to drill or the
/// repository cannot be read at all; damage found is a failed report.
///
/// A damaged repository (a pack or tree that does not authenticate, a
/// missing blob) fails the drill; an unreachable one is an error.
pub async fn drill(
    repo: &Repository,
    options: &DrillOptions,
    progress: Arc<dyn Progress>,
) -> Result<DrillReport> {
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let (id, snapshot) = select(repo, options).await?;
    let (target, created) = prepare_target(options.target.as_deref(), &id)?;
    let mut failures = Vec::new();

    let mut restore_options = RestoreOptions::new(&target);
    restore_options.includes = options.includes.clone();
    restore_options.verify = true;
    let mut bytes_read = 0;
    let mut restore_failures: Vec<String> = Vec::new();
    let mut checked = Checked::default();
    let restored = match restore(repo, &snapshot, &restore_options, progress).await {
        Ok(summary) => {
            bytes_read = summary.bytes_read;
            Ok(())
        }
        Err(arca_repo::Error::RestoreFailed { failures }) => {
            restore_failures.extend(failures.iter().map(ToString::to_string));
            Ok(())
        }
        Err(err) => Err(err),
    };
    let nodes = match restored {
        Ok(()) => expected_nodes(repo, &snapshot, &options.includes).await,
        Err(err) => Err(err),
    };
    match nodes {
        Ok(nodes) => {
            let target = target.clone();
            let found = tokio::task::spawn_blocking(move || check_metadata(&target, &nodes))
                .await
                .expect("the metadata check does not panic");
            checked = found;
            restore_failures.extend(checked.failures.iter().cloned());
        }
        // Damage the drill exists to find: a failed drill, recorded.
        Err(err) if is_damage(&err) => restore_failures.push(err.to_string()),
        Err(err) => {
            cleanup(&target, created, options.keep);
            return Err(err.into());
        }
    }
    if !restore_failures.is_empty() {
        failures.push(DrillFailure::Verification {
            count: restore_failures.len() as u64,
            sample: restore_failures.into_iter().take(FAILURES_LISTED).collect(),
        });
    }
    let measured_seconds = clock.elapsed().as_secs_f64();

    let command = match &options.command {
        Some(command) => {
            let (command, target, id) = (command.clone(), target.clone(), id);
            let result = tokio::task::spawn_blocking(move || run_command(&command, &target, &id))
                .await
                .expect("running the command does not panic");
            if result.exit_code != Some(0) {
                failures.push(DrillFailure::Command {
                    exit_code: result.exit_code,
                });
            }
            Some(result)
        }
        None => None,
    };
    let rto_seconds = options.rto.map(|rto| rto.as_secs_f64());
    if let Some(rto_seconds) = rto_seconds
        && measured_seconds > rto_seconds
    {
        failures.push(DrillFailure::RtoMissed {
            measured_seconds,
            rto_seconds,
        });
    }
    let kept = !cleanup(&target, created, options.keep);
    let mut report = DrillReport {
        passed: failures.is_empty(),
        failures,
        snapshot: id,
        snapshot_time: snapshot.time,
        hostname: snapshot.hostname.clone(),
        paths: snapshot.paths.clone(),
        started,
        measured_seconds,
        rto_seconds,
        files_verified: checked.items,
        bytes_verified: checked.bytes,
        bytes_read,
        command,
        target,
        kept,
        audit_record: None,
    };
    if options.record {
        let entry = Entry {
            time: jiff::Timestamp::now(),
            hostname: options.hostname.clone(),
            username: options.username.clone(),
            operation: DRILL_OPERATION.to_owned(),
            arguments: report.audit_arguments(),
            snapshots: vec![id],
            outcome: if report.passed {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            error: report.reason(),
            bytes_written: 0,
            bytes_read,
        };
        report.audit_record = Some(audit::append(repo, entry).await?);
    }
    Ok(report)
}

/// Whether `err` means the repository's data is damaged (as opposed to
/// unreachable, or the request being wrong).
fn is_damage(err: &arca_repo::Error) -> bool {
    matches!(
        err,
        arca_repo::Error::Corrupt { .. }
            | arca_repo::Error::BlobNotFound { .. }
            | arca_repo::Error::VerifyFailed { .. }
            | arca_repo::Error::Crypto(_)
    )
}

async fn select(repo: &Repository, options: &DrillOptions) -> Result<(Id, Snapshot)> {
    if let Some(spec) = &options.snapshot {
        return Ok(repo.find_snapshot(spec).await?);
    }
    let snapshots = repo.list_snapshots().await?;
    pick(
        &snapshots,
        &options.filter,
        options.as_of,
        options.skip_previous,
    )
    .ok_or_else(|| Error::NoSnapshot {
        selection: format!(
            "{:?}{}{}",
            options.filter,
            options
                .as_of
                .map_or(String::new(), |t| format!(", as of {t}")),
            match options.skip_previous {
                0 => String::new(),
                n => format!(", {n} previous"),
            }
        ),
    })
}

/// The directory to restore into and whether the drill created it.
fn prepare_target(given: Option<&Path>, id: &Id) -> Result<(PathBuf, bool)> {
    let path = match given {
        Some(path) => path.to_owned(),
        None => {
            let nanos = jiff::Timestamp::now().as_nanosecond();
            std::env::temp_dir().join(format!(
                "arca-drill-{}-{}-{nanos}",
                id.short(),
                std::process::id()
            ))
        }
    };
    match std::fs::read_dir(&path) {
        Ok(entries) => {
            // A fresh volume's lost+found does not count.
            if entries
                .flatten()
                .any(|entry| entry.file_name() != LOST_AND_FOUND)
            {
                return Err(Error::TargetNotEmpty { path });
            }
            Ok((path, false))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&path).map_err(|err| Error::io(&path, err))?;
            Ok((path, true))
        }
        Err(err) => Err(Error::io(&path, err)),
    }
}

/// Removes the restored copy (and the directory, if the drill created it)
/// unless `keep`; whether it is gone. Failure to remove is logged, not fatal.
fn cleanup(target: &Path, created: bool, keep: bool) -> bool {
    if keep {
        return false;
    }
    // Restored directories may be read-only; make them writable first.
    make_writable(target);
    let result = if created {
        std::fs::remove_dir_all(target)
    } else {
        std::fs::read_dir(target).and_then(|entries| {
            for entry in entries {
                let entry = entry?;
                if entry.file_name() == LOST_AND_FOUND {
                    continue;
                }
                let path = entry.path();
                if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
            Ok(())
        })
    };
    match result {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(target = %target.display(), %err, "cannot remove the drill's copy");
            false
        }
    }
}

fn make_writable(dir: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mut permissions = meta.permissions();
    permissions.set_mode(permissions.mode() | 0o700);
    let _ = std::fs::set_permissions(dir, permissions);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// A node the snapshot says is at `path` (relative to the restore target).
struct Expected {
    path: PathBuf,
    node: Node,
}

/// Every node of the snapshot the restore selects (as `arca restore` does).
async fn expected_nodes(
    repo: &Repository,
    snapshot: &Snapshot,
    includes: &[String],
) -> arca_repo::Result<Vec<Expected>> {
    let filter = PathFilter::new(includes, &[])?;
    let index = repo.load_index().await?;
    let mut out = Vec::new();
    let mut pending = vec![(snapshot.tree, PathBuf::new(), filter.root_decision())];
    while let Some((tree_id, dir, parent)) = pending.pop() {
        let tree = repo.load_tree(&index, &tree_id).await?;
        for node in tree.nodes {
            let path = dir.join(node.name.as_os_str());
            let decision = filter.decide(&Path::new("/").join(&path), parent);
            if decision == Decision::Excluded {
                continue;
            }
            if let Some(subtree) = node.subtree {
                pending.push((subtree, path.clone(), decision));
            }
            if decision == Decision::Included {
                out.push(Expected { path, node });
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct Checked {
    items: u64,
    bytes: u64,
    failures: Vec<String>,
}

/// Compares the restored items' type, size, mode, mtime and link targets
/// with the snapshot. Content was checked by the restore's verification.
fn check_metadata(target: &Path, expected: &[Expected]) -> Checked {
    let mut checked = Checked::default();
    for Expected { path, node } in expected {
        let full = target.join(path);
        let problem = match std::fs::symlink_metadata(&full) {
            Err(err) => Some(format!("missing: {err}")),
            Ok(meta) => metadata_mismatch(&full, node, &meta),
        };
        match problem {
            Some(reason) => checked
                .failures
                .push(format!("{}: {reason}", full.display())),
            None => {
                checked.items += 1;
                if node.node_type == NodeType::File {
                    checked.bytes += node.size;
                }
            }
        }
    }
    checked
}

fn metadata_mismatch(full: &Path, node: &Node, meta: &std::fs::Metadata) -> Option<String> {
    let kind = meta.file_type();
    use std::os::unix::fs::FileTypeExt as _;
    let type_ok = match node.node_type {
        NodeType::File => kind.is_file(),
        NodeType::Dir => kind.is_dir(),
        NodeType::Symlink => kind.is_symlink(),
        NodeType::Fifo => kind.is_fifo(),
        // Restores skip sockets, and device nodes without root.
        NodeType::Socket | NodeType::CharDevice | NodeType::BlockDevice => return None,
    };
    if !type_ok {
        return Some(format!("is not a {:?}", node.node_type));
    }
    if node.node_type == NodeType::Symlink {
        let target = std::fs::read_link(full).ok()?;
        let expected = node.link_target.as_ref().map(|t| t.as_bytes().to_vec());
        return (expected.as_deref() != Some(target.as_os_str().as_bytes()))
            .then(|| format!("links to {}, not the snapshot's target", target.display()));
    }
    if node.node_type == NodeType::File && meta.len() != node.size {
        return Some(format!("{} bytes, snapshot has {}", meta.len(), node.size));
    }
    if meta.mode() & 0o7777 != node.mode & 0o7777 {
        return Some(format!(
            "mode {:o}, snapshot has {:o}",
            meta.mode() & 0o7777,
            node.mode & 0o7777
        ));
    }
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    if mtime_ns != i128::from(node.mtime_ns) {
        return Some(format!(
            "mtime {mtime_ns} ns, snapshot has {} ns",
            node.mtime_ns
        ));
    }
    None
}

/// Runs the consistency command; never fails (a command that cannot start
/// is a failed command).
fn run_command(command: &str, dir: &Path, snapshot: &Id) -> CommandResult {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("ARCA_DRILL_DIR", dir)
        .env("ARCA_DRILL_SNAPSHOT", snapshot.to_string())
        .stdin(std::process::Stdio::null())
        .output();
    match output {
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            CommandResult {
                command: command.to_owned(),
                exit_code: output.status.code(),
                output_tail: tail(&text, OUTPUT_TAIL_LINES),
            }
        }
        Err(err) => CommandResult {
            command: command.to_owned(),
            exit_code: None,
            output_tail: vec![format!("cannot start sh: {err}")],
        },
    }
}

fn tail(text: &str, lines: usize) -> Vec<String> {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_tail_keeps_the_last_lines() {
        let text: String = (0..30).map(|n| format!("line {n}\n")).collect();
        let kept = tail(&text, OUTPUT_TAIL_LINES);
        assert_eq!(kept.len(), OUTPUT_TAIL_LINES);
        assert_eq!(kept.first().unwrap(), "line 10");
        assert_eq!(kept.last().unwrap(), "line 29");
        assert_eq!(tail("one", 5), vec!["one"]);
    }

    #[test]
    fn a_drill_record_round_trips_through_the_audit_arguments() {
        let report = DrillReport {
            passed: false,
            failures: vec![DrillFailure::RtoMissed {
                measured_seconds: 20.0,
                rto_seconds: 10.0,
            }],
            snapshot: Id([7; 32]),
            snapshot_time: jiff::Timestamp::UNIX_EPOCH,
            hostname: "h".into(),
            paths: vec!["/data".into()],
            started: jiff::Timestamp::UNIX_EPOCH,
            measured_seconds: 20.0,
            rto_seconds: Some(10.0),
            files_verified: 3,
            bytes_verified: 4096,
            bytes_read: 5000,
            command: None,
            target: PathBuf::from("/tmp/x"),
            kept: false,
            audit_record: None,
        };
        let record = AuditRecord {
            time: jiff::Timestamp::UNIX_EPOCH,
            hostname: "h".into(),
            username: "u".into(),
            operation: DRILL_OPERATION.into(),
            arguments: audit::redact_arguments(&report.audit_arguments()),
            snapshots: vec![report.snapshot],
            outcome: Outcome::Failure,
            error: report.reason(),
            bytes_written: 0,
            bytes_read: 0,
            previous: Vec::new(),
            resealed_from: None,
            copied_from: None,
        };
        let back = DrillRecord::from_audit(&record).unwrap();
        assert!(!back.passed);
        assert_eq!(back.measured_seconds, Some(20.0));
        assert_eq!(back.rto_seconds, Some(10.0));
        assert_eq!(back.bytes_verified, Some(4096));
        assert_eq!(back.snapshot, Some(report.snapshot));
        assert!(back.error.unwrap().contains("RTO missed"));
        let other = AuditRecord {
            operation: "backup".into(),
            ..record
        };
        assert_eq!(DrillRecord::from_audit(&other), None);
    }
}
