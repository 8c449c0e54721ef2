//! `arca forget`: remove snapshots by a retention policy (restic's
//! `--keep-*` flags, per `--group-by` group) or by ID.

use arca_repo::forget::{self, ForgetGroup, ForgetOptions, ForgetPlan};
use arca_repo::retention::{Count, Duration, RetentionPolicy};
use arca_repo::select::{GroupBy, SnapshotFilter};
use arca_repo::{Id, Repository};
use serde::Serialize;

use crate::Exit;
use crate::commands::snapshots::{SnapshotJson, print_table};
use crate::context::Context;
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Snapshots to remove (IDs, unique prefixes or "latest") instead of a policy
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Allow removing every snapshot a filter selects when no --keep-* is given
    #[arg(long)]
    unsafe_allow_remove_all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Group by host, paths and/or tags, comma-separated ('' disables grouping)
    /// [default: host,paths]
    #[arg(short = 'g', long, value_name = "GROUP", value_parser = parse_group_by)]
    group_by: Option<GroupBy>,
    /// Print what would be removed; remove nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Then run `arca prune` (with the prune options below)
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    prune_options: crate::commands::prune::PruneFlags,
}

/// restic's `--keep-*` retention flags, shared by `forget` and `report`
/// (which checks conformance with a policy).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct PolicyArgs {
    /// Keep the last N snapshots ('unlimited' keeps all)
    #[arg(short = 'l', long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    keep_last: Option<Count>,
    /// Keep the last N hourly snapshots ('unlimited' keeps all hourly snapshots)
    #[arg(short = 'H', long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    keep_hourly: Option<Count>,
    /// Keep the last N daily snapshots ('unlimited' keeps all daily snapshots)
    #[arg(short = 'd', long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    keep_daily: Option<Count>,
    /// Keep the last N weekly snapshots ('unlimited' keeps all weekly snapshots)
    #[arg(short = 'w', long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    keep_weekly: Option<Count>,
    /// Keep the last N monthly snapshots ('unlimited' keeps all monthly snapshots)
    #[arg(short = 'm', long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    keep_monthly: Option<Count>,
    /// Keep the last N yearly snapshots ('unlimited' keeps all yearly snapshots)
    #[arg(short = 'y', long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    keep_yearly: Option<Count>,
    /// Keep snapshots newer than DURATION (e.g. 1y5m7d2h) relative to the latest snapshot
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    keep_within: Option<Duration>,
    /// Keep hourly snapshots newer than DURATION relative to the latest snapshot
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    keep_within_hourly: Option<Duration>,
    /// Keep daily snapshots newer than DURATION relative to the latest snapshot
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    keep_within_daily: Option<Duration>,
    /// Keep weekly snapshots newer than DURATION relative to the latest snapshot
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    keep_within_weekly: Option<Duration>,
    /// Keep monthly snapshots newer than DURATION relative to the latest snapshot
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    keep_within_monthly: Option<Duration>,
    /// Keep yearly snapshots newer than DURATION relative to the latest snapshot
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    keep_within_yearly: Option<Duration>,
    /// Keep snapshots with all of these tags (TAG[,TAG...]; repeat for alternatives; '' = untagged)
    #[arg(long, value_name = "TAGLIST")]
    keep_tag: Vec<String>,
}

impl PolicyArgs {
    /// The retention policy the flags give (empty when none is given).
    pub(crate) fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_within_hourly: self.keep_within_hourly,
            keep_within_daily: self.keep_within_daily,
            keep_within_weekly: self.keep_within_weekly,
            keep_within_monthly: self.keep_within_monthly,
            keep_within_yearly: self.keep_within_yearly,
            keep_tags: self.keep_tag.iter().map(|list| tag_list(list)).collect(),
        }
    }
}

/// restic's snapshot filter flags, shared by the commands that select
/// snapshots.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct FilterArgs {
    /// Only consider snapshots of this host (repeat for several)
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Only consider snapshots with all of these tags (TAG[,TAG...]; repeat for alternatives)
    #[arg(long = "tag", value_name = "TAGLIST")]
    tags: Vec<String>,
    /// Only consider snapshots that include this path (repeat: all must be included)
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
}

impl FilterArgs {
    pub(crate) fn to_filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: self.hosts.clone(),
            tags: self.tags.iter().map(|list| tag_list(list)).collect(),
            paths: self.paths.clone(),
        }
    }

    /// The flag names given, for conflict messages.
    fn given(&self) -> Option<&'static str> {
        if !self.hosts.is_empty() {
            Some("--host")
        } else if !self.tags.is_empty() {
            Some("--tag")
        } else if !self.paths.is_empty() {
            Some("--path")
        } else {
            None
        }
    }
}

/// restic's tag list: comma-separated, whitespace trimmed; `''` is the list
/// holding the empty tag, which matches untagged snapshots.
pub(crate) fn tag_list(text: &str) -> Vec<String> {
    text.split(',').map(|tag| tag.trim().to_owned()).collect()
}

