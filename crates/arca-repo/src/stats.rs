//! `stats`: how big snapshots are, counted restic's four ways.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use crate::blob::BlobType;
use crate::find::TreeReader;
use crate::find::walk;
use crate::index::BlobLocation;
use crate::snapshot::Snapshot;
use crate::tree::NodeType;
use crate::{Error, Id, Result};

/// What `stats` counts (restic's `--mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatsMode {
    /// The size of every file as a restore would write it (hard links once
    /// per snapshot); the file count counts every node.
    #[default]
    RestoreSize,
    /// Files with distinct contents, each counted once.
    FilesByContents,
    /// The blobs the snapshots reference, each once, as stored.
    RawData,
    /// Per path, the distinct data blobs of its file.
    BlobsPerFile,
}

impl FromStr for StatsMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<StatsMode> {
        match s {
            "restore-size" => Ok(StatsMode::RestoreSize),
            "files-by-contents" => Ok(StatsMode::FilesByContents),
            "raw-data" => Ok(StatsMode::RawData),
            "blobs-per-file" => Ok(StatsMode::BlobsPerFile),
            other => Err(Error::InvalidOptions(format!(
                "unknown counting mode {other:?}: use restore-size, files-by-contents, raw-data or blobs-per-file"
            ))),
        }
    }
}

impl fmt::Display for StatsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StatsMode::RestoreSize => "restore-size",
            StatsMode::FilesByContents => "files-by-contents",
            StatsMode::RawData => "raw-data",
            StatsMode::BlobsPerFile => "blobs-per-file",
        })
    }
}

/// The result, in restic's JSON shape (zero counts and ratios are omitted).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Bytes counted (restore size, unique contents, stored blob bytes, or
    /// plaintext bytes of the blobs per file).
    pub total_size: u64,
    /// raw-data: what the blobs would take uncompressed (sealed).
    #[serde(skip_serializing_if = "is_zero")]
    pub total_uncompressed_size: u64,
    /// raw-data: plaintext over stored size of the compressed blobs.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub compression_ratio: f64,
    /// raw-data: the share of bytes (in %) in compressed blobs.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub compression_progress: f64,
    /// raw-data: the space compression saves, in %.
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub compression_space_saving: f64,
    /// Files (nodes) counted.
    #[serde(skip_serializing_if = "is_zero")]
    pub total_file_count: u64,
    /// Blobs counted.
    #[serde(skip_serializing_if = "is_zero")]
    pub total_blob_count: u64,
    /// Snapshots processed.
    pub snapshots_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

fn lookup<R: TreeReader>(index: &R::Index, blob_type: BlobType, id: &Id) -> Result<BlobLocation> {
    R::locate(index, blob_type, id).ok_or(Error::BlobNotFound { blob_type, id: *id })
}

/// Counts `snapshots` in `mode`.
pub async fn stats<R: TreeReader>(
    repo: &R,
    index: &R::Index,
    snapshots: &[(Id, Snapshot)],
    mode: StatsMode,
) -> Result<Stats> {
    let mut stats = Stats {
        snapshots_count: snapshots.len() as u64,
        ..Default::default()
    };
    let mut unique_contents: HashSet<Vec<Id>> = HashSet::new();
    let mut file_blobs: HashMap<String, HashSet<Id>> = HashMap::new();
    let mut blobs: HashSet<(BlobType, Id)> = HashSet::new();
    for (_, snapshot) in snapshots {
        let mut hard_links: HashSet<(u64, u64)> = HashSet::new();
        if mode == StatsMode::RawData {
            blobs.insert((BlobType::Tree, snapshot.tree));
        }
        walk(repo, index, &snapshot.tree, "/", |path, node| {
            match mode {
                StatsMode::RestoreSize => {
                    stats.total_file_count += 1;
                    let first_link = node.links <= 1
                        || node.inode == 0
                        || hard_links.insert((node.inode, node.device));
                    if node.node_type == NodeType::File && first_link {
                        stats.total_size += node.size;
                    }
                }
                StatsMode::FilesByContents => {
                    if node.node_type == NodeType::File
                        && unique_contents.insert(node.content.clone())
                    {
                        stats.total_file_count += 1;
                        stats.total_size += node.size;
                    }
                }
                StatsMode::BlobsPerFile => {
                    if node.node_type == NodeType::File && !node.content.is_empty() {
                        let seen = file_blobs.entry(path.to_owned()).or_insert_with(|| {
                            stats.total_file_count += 1;
                            HashSet::new()
                        });
                        for id in &node.content {
                            if seen.insert(*id) {
                                let location = lookup::<R>(index, BlobType::Data, id)?;
                                stats.total_size += R::plaintext_len(&location).unwrap_or(0);
                                stats.total_blob_count += 1;
                            }
                        }
                    }
                }
                StatsMode::RawData => {
                    if let Some(subtree) = node.subtree {
                        // A tree seen before: its blobs are counted already.
                        return Ok(blobs.insert((BlobType::Tree, subtree)));
                    }
                    for id in &node.content {
                        blobs.insert((BlobType::Data, *id));
                    }
                }
            }
            Ok(true)
        })
        .await?;
    }
    if mode == StatsMode::RawData {
        let (mut compressed_stored, mut compressed_plain) = (0u64, 0u64);
        for (blob_type, id) in &blobs {
            let location = lookup::<R>(index, *blob_type, id)?;
            let stored = u64::from(location.length);
            stats.total_size += stored;
            stats.total_blob_count += 1;
            match location.uncompressed_length {
                Some(plain) => {
                    let sealed = u64::from(plain) + R::seal_overhead(&location);
                    stats.total_uncompressed_size += sealed;
                    compressed_stored += stored;
                    compressed_plain += sealed;
                }
                None => stats.total_uncompressed_size += stored,
            }
        }
        if compressed_stored > 0 {
            stats.compression_ratio = compressed_plain as f64 / compressed_stored as f64;
        }
        if stats.total_uncompressed_size > 0 {
            let total = stats.total_uncompressed_size as f64;
            stats.compression_progress = compressed_plain as f64 / total * 100.0;
            stats.compression_space_saving = (1.0 - stats.total_size as f64 / total) * 100.0;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for mode in [
            StatsMode::RestoreSize,
            StatsMode::FilesByContents,
            StatsMode::RawData,
            StatsMode::BlobsPerFile,
        ] {
            assert_eq!(mode.to_string().parse::<StatsMode>().unwrap(), mode);
        }
        assert!(matches!(
            "debug".parse::<StatsMode>(),
            Err(Error::InvalidOptions(message)) if message.contains("debug")
        ));
    }

    #[test]
    fn json_omits_zeros_like_restic() {
        let stats = Stats {
            total_size: 5,
            snapshots_count: 1,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&stats).unwrap(),
            serde_json::json!({"total_size": 5, "snapshots_count": 1})
        );
    }
}
