//! Adaptive compression of a backup's data blobs: which zstd level the
//! encoders use, from which stage holds the backup up.
//!
//! Per blob, [`crate::blob::append_stored_form`] already decides between
//! storing it plain and compressing it, from its measured compressibility
//! (zstd level 1 over its first 64 KiB). What is left is how hard to
//! compress what pays:
//!
//! - **CPU-bound** (the encoders never wait for the uploads): the configured
//!   level. A faster one would save CPU time, but not bytes: measured on the
//!   bench's database mix, zstd 2 and 1 store 2.4 % and 7.3 % more than level
//!   3, which puts the repository 1.0 % and 5.9 % above restic's (whose
//!   `auto` compression arca must not lose to; docs/PERFORMANCE.md, "Adaptive
//!   compression"). So a CPU-bound backup spends on compression only what
//!   the repository's size requires.
//! - **Upload-bound** (the encoders spend a fifth or more of their time
//!   waiting for a pack buffer or for room in the upload queue): a harder
//!   level ([`boosted`]). The cores would otherwise idle, and every byte
//!   saved is a byte less to upload. If the harder level makes the encoders
//!   the slower stage, their waits shrink and the next blobs go back to the
//!   configured level, so the level settles where neither stage idles.
//!
//! The times are shared by all encoders and decay (halved once they add up to
//! [`WINDOW_NANOS`]), so the choice follows the backup as it moves between
//! kinds of data and bandwidths. Everything here runs on the encoder threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::blob::Compression;

/// How many levels above the configured one an upload-bound backup
/// compresses at (zstd 3 → 6: on the database mix 2.3× the CPU time for
/// 2.3 % fewer bytes).
const BOOST: i32 = 3;
/// The highest level a boost goes to: zstd's levels from 20 on need far
/// more memory per encoder.
const MAX_BOOSTED: i32 = 19;
/// The encoders are held up by the uploads once they wait at least this
/// share of their time (in percent).
const UPLOAD_BOUND_WAIT_PERCENT: u128 = 20;
/// Encoding and waiting time (summed over the encoders) after which both
/// totals are halved, so the last seconds weigh most.
const WINDOW_NANOS: u64 = 2_000_000_000;

/// The level of the next data blob, from the encoders' recent times.
#[derive(Debug)]
pub(crate) struct AdaptiveLevel {
    /// The repository's level: the level while CPU-bound.
    configured: Compression,
    /// Nanoseconds the encoders spent compressing and sealing blobs (recently).
    encode_nanos: AtomicU64,
    /// Nanoseconds they spent waiting for a pack buffer or for room in the
    /// upload queue (recently).
    wait_nanos: AtomicU64,
}

impl AdaptiveLevel {
    /// Starts at `configured`, with nothing measured yet.
    pub(crate) fn new(configured: Compression) -> Self {
        AdaptiveLevel {
            configured,
            encode_nanos: AtomicU64::new(0),
            wait_nanos: AtomicU64::new(0),
        }
    }

    /// The compression for the next data blob.
    pub(crate) fn current(&self) -> Compression {
        choose(
            self.configured,
            self.encode_nanos.load(Ordering::Relaxed),
            self.wait_nanos.load(Ordering::Relaxed),
        )
    }

    /// Adds one blob's times: `encode` compressing and sealing it, `wait`
    /// waiting for the output before it.
    pub(crate) fn record(&self, encode: Duration, wait: Duration) {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let encoded = add(&self.encode_nanos, nanos(encode));
        let waited = add(&self.wait_nanos, nanos(wait));
        if encoded.saturating_add(waited) >= WINDOW_NANOS {
            // Two encoders may both halve at once: the totals shrink a
            // little faster, and the ratio the choice reads barely moves.
            for total in [&self.encode_nanos, &self.wait_nanos] {
                let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(t / 2));
            }
        }
    }
}

/// Adds `nanos` to `total` (saturating); returns the new total.
fn add(total: &AtomicU64, nanos: u64) -> u64 {
    let previous = total
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
            Some(t.saturating_add(nanos))
        })
        .unwrap_or_else(|t| t);
    previous.saturating_add(nanos)
}

/// Whether encoders that spent `encode_nanos` encoding and `wait_nanos`
/// waiting for the uploads are held up by them.
fn upload_bound(encode_nanos: u64, wait_nanos: u64) -> bool {
    let (encode, wait) = (u128::from(encode_nanos), u128::from(wait_nanos));
    wait > 0 && wait * 100 >= (encode + wait) * UPLOAD_BOUND_WAIT_PERCENT
}

