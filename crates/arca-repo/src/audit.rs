//! The audit trail: one sealed record per operation in `audit/<id>`
//! ([`ObjectKind::AuditRecord`]), linked into a hash DAG so that a removed or
//! altered record is detected.
//!
//! Each record names, in [`AuditRecord::previous`], every record that was a
//! *head* (referenced by no other record) when it was written. One writer at
//! a time makes a chain; writers on several hosts at once make short forks,
//! which the next record joins again by naming all heads. Records are named by
//! the storage ID (BLAKE3) of their stored bytes, so a reference is a hash of
//! the whole sealed record: [`verify`] reports a record that is referenced but
//! missing (removed) as a gap between two times, and one whose bytes do not
//! hash to its name or do not authenticate (altered) as damaged. What it
//! cannot see: the newest records (the heads) removed together, since nothing
//! references them yet; keep the heads [`verify`] reports somewhere else to
//! detect that. The format is in docs/FORMAT.md ("Audit trail").

use std::collections::{BTreeMap, BTreeSet};

use arca_crypto::ObjectKind;

use crate::{Id, Repository, Result, records};

/// Directory of audit records.
pub const AUDIT_DIR: &str = "audit";

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It did what was asked.
    Success,
    /// It failed (see [`AuditRecord::error`]).
    Failure,
}

/// One operation on the repository (the stored JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// When the operation ended.
    pub time: jiff::Timestamp,
    /// Host it ran on.
    pub hostname: String,
    /// User it ran as.
    pub username: String,
    /// What ran, e.g. `backup`, `restore`, `key add`, `hold release`.
    pub operation: String,
    /// Its arguments, with secrets removed ([`redact_arguments`]).
    pub arguments: Vec<String>,
    /// Snapshots it created, read, held or removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<Id>,
    /// Success or failure.
    pub outcome: Outcome,
    /// The error, for a failure (never containing secrets: no error does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes the operation wrote to the repository's storage.
    pub bytes_written: u64,
    /// Bytes the operation read from the repository's storage.
    pub bytes_read: u64,
    /// The records that were heads of the trail when this one was written.
    pub previous: Vec<Id>,
    /// For a record an erasure sealed again (`prune --erase`, which
    /// destroys the data key it was sealed under): the ID it had before, so
    /// heads kept elsewhere still identify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resealed_from: Option<Id>,
    /// For a record `arca copy` brought from another repository: the
    /// repository and record it was first written as, so copying again (or
    /// along another path) adds it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<RecordOrigin>,
}

/// Where a record was first written: a repository (its config's `id`) and
/// the record's ID there, before any erasure sealed it again.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RecordOrigin {
    /// The repository's ID.
    pub repository: Id,
    /// The record's ID in that repository.
    pub record: Id,
}

impl AuditRecord {
    /// Where this record, stored as `id` in the repository `repository`,
    /// was first written: its `copied_from`, or itself (under the ID it
    /// had before an erasure sealed it again).
    pub fn origin(&self, repository: Id, id: Id) -> RecordOrigin {
        self.copied_from.unwrap_or(RecordOrigin {
            repository,
            record: self.resealed_from.unwrap_or(id),
        })
    }
}

/// What a caller knows of an operation; [`append`] adds the links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// See [`AuditRecord::time`].
    pub time: jiff::Timestamp,
    /// See [`AuditRecord::hostname`].
    pub hostname: String,
    /// See [`AuditRecord::username`].
    pub username: String,
    /// See [`AuditRecord::operation`].
    pub operation: String,
    /// Raw arguments; [`append`] redacts them.
    pub arguments: Vec<String>,
    /// See [`AuditRecord::snapshots`].
    pub snapshots: Vec<Id>,
    /// See [`AuditRecord::outcome`].
    pub outcome: Outcome,
    /// See [`AuditRecord::error`].
    pub error: Option<String>,
    /// See [`AuditRecord::bytes_written`].
    pub bytes_written: u64,
    /// See [`AuditRecord::bytes_read`].
    pub bytes_read: u64,
}

fn decode(repo: &Repository, path: &str, stored: &[u8]) -> Result<AuditRecord> {
    records::decode(repo, ObjectKind::AuditRecord, path, stored)
}

/// Appends a record for `entry`, linked to the current heads; returns its ID.
///
/// Reads every record it has not cached yet to find the heads. Allowed with
/// an append-only key (it only adds).
pub async fn append(repo: &Repository, entry: Entry) -> Result<Id> {
    let loaded = records::load_all(repo, AUDIT_DIR, decode).await?;
    let previous = heads(&loaded);
    let record = AuditRecord {
        time: entry.time,
        hostname: entry.hostname,
        username: entry.username,
        operation: entry.operation,
        arguments: redact_arguments(&entry.arguments),
        snapshots: entry.snapshots,
        outcome: entry.outcome,
        error: entry.error,
        bytes_written: entry.bytes_written,
        bytes_read: entry.bytes_read,
        previous,
        resealed_from: None,
        copied_from: None,
    };
    records::save(repo, ObjectKind::AuditRecord, AUDIT_DIR, &record).await
}

