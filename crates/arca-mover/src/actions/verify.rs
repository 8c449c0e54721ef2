//! `verify`: restore-free verification of the host's latest snapshot. Every
//! tree it reaches and every data blob its files reference is read from
//! storage (never from the local cache) and authenticated, so a success says
//! the snapshot can be restored byte for byte, without the space or the time
//! to write it out.

use std::collections::{BTreeSet, HashSet};

use arca_repo::Id;
use arca_repo::blob::BlobType;
use arca_repo::select;
use futures::{StreamExt, TryStreamExt};

use super::Mover;
use crate::report::VerifyReport;
use crate::{Action, Result};

/// Blobs read at once.
const CONCURRENT_READS: usize = 8;

pub(super) async fn run(mover: &mut Mover<'_>) -> Result<VerifyReport> {
    let repository = mover.repository().await?.without_cache();
    let snapshots = repository.list_snapshots().await?;
    let Some((id, snapshot)) = select::pick(&snapshots, &mover.host_filter(), None, 0) else {
        tracing::warn!(host = %mover.config.host, "no snapshot of this host to verify");
        return Ok(VerifyReport::default());
    };
    let index = repository.load_index().await?;
    let ticker = mover.ticker(Action::Verify);
    let progress = ticker.progress();

    // Trees first: each is authenticated as it is loaded; data blobs are
    // collected once however many files share them.
    let mut trees_seen: HashSet<Id> = HashSet::from([snapshot.tree]);
    let mut pending = vec![snapshot.tree];
    let mut blobs: BTreeSet<Id> = BTreeSet::new();
    while let Some(tree_id) = pending.pop() {
        let tree = repository.load_tree(&index, &tree_id).await?;
        for node in tree.nodes {
            if let Some(subtree) = node.subtree
                && trees_seen.insert(subtree)
            {
                pending.push(subtree);
            }
            blobs.extend(node.content);
        }
    }
    let total_bytes = blobs
        .iter()
        .filter_map(|blob| index.get(BlobType::Data, blob))
        .map(|location| u64::from(location.uncompressed_length.unwrap_or(location.length)))
        .sum();
    progress.set_total(blobs.len() as u64, total_bytes);

    let bytes_verified = futures::stream::iter(blobs.iter())
        .map(|blob| {
            let (repository, index, progress) = (&repository, &index, &progress);
            async move {
                let plaintext = repository.read_blob(index, BlobType::Data, blob).await?;
                let len = plaintext.len() as u64;
                progress.add_bytes(len);
                Ok::<u64, arca_repo::Error>(len)
            }
        })
        .buffer_unordered(CONCURRENT_READS)
        .try_fold(0u64, |total, len| async move { Ok(total + len) })
        .await;
    ticker.finish();
    Ok(VerifyReport {
        snapshot_id: Some(id),
        trees_verified: trees_seen.len() as u64,
        blobs_verified: blobs.len() as u64,
        bytes_verified: bytes_verified?,
    })
}