/// The harder level an upload-bound backup uses instead of `configured`.
fn boosted(configured: Compression) -> Compression {
    if configured.is_off() || configured.level() >= MAX_BOOSTED {
        return configured;
    }
    Compression::new((configured.level() + BOOST).min(MAX_BOOSTED))
        .expect("a level between the configured one and MAX_BOOSTED is valid")
}

/// The level for the next blob: [`boosted`] if the encoders are
/// [`upload_bound`], else `configured`.
fn choose(configured: Compression, encode_nanos: u64, wait_nanos: u64) -> Compression {
    if upload_bound(encode_nanos, wait_nanos) {
        boosted(configured)
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn level(n: i32) -> Compression {
        Compression::new(n).unwrap()
    }

    #[test]
    fn cpu_bound_keeps_the_configured_level_and_upload_bound_boosts_it() {
        let configured = Compression::default();
        // Nothing measured, or no waiting: CPU-bound.
        assert_eq!(choose(configured, 0, 0), configured);
        assert_eq!(choose(configured, 1_000, 0), configured);
        // Waiting just under a fifth of the time: still CPU-bound.
        assert_eq!(choose(configured, 801, 199), configured);
        // A fifth or more: upload-bound.
        assert_eq!(choose(configured, 800, 200).level(), 6);
        assert_eq!(choose(configured, 0, 1).level(), 6);
        assert_eq!(choose(configured, u64::MAX, u64::MAX).level(), 6);
    }

    #[test]
    fn boosts_stay_within_zstds_ordinary_levels_and_off_stays_off() {
        assert!(boosted(Compression::OFF).is_off());
        assert_eq!(boosted(level(1)).level(), 4);
        assert_eq!(boosted(level(17)).level(), 19);
        assert_eq!(boosted(level(19)).level(), 19);
        assert_eq!(boosted(level(22)).level(), 22);
    }

    #[test]
    fn recorded_times_decide_and_decay() {
        let adaptive = AdaptiveLevel::new(Compression::default());
        assert_eq!(adaptive.current(), Compression::default());
        adaptive.record(Duration::from_millis(100), Duration::from_millis(50));
        assert_eq!(adaptive.current().level(), 6, "a third of the time waiting");
        // A long stretch without waiting: the earlier wait decays away.
        for _ in 0..10 {
            adaptive.record(Duration::from_millis(500), Duration::ZERO);
        }
        assert_eq!(adaptive.current(), Compression::default());
        let encode = adaptive.encode_nanos.load(Ordering::Relaxed);
        assert!(
            encode < WINDOW_NANOS,
            "halved once past the window: {encode}"
        );
        assert!(adaptive.wait_nanos.load(Ordering::Relaxed) < 50_000_000 / 4);
    }

    proptest! {
        /// The level is the configured one or its boost, never lower: the
        /// repository is never larger than at the configured level (and so
        /// than restic's).
        #[test]
        fn never_below_the_configured_level(
            configured in 0i32..=22,
            encode in any::<u64>(),
            wait in any::<u64>(),
        ) {
            let configured = level(configured);
            let chosen = choose(configured, encode, wait);
            prop_assert!(chosen == configured || chosen == boosted(configured));
            prop_assert!(chosen.level() >= configured.level());
            prop_assert_eq!(chosen.is_off(), configured.is_off());
        }

        /// More waiting never lowers the level; more encoding never raises it.
        #[test]
        fn monotone_in_the_times(
            configured in 1i32..=19,
            encode in 0u64..1 << 50,
            wait in 0u64..1 << 50,
            more in 0u64..1 << 50,
        ) {
            let configured = level(configured);
            let chosen = choose(configured, encode, wait).level();
            prop_assert!(choose(configured, encode, wait + more).level() >= chosen);
            prop_assert!(choose(configured, encode + more, wait).level() <= chosen);
        }

        /// Only the share of time spent waiting counts, not the totals.
        #[test]
        fn depends_on_the_share_of_waiting_only(
            encode in 0u64..1 << 40,
            wait in 0u64..1 << 40,
            scale in 1u64..1 << 20,
        ) {
            let configured = Compression::default();
            prop_assert_eq!(
                choose(configured, encode, wait),
                choose(configured, encode * scale, wait * scale)
            );
        }
    }
}