/// Appends to `destination`'s trail every readable record of `source` that
/// `concerns` accepts and that the destination does not hold yet, oldest
/// first; returns how many it added (`arca copy` carries the records of the
/// snapshots it copies, docs/FORMAT.md §18).
///
/// Each copy keeps the record's time, host, user, operation, arguments,
/// snapshots, outcome and byte counts, names where it was first written in
/// `copied_from`, and is linked into the destination's trail: the first to
/// every head, each later one to the one before, so `verify` on the
/// destination stays intact. A record is known by its origin (a record the
/// source itself copied keeps its first origin; a record of the destination
/// that came back is known by its own ID), and each is stored before the
/// next is read, so a run cut off and run again adds every record once.
/// Unreadable source records are left out with a warning (`verify` on the
/// source reports them).
pub async fn copy_records(
    source: &Repository,
    destination: &Repository,
    concerns: impl Fn(&AuditRecord) -> bool,
) -> Result<u64> {
    let source_id = source.config().id;
    let mut wanted = Vec::new();
    for (id, record) in records::load_all(source, AUDIT_DIR, decode).await? {
        match record {
            Ok(record) if concerns(&record) => wanted.push((id, record)),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(record = %id, %error, "not copying an unreadable audit record")
            }
        }
    }
    if wanted.is_empty() {
        return Ok(0);
    }
    wanted.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    let loaded = records::load_all(destination, AUDIT_DIR, decode).await?;
    let destination_id = destination.config().id;
    let mut present: BTreeSet<RecordOrigin> = BTreeSet::new();
    for (id, record) in &loaded {
        present.insert(RecordOrigin {
            repository: destination_id,
            record: *id,
        });
        if let Ok(record) = record {
            present.insert(record.origin(destination_id, *id));
        }
    }
    let mut previous = heads(&loaded);
    let mut added = 0;
    for (id, record) in wanted {
        let origin = record.origin(source_id, id);
        if !present.insert(origin) {
            continue;
        }
        let copy = AuditRecord {
            previous: std::mem::take(&mut previous),
            // An ID of the source's own history: `copied_from` names it.
            resealed_from: None,
            copied_from: Some(origin),
            ..record
        };
        let new_id = records::save(destination, ObjectKind::AuditRecord, AUDIT_DIR, &copy).await?;
        previous = vec![new_id];
        added += 1;
    }
    Ok(added)
}

/// Records referenced by no readable record: the trail's newest ends. An
/// unreadable record counts as a head (its links are unknown).
fn heads(loaded: &[(Id, Result<AuditRecord>)]) -> Vec<Id> {
    let referenced: BTreeSet<Id> = loaded
        .iter()
        .filter_map(|(_, record)| record.as_ref().ok())
        .flat_map(|record| record.previous.iter().copied())
        .collect();
    loaded
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !referenced.contains(id))
        .collect()
}

/// Which records [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only records at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Only records of this operation (`key` also matches `key add` etc.).
    pub operation: Option<String>,
}

impl Filter {
    fn matches(&self, record: &AuditRecord) -> bool {
        self.since.is_none_or(|since| record.time >= since)
            && self.operation.as_deref().is_none_or(|wanted| {
                record.operation == wanted
                    || record
                        .operation
                        .strip_prefix(wanted)
                        .is_some_and(|rest| rest.starts_with(' '))
            })
    }
}

/// The readable records matching `filter`, oldest first. A damaged record
/// is an error naming it (`verify` reports them all instead).
pub async fn list(repo: &Repository, filter: &Filter) -> Result<Vec<(Id, AuditRecord)>> {
    let mut records = Vec::new();
    for (id, record) in records::load_all(repo, AUDIT_DIR, decode).await? {
        let record = record?;
        if filter.matches(&record) {
            records.push((id, record));
        }
    }
    records.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    Ok(records)
}

/// A referenced record that does not exist: something was removed between
/// `after` and `before`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    /// The missing record's ID.
    pub missing: Id,
    /// The record that references it.
    pub referenced_by: Id,
    /// The newest surviving record older than the referencing one, if any.
    pub after: Option<jiff::Timestamp>,
    /// The referencing record's time.
    pub before: jiff::Timestamp,
}

