//! `arca find`: the files whose name (or path) matches a glob, per snapshot.

use arca_repo::Id;
use arca_repo::find::{Found, Matcher, TreeReader, find};
use arca_repo::forget::snapshots_for;
use arca_repo::snapshot::Snapshot;
use arca_repo::tree::NodeType;
use serde::Serialize;

use crate::Exit;
use crate::commands::forget::FilterArgs;
use crate::commands::snapshots::local_time;
use crate::context::{AnyRepository, Context, restic_error};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Glob patterns: without '/' matched against names, with '/' against whole paths
    #[arg(required = true, value_name = "PATTERN")]
    patterns: Vec<String>,
    /// Only search these snapshots (repeatable) [default: all matching the filters]
    #[arg(short = 's', long = "snapshot", value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Ignore case in the patterns
    #[arg(short = 'i', long)]
    ignore_case: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(Debug, Serialize)]
struct SnapshotMatches<'a> {
    matches: Vec<MatchJson<'a>>,
    hits: usize,
    snapshot: String,
}

#[derive(Debug, Serialize)]
struct MatchJson<'a> {
    path: &'a str,
    #[serde(rename = "type")]
    node_type: NodeType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: jiff::Timestamp,
}

impl<'a> MatchJson<'a> {
    fn new(found: &'a Found) -> Self {
        MatchJson {
            path: &found.path,
            node_type: found.node.node_type,
            mode: found.node.mode,
            uid: found.node.uid,
            gid: found.node.gid,
            size: found.node.size,
            mtime: jiff::Timestamp::from_nanosecond(i128::from(found.node.mtime_ns))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        }
    }
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let matcher = Matcher::new(&args.patterns, args.ignore_case)?;
    let filter = args.filter.to_filter();
    match context.open_any_repository().await? {
        AnyRepository::Arca(opened) => {
            let repository = &opened.repository;
            let snapshots = snapshots_for(repository, &args.snapshots, &filter).await?;
            let index = repository.load_index().await?;
            search(repository, &index, &snapshots, &matcher, context).await
        }
        AnyRepository::Restic(restic) => {
            let snapshots = arca_restic::migrate::select(&restic, &args.snapshots, &filter)
                .await
                .map_err(restic_error)?;
            let index = restic.load_index().await.map_err(restic_error)?;
            search(&restic, &index, &snapshots, &matcher, context).await
        }
    }
}

async fn search<R: TreeReader>(
    repository: &R,
    index: &R::Index,
    snapshots: &[(Id, Snapshot)],
    matcher: &Matcher,
    context: &Context,
) -> anyhow::Result<Exit> {
    let out = context.output;
    let mut results = Vec::new();
    for (id, snapshot) in snapshots {
        let found = find(repository, index, &snapshot.tree, matcher).await?;
        if found.is_empty() {
            continue;
        }
        if out.is_json() {
            results.push((id, found));
        } else {
            out.result(format_args!(
                "Found matching entries in snapshot {} from {}",
                id.short(),
                local_time(snapshot)
            ))?;
            for hit in &found {
                out.result(&hit.path)?;
            }
            out.result("")?;
        }
    }
    if out.is_json() {
        let views: Vec<SnapshotMatches<'_>> = results
            .iter()
            .map(|(id, found)| SnapshotMatches {
                matches: found.iter().map(MatchJson::new).collect(),
                hits: found.len(),
                snapshot: id.to_hex(),
            })
            .collect();
        out.json(&views)?;
    }
    Ok(Exit::Success)
}
