//! One module per subcommand, each with a clap `Args` and an async `run`.

pub(crate) mod audit;
mod backup;
mod cat;
mod check;
mod copy;
mod diff;
mod drill;
mod dump;
mod find;
mod forget;
mod hold;
mod init;
mod key;
mod ls;
pub(crate) mod prune;
mod report;
mod repository;
mod restore;
mod snapshots;
mod stats;
mod tag;
mod unlock;

use crate::Exit;
use crate::context::Context;

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create a new repository
    Init(init::Args),
    /// Back up files and directories into a new snapshot
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// Restore a snapshot into a directory
    Restore(restore::Args),
    /// List the files in a snapshot
    Ls(ls::Args),
    /// Print a repository file in readable form (JSON)
    Cat(cat::Args),
    /// Verify the repository's structure and, optionally, every stored byte
    Check(check::Args),
    /// Copy snapshots from another repository into this one
    Copy(copy::Args),
    /// Remove snapshots by a retention policy or by ID
    Forget(forget::Args),
    /// Add, remove or set snapshot tags
    Tag(tag::Args),
    /// Show how big snapshots are
    Stats(stats::Args),
    /// Show what changed between two snapshots
    Diff(diff::Args),
    /// Find files in snapshots by name
    Find(find::Args),
    /// Print a file, or a directory as tar, from a snapshot
    Dump(dump::Args),
    /// Remove data no snapshot uses (safe beside running backups)
    Prune(prune::Args),
    /// Remove leases left behind by prunes that died
    Unlock(unlock::Args),
    /// Manage the repository's keys (passwords)
    Key(key::Args),
    /// Place, list and release legal holds on snapshots
    Hold(hold::Args),
    /// List or verify the repository's audit trail
    Audit(audit::Args),
    /// Destroy the whole repository (its keys and config)
    Repository(repository::Args),
    /// Rehearse a recovery: restore into scratch space, verify, time against the RTO
    Drill(drill::Args),
    /// Recovery and compliance report: RPO, drills, retention, holds, keys, audit trail
    Report(report::Args),
}

/// Runs the command, then appends its audit record if it opened a repository.
pub(crate) async fn run(command: Command, context: &Context) -> anyhow::Result<Exit> {
    let result = dispatch(command, context).await;
    context
        .audit
        .finish(&result, context.output.is_json())
        .await;
    result
}

async fn dispatch(command: Command, context: &Context) -> anyhow::Result<Exit> {
    match command {
        Command::Init(args) => init::run(args, context).await,
        Command::Backup(args) => backup::run(args, context).await,
        Command::Snapshots(args) => snapshots::run(args, context).await,
        Command::Restore(args) => restore::run(args, context).await,
        Command::Ls(args) => ls::run(args, context).await,
        Command::Cat(args) => cat::run(args, context).await,
        Command::Check(args) => check::run(args, context).await,
        Command::Copy(args) => copy::run(args, context).await,
        Command::Forget(args) => forget::run(args, context).await,
        Command::Tag(args) => tag::run(args, context).await,
        Command::Stats(args) => stats::run(args, context).await,
        Command::Diff(args) => diff::run(args, context).await,
        Command::Find(args) => find::run(args, context).await,
        Command::Dump(args) => dump::run(args, context).await,
        Command::Prune(args) => prune::run(args, context).await,
        Command::Unlock(args) => unlock::run(args, context).await,
        Command::Key(args) => key::run(args, context).await,
        Command::Hold(args) => hold::run(args, context).await,
        Command::Audit(args) => audit::run(args, context).await,
        Command::Repository(args) => repository::run(args, context).await,
        Command::Drill(args) => drill::run(args, context).await,
        Command::Report(args) => report::run(args, context).await,
    }
}
