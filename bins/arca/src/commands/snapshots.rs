//! `arca snapshots`: list snapshots, oldest first. Also home of the snapshot
//! JSON view shared by `ls` and `cat snapshot`.

use arca_repo::Id;
use arca_repo::snapshot::{Snapshot, SnapshotSummary};
use serde::Serialize;

use crate::Exit;
use crate::context::{AnyRepository, Context};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_args: Args, context: &Context) -> anyhow::Result<Exit> {
    let snapshots = match context.open_any_repository().await? {
        AnyRepository::Arca(opened) => opened.repository.list_snapshots().await?,
        AnyRepository::Restic(restic) => restic.arca_snapshots().await?,
    };
    let output = context.output;
    if output.is_json() {
        let views: Vec<_> = snapshots
            .iter()
            .map(|(id, snapshot)| SnapshotJson::new(id, snapshot))
            .collect();
        output.json(&views)?;
        return Ok(Exit::Success);
    }
    let header = format!(
        "{:<8}  {:<19}  {:<12}  {:<12}  Paths",
        "ID", "Time", "Host", "Tags"
    );
    let rule = "-".repeat(header.len() + 20);
    output.result(&header)?;
    output.result(&rule)?;
    for (id, snapshot) in &snapshots {
        let mut paths = snapshot.paths.iter();
        output.result(format_args!(
            "{:<8}  {:<19}  {:<12}  {:<12}  {}",
            id.short(),
            local_time(snapshot),
            snapshot.hostname,
            snapshot.tags.join(","),
            paths.next().map_or("", String::as_str),
        ))?;
        for path in paths {
            output.result(format_args!("{:59}{path}", ""))?;
        }
    }
    output.result(&rule)?;
    output.result(format_args!(
        "{} snapshot{}",
        snapshots.len(),
        if snapshots.len() == 1 { "" } else { "s" }
    ))?;
    Ok(Exit::Success)
}

/// When the snapshot was taken, in the UTC offset of the machine that took it.
pub(crate) fn local_time(snapshot: &Snapshot) -> String {
    let offset = jiff::tz::Offset::from_seconds(snapshot.time_offset_seconds)
        .unwrap_or(jiff::tz::Offset::UTC);
    snapshot
        .time
        .to_zoned(jiff::tz::TimeZone::fixed(offset))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A snapshot as printed by `--json` (schema in docs/CLI.md; keep it stable).
#[derive(Debug, Serialize)]
pub(crate) struct SnapshotJson<'a> {
    id: Id,
    short_id: String,
    time: jiff::Timestamp,
    hostname: &'a str,
    username: &'a str,
    uid: u32,
    gid: u32,
    paths: &'a [String],
    tags: &'a [String],
    excludes: &'a [String],
    parent: Option<Id>,
    tree: Id,
    program_version: &'a str,
    summary: Option<&'a SnapshotSummary>,
}

impl<'a> SnapshotJson<'a> {
    pub(crate) fn new(id: &Id, snapshot: &'a Snapshot) -> Self {
        SnapshotJson {
            id: *id,
            short_id: id.short(),
            time: snapshot.time,
            hostname: &snapshot.hostname,
            username: &snapshot.username,
            uid: snapshot.uid,
            gid: snapshot.gid,
            paths: &snapshot.paths,
            tags: &snapshot.tags,
            excludes: &snapshot.excludes,
            parent: snapshot.parent,
            tree: snapshot.tree,
            program_version: &snapshot.program_version,
            summary: snapshot.summary.as_ref(),
        }
    }
}
