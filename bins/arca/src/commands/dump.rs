//! `arca dump`: print a file of a snapshot, or a directory as a tar archive.

use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::Context as _;
use arca_repo::Id;
use arca_repo::dump::{find_node, write_file, write_tar};
use arca_repo::find::TreeReader;
use arca_repo::snapshot::Snapshot;
use arca_repo::tree::NodeType;

use crate::Exit;
use crate::context::{AnyRepository, Context, restic_error};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Snapshot ID, unique ID prefix, or "latest"
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Absolute path in the snapshot ("/" for everything)
    #[arg(value_name = "PATH")]
    path: String,
    /// Archive format for directories (only tar)
    #[arg(short = 'a', long, value_name = "FORMAT", default_value = "tar", value_parser = ["tar"])]
    archive: String,
    /// Write to this file instead of stdout
    #[arg(short = 't', long, value_name = "FILE")]
    target: Option<PathBuf>,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    match context.open_any_repository().await? {
        AnyRepository::Arca(opened) => {
            let repository = &opened.repository;
            let (id, snapshot) = repository.find_snapshot(&args.snapshot).await?;
            context.audit.note_snapshots(&[id]);
            let index = repository.load_index().await?;
            dump(repository, &index, &id, &snapshot, &args).await
        }
        AnyRepository::Restic(restic) => {
            let (id, snapshot) = restic.find_snapshot(&args.snapshot).await?;
            let index = restic.load_index().await.map_err(restic_error)?;
            dump(&restic, &index, &id, &snapshot.to_arca()?, &args).await
        }
    }
}

async fn dump<R: TreeReader>(
    repository: &R,
    index: &R::Index,
    id: &Id,
    snapshot: &Snapshot,
    args: &Args,
) -> anyhow::Result<Exit> {
    let node = find_node(repository, index, id, snapshot, &args.path).await?;
    let open_target = |path: &PathBuf| {
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
    };
    match node.node_type {
        NodeType::Dir => {
            let out: Box<dyn std::io::Write + Send> = match &args.target {
                Some(path) => Box::new(std::io::BufWriter::new(open_target(path)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            let mut out = write_tar(repository, index, &node, out).await?;
            out.flush()?;
        }
        NodeType::File => match &args.target {
            Some(path) => {
                let mut file = tokio::fs::File::from_std(open_target(path)?);
                write_file(repository, index, &node, &mut file).await?;
            }
            None => {
                // Stdout as a file (tokio's stdout would need another feature).
                let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
                let mut file = tokio::fs::File::from_std(std::fs::File::from(stdout));
                write_file(repository, index, &node, &mut file).await?;
            }
        },
        other => anyhow::bail!("{}: a {other:?} node has no content to dump", args.path),
    }
    Ok(Exit::Success)
}
