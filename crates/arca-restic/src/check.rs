//! Check of a restic repository, reported in Arca's
//! [`arca_repo::check::CheckReport`] so the CLI prints both formats alike.
//!
//! Structure: every index file decodes; every indexed pack exists with the
//! size its entries imply, and its header lists the same blobs at the same
//! places; every snapshot decodes and its trees load; every blob a tree
//! names is indexed. Data (`--read-data`, or a subset): each selected pack
//! is downloaded whole, hashed against its name, and every blob in it is
//! decrypted, decompressed and hashed against its ID.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arca_repo::Id;
use arca_repo::blob::BlobType;
use arca_repo::check::{CheckError, CheckOptions, CheckReport, CheckWarning, ReadData};
use arca_repo::progress::Progress;
use futures::StreamExt as _;
use rand::Rng as _;

use crate::index::{Index, IndexBlob};
use crate::pack::{TRAILER_LEN, header_range, parse_header};
use crate::repository::{INDEX_DIR, SNAPSHOTS_DIR, blocking, open_blob, pack_path, sha256};
use crate::{Error, ResticRepository, Result};

/// Packs whose headers (or whole bytes) load at once.
const CONCURRENCY: usize = 4;
/// Header entry bytes: type, length, id; compressed entries add 4.
const ENTRY_LEN: u64 = 37;

