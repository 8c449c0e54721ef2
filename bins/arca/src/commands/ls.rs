//! `arca ls`: list the files in a snapshot, depth first in name order.
//! With `--json`, a stream of JSON lines (one per node) so listing a huge
//! snapshot needs no more memory than its deepest path.

use std::path::{Path, PathBuf};

use arca_repo::tree::{Node, NodeType, Tree};
use arca_repo::{Id, Repository};
use serde::Serialize;

use crate::Exit;
use crate::commands::snapshots::SnapshotJson;
use crate::context::{AnyRepository, Context};
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Snapshot ID, unique ID prefix, or "latest"
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Show type, permissions, owner, size and modification time
    #[arg(short, long)]
    long: bool,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let repository = context.open_any_repository().await?;
    let (id, snapshot) = match &repository {
        AnyRepository::Arca(opened) => opened.repository.find_snapshot(&args.snapshot).await?,
        AnyRepository::Restic(restic) => {
            let (id, snapshot) = restic.find_snapshot(&args.snapshot).await?;
            (id, snapshot.to_arca()?)
        }
    };
    let output = context.output;
    if output.is_json() {
        output.json(&Tagged {
            message_type: "snapshot",
            inner: SnapshotJson::new(&id, &snapshot),
        })?;
    }
    let trees = match &repository {
        AnyRepository::Arca(opened) => {
            Trees::Arca(&opened.repository, opened.repository.load_index().await?)
        }
        AnyRepository::Restic(restic) => Trees::Restic(restic, restic.load_index().await?),
    };
    let root = trees.load(&snapshot.tree).await?;
    // Pending nodes, last one first, each with the path of its directory.
    let mut pending: Vec<(PathBuf, Node)> = root
        .nodes
        .into_iter()
        .rev()
        .map(|node| (PathBuf::from("/"), node))
        .collect();
    while let Some((dir, node)) = pending.pop() {
        let path = dir.join(node.name.as_os_str());
        print_node(output, args.long, &path, &node)?;
        if let (NodeType::Dir, Some(subtree)) = (node.node_type, node.subtree) {
            let tree = trees.load(&subtree).await?;
            pending.extend(
                tree.nodes
                    .into_iter()
                    .rev()
                    .map(|child| (path.clone(), child)),
            );
        }
    }
    Ok(Exit::Success)
}

/// Where trees come from: an Arca repository or a restic one (as Arca's type).
enum Trees<'a> {
    Arca(&'a Repository, arca_repo::index::Index),
    Restic(&'a arca_restic::ResticRepository, arca_restic::index::Index),
}

impl Trees<'_> {
    async fn load(&self, id: &Id) -> anyhow::Result<Tree> {
        Ok(match self {
            Trees::Arca(repository, index) => repository.load_tree(index, id).await?,
            Trees::Restic(restic, index) => restic.arca_tree(index, id).await?,
        })
    }
}

#[derive(Serialize)]
struct Tagged<T> {
    message_type: &'static str,
    #[serde(flatten)]
    inner: T,
}

/// One node as printed by `--json` (schema in docs/CLI.md; keep it stable).
#[derive(Serialize)]
struct NodeJson<'a> {
    message_type: &'static str,
    path: String,
    name: String,
    #[serde(rename = "type")]
    node_type: NodeType,
    mode: u32,
    uid: u32,
    gid: u32,
    user: Option<&'a str>,
    group: Option<&'a str>,
    size: u64,
    mtime: jiff::Timestamp,
    link_target: Option<String>,
}

fn print_node(output: Output, long: bool, path: &Path, node: &Node) -> anyhow::Result<()> {
    let mtime = jiff::Timestamp::from_nanosecond(i128::from(node.mtime_ns))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let link_target = node
        .link_target
        .as_ref()
        .map(|target| target.as_os_str().to_string_lossy().into_owned());
    if output.is_json() {
        return output.json(&NodeJson {
            message_type: "node",
            path: path.to_string_lossy().into_owned(),
            name: node.name.as_os_str().to_string_lossy().into_owned(),
            node_type: node.node_type,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            user: node.user.as_deref(),
            group: node.group.as_deref(),
            size: node.size,
            mtime,
            link_target,
        });
    }
    if !long {
        return output.result(path.display());
    }
    let user = node.user.clone().unwrap_or_else(|| node.uid.to_string());
    let group = node.group.clone().unwrap_or_else(|| node.gid.to_string());
    let when = mtime
        .to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S");
    let arrow = link_target
        .map(|target| format!(" -> {target}"))
        .unwrap_or_default();
    output.result(format_args!(
        "{} {user:>8} {group:>8} {:>12} {when} {}{arrow}",
        mode_string(node.node_type, node.mode),
        node.size,
        path.display()
    ))
}

/// `ls -l` style: `drwxr-xr-x`, `-rwsr-x--T`.
fn mode_string(node_type: NodeType, mode: u32) -> String {
    let kind = match node_type {
        NodeType::File => '-',
        NodeType::Dir => 'd',
        NodeType::Symlink => 'l',
        NodeType::Fifo => 'p',
        NodeType::Socket => 's',
        NodeType::CharDevice => 'c',
        NodeType::BlockDevice => 'b',
    };
    let mut out = String::with_capacity(10);
    out.push(kind);
    // (read bit, write bit, execute bit, special bit, special char if executable, if not)
    let triples = [
        (0o400, 0o200, 0o100, 0o4000, 's', 'S'),
        (0o40, 0o20, 0o10, 0o2000, 's', 'S'),
        (0o4, 0o2, 0o1, 0o1000, 't', 'T'),
    ];
    for (read, write, exec, special, on, off) in triples {
        out.push(if mode & read != 0 { 'r' } else { '-' });
        out.push(if mode & write != 0 { 'w' } else { '-' });
        out.push(match (mode & exec != 0, mode & special != 0) {
            (true, true) => on,
            (false, true) => off,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_match_ls() {
        assert_eq!(mode_string(NodeType::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeType::File, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(NodeType::File, 0o4750), "-rwsr-x---");
        assert_eq!(mode_string(NodeType::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(NodeType::File, 0o6644), "-rwSr-Sr--");
        assert_eq!(mode_string(NodeType::Symlink, 0o777), "lrwxrwxrwx");
    }
}
