//! `arca audit`: list and verify the repository's audit trail; and the
//! [`Recorder`] through which every command that opens a repository appends
//! its record (once, in `commands::run`, after the command ends).

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use arca_repo::audit::{self, Entry, Filter, Outcome};
use arca_repo::{Id, Repository};
use arca_store::RequestCounters;

use crate::Exit;
use crate::context::{Context, hostname, username};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only records at or after this time (RFC 3339, or a date meaning its midnight UTC)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<jiff::Timestamp>,
    /// Only records of this operation (`key` includes `key add`, `key remove`, …)
    #[arg(long, value_name = "OP")]
    operation: Option<String>,
    /// Check the trail instead: report removed records (as gaps between two
    /// times) and altered ones; exit 1 if any
    #[arg(long, conflicts_with_all = ["since", "operation"])]
    verify: bool,
}

fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp);
    }
    text.parse::<jiff::civil::Date>()
        .and_then(|date| date.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|zoned| zoned.timestamp())
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a date (2027-03-31)"))
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let opened = context.open_repository().await?;
    let repo = &opened.repository;
    let output = context.output;
    if args.verify {
        let verification = audit::verify(repo).await?;
        if output.is_json() {
            output.json(&verification)?;
        } else {
            for gap in &verification.gaps {
                output.result(format_args!(
                    "missing record {} (removed) between {} and {}, referenced by {}",
                    gap.missing.short(),
                    gap.after
                        .map_or("the start".to_owned(), |after| after.to_string()),
                    gap.before,
                    gap.referenced_by.short()
                ))?;
            }
            for damaged in &verification.damaged {
                output.result(format_args!(
                    "damaged record {} (altered): {}",
                    damaged.id.short(),
                    damaged.reason
                ))?;
            }
            if verification.roots.len() > 1 {
                output.result(format_args!(
                    "{} records start a trail of their own (a trail has one start): {}",
                    verification.roots.len(),
                    short_ids(&verification.roots)
                ))?;
            }
            output.result(format_args!(
                "{} records, {}; newest: {}",
                verification.records,
                if verification.is_intact() {
                    "no gaps or alterations found"
                } else {
                    "the trail is NOT intact"
                },
                short_ids(&verification.heads)
            ))?;
        }
        return Ok(if verification.is_intact() {
            Exit::Success
        } else {
            Exit::Failure
        });
    }
    let filter = Filter {
        since: args.since,
        operation: args.operation,
    };
    let records = audit::list(repo, &filter).await?;
    if output.is_json() {
        let views: Vec<_> = records
            .iter()
            .map(|(id, record)| serde_json::json!({"id": id, "record": record}))
            .collect();
        output.json(&views)?;
        return Ok(Exit::Success);
    }
    for (_, record) in &records {
        output.result(format_args!(
            "{}  {}@{}  {:<7}  {}{}  {}{}",
            record.time,
            record.username,
            record.hostname,
            format!("{:?}", record.outcome).to_lowercase(),
            record.operation,
            if record.snapshots.is_empty() {
                String::new()
            } else {
                format!(" [{}]", short_ids(&record.snapshots))
            },
            record.arguments.join(" "),
            record.copied_from.map_or(String::new(), |origin| format!(
                "  (copied from repository {})",
                origin.repository.short()
            )),
        ))?;
    }
    Ok(Exit::Success)
}

fn short_ids(ids: &[Id]) -> String {
    ids.iter().map(Id::short).collect::<Vec<_>>().join(", ")
}

/// What one command run did, collected while it runs and recorded when it ends.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `backup`, `key add`, …; `None` records nothing.
    operation: Option<String>,
    /// The repository the command opened, if it opened one, and its
    /// storage's request counters (the record's byte counts).
    repository: Option<(Repository, Arc<RequestCounters>)>,
    snapshots: Vec<Id>,
}

impl Recorder {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Names the operation being run; reading the audit trail is not recorded.
    pub(crate) fn set_operation(&self, operation: String) {
        if operation != "audit" {
            self.state().operation = Some(operation);
        }
    }

    /// The command opened `repository` (called by `Context::open_repository`).
    pub(crate) fn opened(&self, repository: &Repository, requests: &Arc<RequestCounters>) {
        self.state().repository = Some((repository.clone(), Arc::clone(requests)));
    }

    /// The command destroyed the repository it opened (there is nothing
    /// left to record into), or appended its own record (`drill`, with its
    /// measurements).
    pub(crate) fn forget_repository(&self) {
        self.state().repository = None;
    }

    /// Snapshots the command created, read or changed.
    pub(crate) fn note_snapshots(&self, ids: &[Id]) {
        self.state().snapshots.extend_from_slice(ids);
    }

    /// Appends the record of a command that opened a repository. A storage
    /// that refuses the write (read-only credentials, a full disk) does not
    /// fail the command: it prints a warning that the access is unrecorded.
    pub(crate) async fn finish(&self, result: &anyhow::Result<Exit>, json: bool) {
        let (operation, (repository, requests), snapshots) = {
            let mut state = self.state();
            let (Some(operation), Some(opened)) = (state.operation.take(), state.repository.take())
            else {
                return;
            };
            (operation, opened, std::mem::take(&mut state.snapshots))
        };
        let traffic = requests.snapshot();
        let (outcome, error) = match result {
            Ok(Exit::Success | Exit::IncompleteBackup) => (Outcome::Success, None),
            Ok(exit) => (Outcome::Failure, Some(format!("exit code {}", *exit as u8))),
            Err(error) => (Outcome::Failure, Some(format!("{error:#}"))),
        };
        let entry = Entry {
            time: jiff::Timestamp::now(),
            hostname: hostname(),
            username: username(),
            operation,
            arguments: std::env::args().skip(1).collect(),
            snapshots,
            outcome,
            error,
            bytes_written: traffic.bytes_up,
            bytes_read: traffic.bytes_down,
        };
        if let Err(error) = audit::append(&repository, entry).await {
            let mut stderr = std::io::stderr().lock();
            let message = format!("could not record this access in the audit trail: {error}");
            let _ = if json {
                writeln!(
                    stderr,
                    "{}",
                    serde_json::json!({"message_type": "warning", "message": message})
                )
            } else {
                writeln!(stderr, "warning: {message}")
            };
        }
    }
}