/// A record that exists but does not open: altered, truncated or renamed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damaged {
    /// The record's ID (its file name).
    pub id: Id,
    /// Why it was rejected.
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// Records present (readable or not).
    pub records: usize,
    /// The newest records, referenced by none: keep them elsewhere to detect
    /// the removal of the newest records, which the trail itself cannot show.
    pub heads: Vec<Id>,
    /// Records without predecessors; a trail normally has one (its first).
    pub roots: Vec<Id>,
    /// Referenced records that are missing.
    pub gaps: Vec<Gap>,
    /// Records that are present but do not open.
    pub damaged: Vec<Damaged>,
}

impl Verification {
    /// No gaps, no damage and one start.
    pub fn is_intact(&self) -> bool {
        self.gaps.is_empty() && self.damaged.is_empty() && self.roots.len() <= 1
    }
}

/// Checks the whole trail (reading every record from storage, not the cache).
pub async fn verify(repo: &Repository) -> Result<Verification> {
    let loaded = records::load_all(&repo.without_cache(), AUDIT_DIR, decode).await?;
    Ok(verify_loaded(&loaded))
}

/// The decision behind [`verify`], on loaded records.
pub fn verify_loaded(loaded: &[(Id, Result<AuditRecord>)]) -> Verification {
    let present: BTreeSet<Id> = loaded.iter().map(|(id, _)| *id).collect();
    let readable: BTreeMap<Id, &AuditRecord> = loaded
        .iter()
        .filter_map(|(id, record)| record.as_ref().ok().map(|record| (*id, record)))
        .collect();
    let times: BTreeSet<jiff::Timestamp> = readable.values().map(|record| record.time).collect();
    let mut gaps = Vec::new();
    for (id, record) in &readable {
        for missing in record.previous.iter().filter(|p| !present.contains(p)) {
            gaps.push(Gap {
                missing: *missing,
                referenced_by: *id,
                after: times.range(..record.time).next_back().copied(),
                before: record.time,
            });
        }
    }
    gaps.sort_by(|a, b| a.before.cmp(&b.before).then(a.missing.cmp(&b.missing)));
    let damaged = loaded
        .iter()
        .filter_map(|(id, record)| {
            record.as_ref().err().map(|error| Damaged {
                id: *id,
                reason: error.to_string(),
            })
        })
        .collect();
    Verification {
        records: loaded.len(),
        heads: heads(loaded),
        roots: readable
            .iter()
            .filter(|(_, record)| record.previous.is_empty())
            .map(|(id, _)| *id)
            .collect(),
        gaps,
        damaged,
    }
}

/// Replaced for any secret value.
const REDACTED: &str = "<redacted>";

/// Option names whose value is secret (a password command may embed the password).
const SECRET_OPTIONS: &[&str] = &["password-command", "secret", "token", "credential"];

/// Arguments with secrets removed: the values of options naming a password
/// command, secret, token or credential (`--opt VALUE` or `--opt=VALUE`),
/// of `-o KEY=VALUE` backend options with such a key, and any user
/// information in URLs (`s3:https://user:pass@host/…`).
pub fn redact_arguments(arguments: &[String]) -> Vec<String> {
    let is_secret_name = |name: &str| {
        let name = name.to_ascii_lowercase();
        SECRET_OPTIONS.iter().any(|secret| name.contains(secret))
            || name.ends_with("key")
            || name.contains("password")
    };
    let mut out = Vec::with_capacity(arguments.len());
    let mut redact_next = false;
    for argument in arguments {
        // A value never starts with a dash; an option after a secret
        // option without its value is treated as an option.
        if std::mem::take(&mut redact_next) && !argument.starts_with('-') {
            out.push(REDACTED.to_owned());
            continue;
        }
        if let Some(option) = argument.strip_prefix("--") {
            match option.split_once('=') {
                Some((name, _)) if is_value_secret(name) => {
                    out.push(format!("--{name}={REDACTED}"));
                    continue;
                }
                None if is_value_secret(option) => redact_next = true,
                _ => {}
            }
        } else if let Some((key, _)) = argument.split_once('=')
            && !key.starts_with('-')
            && is_secret_name(key)
        {
            out.push(format!("{key}={REDACTED}"));
            continue;
        }
        out.push(redact_userinfo(argument));
    }
    out
}

/// Whether `--name`'s value is secret. A password *file* names where the
/// secret is, not the secret, and stays readable.
fn is_value_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !name.ends_with("-file") && SECRET_OPTIONS.iter().any(|secret| name.contains(secret))
}

