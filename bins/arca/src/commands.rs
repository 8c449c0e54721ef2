//! One module per subcommand, each with a clap `Args` and an async `run`.

mod backup;
mod cat;
mod check;
mod init;
mod ls;
mod restore;
mod snapshots;

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
}

pub(crate) async fn run(command: Command, context: &Context) -> anyhow::Result<Exit> {
    match command {
        Command::Init(args) => init::run(args, context).await,
        Command::Backup(args) => backup::run(args, context).await,
        Command::Snapshots(args) => snapshots::run(args, context).await,
        Command::Restore(args) => restore::run(args, context).await,
        Command::Ls(args) => ls::run(args, context).await,
        Command::Cat(args) => cat::run(args, context).await,
        Command::Check(args) => check::run(args, context).await,
    }
}
