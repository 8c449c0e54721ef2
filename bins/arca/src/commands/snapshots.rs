//! `arca snapshots`: list snapshots, oldest first. Also home of the snapshot
//! JSON view shared by `ls` and `cat snapshot`.

use arca_repo::Id;
use arca_repo::snapshot::{Snapshot, SnapshotSummary};
use serde::Serialize;

use crate::Exit;
use crate::context::{AnyRepository, Context};
use crate::output::Output;

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
    print_table(output, &snapshots, None)?;
    Ok(Exit::Success)
}

/// Prints snapshots as restic's table, with a count at the end. With
/// `reasons` (one list per snapshot, as `forget` keeps them) a Reasons
/// column shows why each is kept.
pub(crate) fn print_table(
    output: Output,
    snapshots: &[(Id, Snapshot)],
    reasons: Option<&[Vec<String>]>,
) -> anyhow::Result<()> {
    let reason_width = reasons.map(|reasons| {
        reasons
            .iter()
            .flatten()
            .map(String::len)
            .chain(["Reasons".len()])
            .max()
            .unwrap_or_default()
    });
    let reason_column =
        |text: &str| reason_width.map_or(String::new(), |w| format!("{text:<w$}  "));
    let header = format!(
        "{:<8}  {:<19}  {:<12}  {:<12}  {}Paths",
        "ID",
        "Time",
        "Host",
        "Tags",
        reason_column("Reasons")
    );
    let rule = "-".repeat(header.len() + 20);
    output.result(&header)?;
    output.result(&rule)?;
    let indent = 59 + reason_width.map_or(0, |w| w + 2);
    for (number, (id, snapshot)) in snapshots.iter().enumerate() {
        let kept_for = reasons.and_then(|reasons| reasons.get(number));
        let mut paths = snapshot.paths.iter().map(String::as_str);
        let mut why = kept_for.into_iter().flatten().map(String::as_str);
        output.result(format_args!(
            "{:<8}  {:<19}  {:<12}  {:<12}  {}{}",
            id.short(),
            local_time(snapshot),
            snapshot.hostname,
            snapshot.tags.join(","),
            reason_column(why.next().unwrap_or("")),
            paths.next().unwrap_or(""),
        ))?;
        loop {
            match (why.next(), paths.next()) {
                (None, None) => break,
                (Some(reason), path) => output.result(format_args!(
                    "{:59}{}{}",
                    "",
                    reason_column(reason),
                    path.unwrap_or("")
                ))?,
                (None, Some(path)) => output.result(format_args!("{:indent$}{path}", ""))?,
            }
        }
    }
    output.result(&rule)?;
    output.result(format_args!(
        "{} snapshot{}",
        snapshots.len(),
        if snapshots.len() == 1 { "" } else { "s" }
    ))
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
    /// The snapshot this one was copied or rewritten from (restic omits it when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<Id>,
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
            original: snapshot.original,
            tree: snapshot.tree,
            program_version: &snapshot.program_version,
            summary: snapshot.summary.as_ref(),
        }
    }
}