/// `scheme://user:pass@host…` → `scheme://<redacted>@host…`.
fn redact_userinfo(argument: &str) -> String {
    if let Some(scheme_end) = argument.find("://") {
        let rest = &argument[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}{REDACTED}{}", &argument[..scheme_end + 3], &rest[at..]);
        }
    }
    argument.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let redacted = redact_arguments(&strings(&[
            "-r",
            "s3:https://AKIA:hunter2@minio:9000/bucket",
            "--password-command",
            "echo hunter2",
            "--password-command=echo hunter2",
            "--password-file",
            "/run/secrets/RESTIC_PASSWORD",
            "-o",
            "s3.secret_key=hunter2",
            "-o",
            "connections=4",
            "--tag",
            "daily",
            "/data",
        ]));
        assert_eq!(
            redacted,
            strings(&[
                "-r",
                "s3:https://<redacted>@minio:9000/bucket",
                "--password-command",
                "<redacted>",
                "--password-command=<redacted>",
                "--password-file",
                "/run/secrets/RESTIC_PASSWORD",
                "-o",
                "s3.secret_key=<redacted>",
                "-o",
                "connections=4",
                "--tag",
                "daily",
                "/data",
            ])
        );
    }

    proptest! {
        /// Whatever surrounds it, a secret given to a secret option never
        /// survives redaction.
        #[test]
        fn secret_values_never_survive(
            before in proptest::collection::vec("[a-z/-]{0,8}", 0..4),
            secret in "[A-Za-z0-9]{12,20}",
            form in 0usize..4,
            after in proptest::collection::vec("[a-z/-]{0,8}", 0..4),
        ) {
            let mut args: Vec<String> = before;
            match form {
                0 => args.extend(["--password-command".to_owned(), format!("echo {secret}")]),
                1 => args.push(format!("--password-command=echo {secret}")),
                2 => args.extend(["-o".to_owned(), format!("s3.secret_key={secret}")]),
                _ => args.push(format!("s3:https://user:{secret}@host/bucket")),
            }
            args.extend(after);
            let redacted = redact_arguments(&args);
            prop_assert_eq!(redacted.len(), args.len());
            prop_assert!(redacted.iter().all(|a| !a.contains(&secret)), "{:?}", redacted);
        }
    }

    fn record(time: i64, previous: &[Id]) -> AuditRecord {
        AuditRecord {
            time: jiff::Timestamp::from_second(time).unwrap(),
            hostname: "h".into(),
            username: "u".into(),
            operation: "backup".into(),
            arguments: vec![],
            snapshots: vec![],
            outcome: Outcome::Success,
            error: None,
            bytes_written: 0,
            bytes_read: 0,
            previous: previous.to_vec(),
            resealed_from: None,
            copied_from: None,
        }
    }

    #[test]
    fn forks_join_and_gaps_are_dated() {
        let (a, b, c, d, e) = (
            Id([1; 32]),
            Id([2; 32]),
            Id([3; 32]),
            Id([4; 32]),
            Id([5; 32]),
        );
        // a ← b, a ← c (two writers at once), d joins both, e follows d.
        let loaded = vec![
            (a, Ok(record(10, &[]))),
            (b, Ok(record(20, &[a]))),
            (c, Ok(record(21, &[a]))),
            (d, Ok(record(30, &[b, c]))),
            (e, Ok(record(40, &[d]))),
        ];
        let intact = verify_loaded(&loaded);
        assert!(intact.is_intact(), "{intact:?}");
        assert_eq!(intact.heads, [e]);
        assert_eq!(intact.roots, [a]);

        let without_c: Vec<_> = loaded.into_iter().filter(|(id, _)| *id != c).collect();
        let gap = verify_loaded(&without_c);
        assert!(!gap.is_intact());
        assert_eq!(
            gap.gaps,
            [Gap {
                missing: c,
                referenced_by: d,
                after: Some(jiff::Timestamp::from_second(20).unwrap()),
                before: jiff::Timestamp::from_second(30).unwrap(),
            }]
        );
    }

    #[test]
    fn a_record_is_known_by_where_it_was_first_written() {
        let (here, there, id, old) = (Id([1; 32]), Id([2; 32]), Id([3; 32]), Id([4; 32]));
        let mut own = record(1, &[]);
        assert_eq!(
            own.origin(here, id),
            RecordOrigin {
                repository: here,
                record: id
            }
        );
        // Sealed again by an erasure: still the record it was.
        own.resealed_from = Some(old);
        assert_eq!(own.origin(here, id).record, old);
        // Copied from elsewhere: where it came from, wherever it is now.
        let first = RecordOrigin {
            repository: there,
            record: old,
        };
        own.copied_from = Some(first);
        assert_eq!(own.origin(here, id), first);
    }

    #[test]
    fn operations_filter_by_word() {
        let mut key_add = record(1, &[]);
        key_add.operation = "key add".into();
        let wanted = |operation: &str| Filter {
            since: None,
            operation: Some(operation.into()),
        };
        assert!(wanted("key").matches(&key_add));
        assert!(wanted("key add").matches(&key_add));
        assert!(!wanted("ke").matches(&key_add));
        assert!(!wanted("backup").matches(&key_add));
        let since = Filter {
            since: Some(jiff::Timestamp::from_second(2).unwrap()),
            operation: None,
        };
        assert!(!since.matches(&key_add));
    }
}