/// Checks `repo`; see the module docs. Damage is in the report; only a
/// failure to list the repository is an `Err`.
pub async fn check(
    repo: &ResticRepository,
    opts: &CheckOptions,
    progress: Arc<dyn Progress>,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    // Index files: every pack's blobs as the index has them.
    let mut indexed: HashMap<Id, Vec<IndexBlob>> = HashMap::new();
    let mut index = Index::default();
    for id in repo.list_ids(INDEX_DIR).await? {
        match repo.load_index_file(&id).await {
            Ok(file) => {
                report.index_files_checked += 1;
                index.add(&file);
                for pack in file.packs {
                    indexed.entry(pack.id).or_default().extend(pack.blobs);
                }
            }
            Err(e) => report.errors.push(CheckError::IndexFile {
                path: format!("{INDEX_DIR}/{id}"),
                reason: e.to_string(),
            }),
        }
    }

    // Packs present, sizes, headers.
    let mut sizes: HashMap<Id, u64> = HashMap::new();
    for meta in repo.list_packs().await? {
        match meta
            .path
            .rsplit('/')
            .next()
            .and_then(|name| name.parse::<Id>().ok())
        {
            Some(id) => {
                sizes.insert(id, meta.size);
            }
            None => report
                .warnings
                .push(CheckWarning::StrayFile { path: meta.path }),
        }
    }
    let mut packs: Vec<Id> = indexed.keys().copied().collect();
    packs.sort();
    let mut present = Vec::new();
    for pack in &packs {
        let blobs = &indexed[pack];
        let expected = blobs
            .iter()
            .map(|b| {
                u64::from(b.length)
                    + ENTRY_LEN
                    + if b.uncompressed_length.is_some() {
                        4
                    } else {
                        0
                    }
            })
            .sum::<u64>()
            + crate::crypto::OVERHEAD as u64
            + TRAILER_LEN;
        report.packs_checked += 1;
        match sizes.get(pack) {
            None => report.errors.push(CheckError::PackMissing { pack: *pack }),
            Some(&actual) if actual != expected => report.errors.push(CheckError::PackSize {
                pack: *pack,
                expected,
                actual,
            }),
            Some(&actual) => present.push((*pack, actual)),
        }
    }
    for (pack, size) in &sizes {
        if !indexed.contains_key(pack) {
            report.warnings.push(CheckWarning::PackUnreferenced {
                pack: *pack,
                size: *size,
            });
        }
    }
    let headers: Vec<(Id, Result<Vec<crate::pack::PackBlob>>)> =
        futures::stream::iter(present.iter().copied())
            .map(|(pack, size)| async move { (pack, repo.pack_header(&pack, Some(size)).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    for (pack, header) in headers {
        let reason = match header {
            Err(e) => Some(format!("header: {e}")),
            Ok(entries) => compare_header(&indexed[&pack], &entries),
        };
        if let Some(reason) = reason {
            report.errors.push(CheckError::PackDamaged { pack, reason });
        }
    }

    // Snapshots and the trees they reach.
    let mut trees_seen: HashSet<Id> = HashSet::new();
    for id in repo.list_ids(SNAPSHOTS_DIR).await? {
        let snapshot = match repo.load_snapshot(&id).await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                report.errors.push(CheckError::SnapshotFile {
                    path: format!("{SNAPSHOTS_DIR}/{id}"),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        report.snapshots_checked += 1;
        let mut pending = vec![(snapshot.tree, format!("snapshot {id}"))];
        while let Some((tree, referenced_by)) = pending.pop() {
            if !trees_seen.insert(tree) {
                continue;
            }
            if index.get(BlobType::Tree, &tree).is_none() {
                report.errors.push(CheckError::BlobMissing {
                    blob_type: BlobType::Tree,
                    blob: tree,
                    referenced_by,
                });
                continue;
            }
            let nodes = match repo.tree(&index, &tree).await.and_then(|t| t.to_arca()) {
                Ok(nodes) => nodes,
                Err(e) => {
                    report.errors.push(CheckError::TreeDamaged {
                        tree,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            report.trees_checked += 1;
            for node in nodes {
                for blob in &node.content {
                    if index.get(BlobType::Data, blob).is_none() {
                        report.errors.push(CheckError::BlobMissing {
                            blob_type: BlobType::Data,
                            blob: *blob,
                            referenced_by: format!("tree {tree}"),
                        });
                    }
                }
                if let Some(subtree) = node.subtree {
                    pending.push((subtree, format!("tree {tree}")));
                }
            }
        }
    }

    // Data.
    let selected: Vec<(Id, u64)> = present
        .into_iter()
        .filter(|(pack, _)| selected(opts.read_data, pack))
        .collect();
    if !selected.is_empty() {
        progress.set_total(selected.len() as u64, selected.iter().map(|(_, s)| s).sum());
    }
    let results: Vec<(Id, u64, Vec<CheckError>, u64)> = futures::stream::iter(selected)
        .map(|(pack, size)| {
            let progress = progress.clone();
            async move {
                let (errors, blobs) = match repo.backend().get(&pack_path(&pack)).await {
                    Err(e) => (
                        vec![CheckError::PackDamaged {
                            pack,
                            reason: format!("cannot be read: {e}"),
                        }],
                        0,
                    ),
                    Ok(bytes) => {
                        let key = repo.key().clone();
                        blocking(move || read_pack(&key, pack, &bytes)).await
                    }
                };
                progress.add_bytes(size);
                (pack, size, errors, blobs)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (_, size, errors, blobs) in results {
        report.packs_read += 1;
        report.bytes_read += size;
        report.blobs_checked += blobs;
        report.errors.extend(errors);
    }
    Ok(report)
}

fn selected(read_data: ReadData, pack: &Id) -> bool {
    match read_data {
        ReadData::None => false,
        ReadData::All => true,
        ReadData::Subset(fraction) => rand::rng().random::<f64>() < fraction,
        ReadData::Nth { n, m } => u32::from(pack.0[0]) % m == n - 1,
    }
}

/// Why a pack's header disagrees with the index, if it does.
fn compare_header(indexed: &[IndexBlob], header: &[crate::pack::PackBlob]) -> Option<String> {
    let key =
        |t: BlobType, id: Id, offset: u32, length: u32, u: Option<u32>| (offset, t, id, length, u);
    let mut from_index: Vec<_> = indexed
        .iter()
        .map(|b| key(b.blob_type, b.id, b.offset, b.length, b.uncompressed_length))
        .collect();
    let mut from_header: Vec<_> = header
        .iter()
        .map(|b| key(b.blob_type, b.id, b.offset, b.length, b.uncompressed_length))
        .collect();
    from_index.sort();
    from_header.sort();
    (from_index != from_header).then(|| {
        format!(
            "its header lists {} blobs that differ from the {} the index has",
            from_header.len(),
            from_index.len()
        )
    })
}

/// Verifies a whole pack: its name, its header, every blob. Returns the
/// damage found and the number of blobs verified.
fn read_pack(key: &crate::crypto::MasterKey, pack: Id, bytes: &[u8]) -> (Vec<CheckError>, u64) {
    let damaged = |reason: String| (vec![CheckError::PackDamaged { pack, reason }], 0);
    if sha256(bytes) != pack {
        return damaged("its bytes do not hash to its name".into());
    }
    let size = bytes.len() as u64;
    if size < TRAILER_LEN {
        return damaged("shorter than a pack trailer".into());
    }
    let trailer: [u8; 4] = bytes[bytes.len() - 4..].try_into().expect("4 bytes");
    let header = header_range(size, trailer)
        .map_err(|e| e.to_string())
        .and_then(|range| {
            let plain = key
                .open(
                    &"pack header",
                    &bytes[range.start as usize..range.end as usize],
                )
                .map_err(|e| e.to_string())?;
            parse_header(&plain, range.start).map_err(|e| e.to_string())
        });
    let entries = match header {
        Ok(entries) => entries,
        Err(reason) => return damaged(format!("header: {reason}")),
    };
    let mut errors = Vec::new();
    let mut checked = 0;
    for entry in entries {
        let start = entry.offset as usize;
        let sealed = &bytes[start..start + entry.length as usize];
        checked += 1;
        if let Err(e) = open_blob(
            key,
            entry.blob_type,
            &entry.id,
            sealed,
            entry.uncompressed_length,
        ) {
            let reason = match e {
                Error::Unauthenticated { .. } => "fails authentication".to_owned(),
                other => other.to_string(),
            };
            errors.push(CheckError::BlobDamaged {
                pack,
                blob_type: entry.blob_type,
                blob: entry.id,
                reason,
            });
        }
    }
    (errors, checked)
}
