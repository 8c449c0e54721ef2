//! `arca tag`: add, remove or set snapshot tags (rewrites the snapshots).

use arca_repo::forget::snapshots_for;
use arca_repo::rewrite::{Rewritten, TagChange, change_tags};
use serde::Serialize;

use crate::Exit;
use crate::commands::forget::{FilterArgs, tag_list};
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Snapshots to change (IDs, unique prefixes or "latest") [default: all matching the filters]
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Tags to add (TAG[,TAG...]; repeatable)
    #[arg(long, value_name = "TAGS")]
    add: Vec<String>,
    /// Tags to remove (TAG[,TAG...]; repeatable)
    #[arg(long, value_name = "TAGS")]
    remove: Vec<String>,
    /// Replace all tags with these (TAG[,TAG...]; repeatable; '' clears them)
    #[arg(long, value_name = "TAGS")]
    set: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

/// The `--json` result (schema in docs/CLI.md).
#[derive(Debug, Serialize)]
struct TagJson<'a> {
    message_type: &'static str,
    changed_snapshots: &'a [Rewritten],
}

fn tags(lists: &[String]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|list| tag_list(list))
        .filter(|t| !t.is_empty())
        .collect()
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let change = TagChange {
        set: (!args.set.is_empty()).then(|| tags(&args.set)),
        add: tags(&args.add),
        remove: tags(&args.remove),
    };
    change.validate()?;
    let opened = context.open_repository().await?;
    let repository = &opened.repository;
    let snapshots = snapshots_for(repository, &args.snapshots, &args.filter.to_filter()).await?;
    let rewritten = change_tags(repository, &snapshots, &change, jiff::Timestamp::now()).await?;
    let new: Vec<_> = rewritten.iter().map(|r| r.new).collect();
    context.audit.note_snapshots(&new);
    let output = context.output;
    if output.is_json() {
        output.json(&TagJson {
            message_type: "summary",
            changed_snapshots: &rewritten,
        })?;
    } else {
        for r in &rewritten {
            output.info(format_args!(
                "old snapshot ID: {} -> new snapshot ID: {}",
                r.old, r.new
            ))?;
        }
        output.result(format_args!("modified {} snapshot(s)", rewritten.len()))?;
    }
    Ok(Exit::Success)
}