fn parse_count(text: &str) -> Result<Count, String> {
    text.parse().map_err(|e: arca_repo::Error| e.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse().map_err(|e: arca_repo::Error| e.to_string())
}

fn parse_group_by(text: &str) -> Result<GroupBy, String> {
    text.parse().map_err(|e: arca_repo::Error| e.to_string())
}

impl Args {
    fn policy(&self) -> RetentionPolicy {
        self.policy.policy()
    }

    /// Snapshot IDs select exactly what to remove, so no flag that selects
    /// or keeps snapshots may come with them.
    fn check_ids_alone(&self) -> Result<(), arca_repo::Error> {
        let policy = self.policy();
        let other = if policy != RetentionPolicy::default() {
            Some("--keep-*")
        } else if self.unsafe_allow_remove_all {
            Some("--unsafe-allow-remove-all")
        } else if self.group_by.is_some() {
            Some("--group-by")
        } else {
            self.filter.given()
        };
        match other {
            Some(flag) => Err(arca_repo::Error::ConflictingOptions {
                first: "snapshot IDs".into(),
                second: flag.into(),
            }),
            None => Ok(()),
        }
    }
}

/// One group as `--json` prints it: restic's `ForgetGroup`.
#[derive(Debug, Serialize)]
struct GroupJson<'a> {
    tags: Option<&'a [String]>,
    host: Option<&'a str>,
    paths: Option<&'a [String]>,
    keep: Vec<SnapshotJson<'a>>,
    remove: Vec<SnapshotJson<'a>>,
    reasons: Vec<ReasonJson<'a>>,
}

#[derive(Debug, Serialize)]
struct ReasonJson<'a> {
    snapshot: SnapshotJson<'a>,
    matches: &'a [String],
}

impl<'a> GroupJson<'a> {
    fn new(group: &'a ForgetGroup) -> Self {
        let views = |list: &'a [(Id, arca_repo::snapshot::Snapshot)]| {
            list.iter()
                .map(|(id, snapshot)| SnapshotJson::new(id, snapshot))
                .collect()
        };
        GroupJson {
            tags: group.key.tags.as_deref(),
            host: group.key.host.as_deref(),
            paths: group.key.paths.as_deref(),
            keep: views(&group.keep),
            remove: views(&group.remove),
            reasons: group
                .keep
                .iter()
                .zip(&group.reasons)
                .map(|((id, snapshot), reason)| ReasonJson {
                    snapshot: SnapshotJson::new(id, snapshot),
                    matches: &reason.matches,
                })
                .collect(),
        }
    }
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let output = context.output;
    if !args.snapshots.is_empty() {
        args.check_ids_alone()?;
    }
    let opened = context.open_repository().await?;
    let repository = &opened.repository;
    let now = jiff::Timestamp::now();
    let plan = if args.snapshots.is_empty() {
        let options = ForgetOptions {
            policy: args.policy(),
            filter: args.filter.to_filter(),
            group_by: args.group_by.unwrap_or(GroupBy::HOST_PATHS),
            unsafe_allow_remove_all: args.unsafe_allow_remove_all,
        };
        let plan = forget::plan(repository, &options, now).await?;
        if !output.is_json() {
            output.info(format_args!("Applying Policy: {}", options.policy))?;
        }
        plan
    } else {
        // Every ID must resolve before anything is removed.
        let remove = forget::resolve(repository, &args.snapshots).await?;
        ForgetPlan {
            groups: vec![ForgetGroup {
                key: Default::default(),
                keep: Vec::new(),
                remove,
                reasons: Vec::new(),
            }],
        }
    };
    if output.is_json() {
        let groups: Vec<GroupJson<'_>> = plan.groups.iter().map(GroupJson::new).collect();
        output.json(&groups)?;
    } else {
        print_plan(output, &plan, !args.snapshots.is_empty())?;
    }
    let ids = plan.to_remove();
    if args.dry_run {
        if !output.is_json() && !ids.is_empty() {
            let listed: Vec<String> = ids.iter().map(Id::short).collect();
            output.info(format_args!(
                "Would have removed the following snapshots:\n{}",
                listed.join(" ")
            ))?;
        }
        return Ok(Exit::Success);
    }
    remove(repository, &ids, now, context).await?;
    if !output.is_json() && !ids.is_empty() {
        output.info(format_args!("removed {} snapshot(s)", ids.len()))?;
    }
    if args.prune {
        let options = args.prune_options.to_options(false);
        let report = arca_repo::prune::prune(repository, &options).await?;
        crate::commands::prune::print_report(output, &report)?;
    }
    Ok(Exit::Success)
}

async fn remove(
    repository: &Repository,
    ids: &[Id],
    now: jiff::Timestamp,
    context: &Context,
) -> anyhow::Result<()> {
    let removed = forget::remove(repository, ids, now).await?;
    context.audit.note_snapshots(&removed);
    Ok(())
}

/// restic's human output: per group, the kept snapshots with their reasons
/// and the removed ones.
fn print_plan(output: Output, plan: &ForgetPlan, by_id: bool) -> anyhow::Result<()> {
    for group in &plan.groups {
        if !by_id {
            output.info(format_args!("snapshots for ({}):", group.key))?;
        }
        if !group.keep.is_empty() {
            output.info(format_args!("keep {} snapshots:", group.keep.len()))?;
            let reasons: Vec<Vec<String>> =
                group.reasons.iter().map(|r| r.matches.clone()).collect();
            print_table(output, &group.keep, Some(&reasons))?;
            output.info("")?;
        }
        if !group.remove.is_empty() {
            output.info(format_args!("remove {} snapshots:", group.remove.len()))?;
            print_table(output, &group.remove, None)?;
            output.info("")?;
        }
    }
    Ok(())
}
