//! `arca hold`: legal holds on snapshots, which forget and prune respect.

use anyhow::Context as _;
use arca_repo::hold::{self, Actor};
use arca_repo::{Id, Repository};

use crate::Exit;
use crate::context::{Context, hostname, username};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Place a hold: forget and prune keep these snapshots and their data
    Add {
        /// Snapshot IDs (or unique prefixes, or `latest`)
        #[arg(required = true, value_name = "SNAPSHOT")]
        snapshots: Vec<String>,
        /// Why: the case, audit or request it is for (recorded)
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// End the hold by itself at this time: RFC 3339 (2027-03-31T00:00:00Z)
        /// or a date (2027-03-31, midnight UTC) [default: until released]
        #[arg(long, value_name = "DATE", value_parser = parse_until)]
        until: Option<jiff::Timestamp>,
    },
    /// List the holds in force (with --all, every placement and release)
    List {
        /// Show the whole history, released and expired holds included
        #[arg(long)]
        all: bool,
    },
    /// Release the holds on these snapshots (recorded; the history stays)
    Release {
        /// Snapshot IDs (or unique prefixes)
        #[arg(required = true, value_name = "SNAPSHOT")]
        snapshots: Vec<String>,
        /// Why the hold ends (recorded)
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

/// `--until`: a timestamp, or a date meaning its midnight in UTC.
fn parse_until(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp);
    }
    text.parse::<jiff::civil::Date>()
        .and_then(|date| date.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|zoned| zoned.timestamp())
        .map_err(|_| {
            format!("{text:?} is neither an RFC 3339 time (2027-03-31T00:00:00Z) nor a date (2027-03-31)")
        })
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let opened = context.open_repository().await?;
    let repo = &opened.repository;
    let output = context.output;
    let actor = Actor {
        hostname: hostname(),
        username: username(),
        now: jiff::Timestamp::now(),
    };
    match args.action {
        Action::Add {
            snapshots,
            reason,
            until,
        } => {
            let ids = resolve(repo, &snapshots).await?;
            context.audit.note_snapshots(&ids);
            let placed = hold::place(repo, &ids, &reason, until, &actor).await?;
            for (snapshot, record) in ids.iter().zip(&placed) {
                if output.is_json() {
                    output.json(&serde_json::json!({
                        "message_type": "hold_placed", "snapshot": snapshot, "hold": record, "until": until,
                    }))?;
                } else {
                    output.info(format_args!(
                        "placed hold {} on snapshot {}{}",
                        record.short(),
                        snapshot.short(),
                        until.map_or(String::new(), |until| format!(" until {until}"))
                    ))?;
                }
            }
        }
        Action::Release { snapshots, reason } => {
            let ids = resolve(repo, &snapshots).await?;
            context.audit.note_snapshots(&ids);
            hold::release(repo, &ids, &reason, &actor).await?;
            for snapshot in &ids {
                if output.is_json() {
                    output.json(
                        &serde_json::json!({"message_type": "hold_released", "snapshot": snapshot}),
                    )?;
                } else {
                    output.info(format_args!(
                        "released the hold on snapshot {}",
                        snapshot.short()
                    ))?;
                }
            }
        }
        Action::List { all: false } => {
            let holds = hold::active_holds(repo, actor.now).await?;
            if output.is_json() {
                output.json(&holds.values().collect::<Vec<_>>())?;
                return Ok(Exit::Success);
            }
            output.result(format_args!(
                "{:<8}  {:<20}  {:<20}  {:<16}  Reason",
                "Snapshot", "Until", "Placed", "By"
            ))?;
            for held in holds.values() {
                let record = &held.record;
                output.result(format_args!(
                    "{:<8}  {:<20}  {:<20}  {:<16}  {}",
                    record.snapshot.short(),
                    record
                        .until
                        .map_or("until released".to_owned(), |t| t.to_string()),
                    record.time.to_string(),
                    format!("{}@{}", record.username, record.hostname),
                    record.reason
                ))?;
            }
            output.result(format_args!("{} held snapshot(s)", holds.len()))?;
        }
        Action::List { all: true } => {
            let mut history: Vec<_> = hold::history(repo).await?.into_iter().collect();
            history.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
            if output.is_json() {
                let records: Vec<_> = history
                    .iter()
                    .map(|(id, record)| hold::Hold {
                        id: *id,
                        record: record.clone(),
                    })
                    .collect();
                output.json(&records)?;
                return Ok(Exit::Success);
            }
            for (id, record) in &history {
                output.result(format_args!(
                    "{}  {:<7}  {}  {}  {}@{}  {}",
                    id.short(),
                    format!("{:?}", record.action).to_lowercase(),
                    record.snapshot.short(),
                    record.time,
                    record.username,
                    record.hostname,
                    record.reason
                ))?;
            }
        }
    }
    Ok(Exit::Success)
}

async fn resolve(repo: &Repository, specs: &[String]) -> anyhow::Result<Vec<Id>> {
    let mut ids = Vec::with_capacity(specs.len());
    for spec in specs {
        let (id, _) = repo
            .find_snapshot(spec)
            .await
            .with_context(|| format!("snapshot {spec}"))?;
        ids.push(id);
    }
    Ok(ids)
}
