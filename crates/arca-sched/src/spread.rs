//! Spreading runs out: deterministic per-object jitter and backup windows.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

use crate::schedule::first_instant;

/// The BLAKE3 key-derivation context of [`jitter`]. Changing it would move every object's
/// start time, so it is fixed for good.
const JITTER_CONTEXT: &str = "arca-sched 2026-12 jitter of a namespace/name";

/// A deterministic delay in `[0, window)` for the object `namespace/name`, uniform over objects,
/// in whole seconds when the window is at least a second (Kubernetes timestamps have second
/// precision). The same object always gets the same delay, in every release: it is derived
/// from a BLAKE3 hash of the length-prefixed names. A window of zero or less gives zero.
pub fn jitter(namespace: &str, name: &str, window: SignedDuration) -> SignedDuration {
    let window_nanos = window.as_nanos();
    if window_nanos <= 0 {
        return SignedDuration::ZERO;
    }
    let mut hasher = blake3::Hasher::new_derive_key(JITTER_CONTEXT);
    for part in [namespace, name] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    let fraction = u128::from(u64::from_le_bytes(first));
    // fraction / 2^64 * window, below window since fraction < 2^64 (a window fits in 2^96 ns).
    let nanos = ((fraction * window_nanos as u128) >> 64) as i128;
    let delay = SignedDuration::from_nanos_i128(nanos);
    if window >= SignedDuration::from_secs(1) {
        SignedDuration::from_secs(delay.as_secs())
    } else {
        delay
    }
}

/// A daily window of wall-clock time in which runs may start, `[start, end)` in `time_zone`.
/// `start > end` wraps midnight (`22:00–04:00`); `start == end` is open all day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupWindow {
    /// When the window opens each day.
    pub start: Time,
    /// When it closes (exclusive).
    pub end: Time,
    /// The zone the times are read in.
    pub tz: TimeZone,
}

/// What [`BackupWindow::place`] decided for a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Start the run at this instant (the due time itself when it is inside the window).
    Run(Timestamp),
    /// Do not start it: the window's next opening comes no earlier than the next scheduled run,
    /// which will serve instead.
    Skip {
        /// When the window next opens.
        opens_at: Timestamp,
    },
}

impl BackupWindow {
    /// Whether a run may start at `t`.
    pub fn contains(&self, t: Timestamp) -> bool {
        let time = self.tz.to_datetime(t).time();
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => self.start <= time && time < self.end,
            std::cmp::Ordering::Greater => time >= self.start || time < self.end,
        }
    }

    /// The first instant at or after `t` inside the window: `t` itself if the window is open,
    /// otherwise the next opening. A start time skipped by a spring-forward opens at the end of
    /// the gap. `None` only at the end of representable time.
    pub fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        if self.contains(t) {
            return Some(t);
        }
        let mut date = self.tz.to_datetime(t).date();
        // Tomorrow's opening at the latest, unless a DST gap swallows a whole day's window.
        for _ in 0..4 {
            let opening = first_instant(&self.tz, date.to_datetime(self.start))?;
            if opening > t && self.contains(opening) {
                return Some(opening);
            }
            date = date.checked_add(1.day()).ok()?;
        }
        None
    }

    /// Where a run due at `due` goes (apply [`jitter`] to `due` first). Inside the window it runs
    /// as due. Outside, it is deferred to the window's next opening, unless that opening is no
    /// earlier than `next_due` (the schedule's following run): then it is skipped, because the
    /// next run will cover the same data and deferring both would only stack them up.
    pub fn place(&self, due: Timestamp, next_due: Option<Timestamp>) -> Placement {
        match self.next_open(due) {
            Some(open) if open == due => Placement::Run(due),
            Some(open) if next_due.is_some_and(|next| open >= next) => {
                Placement::Skip { opens_at: open }
            }
            Some(open) => Placement::Run(open),
            // No opening is representable: nothing sensible to defer to.
            None => Placement::Skip {
                opens_at: Timestamp::MAX,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::time;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn utc_window(start: Time, end: Time) -> BackupWindow {
        BackupWindow {
            start,
            end,
            tz: TimeZone::UTC,
        }
    }

    #[test]
    fn jitter_is_pinned() {
        // These values are a compatibility promise: they must never change.
        let hour = SignedDuration::from_hours(1);
        let pinned = [jitter("default", "db", hour), jitter("media", "plex", hour)];
        assert_eq!(pinned.map(|d| d.as_secs()), PINNED_JITTER_SECS);
        assert_eq!(jitter("a", "b", SignedDuration::ZERO), SignedDuration::ZERO);
        assert_eq!(
            jitter("a", "b", SignedDuration::from_secs(-5)),
            SignedDuration::ZERO
        );
        // Length prefixes keep "ab"/"c" and "a"/"bc" apart.
        assert_ne!(jitter("ab", "c", hour), jitter("a", "bc", hour));
        let tiny = SignedDuration::from_nanos(500);
        assert!(jitter("default", "db", tiny) < tiny);
    }

    const PINNED_JITTER_SECS: [i64; 2] = [1571, 2130];

    #[test]
    fn a_window_contains_its_start_not_its_end() {
        let w = utc_window(time(2, 0, 0, 0), time(6, 0, 0, 0));
        assert!(!w.contains(ts("2026-01-01T01:59:59Z")));
        assert!(w.contains(ts("2026-01-01T02:00:00Z")));
        assert!(w.contains(ts("2026-01-01T05:59:59Z")));
        assert!(!w.contains(ts("2026-01-01T06:00:00Z")));
        let wrap = utc_window(time(22, 0, 0, 0), time(4, 0, 0, 0));
        assert!(wrap.contains(ts("2026-01-01T23:00:00Z")));
        assert!(wrap.contains(ts("2026-01-01T03:00:00Z")));
        assert!(!wrap.contains(ts("2026-01-01T12:00:00Z")));
        let all_day = utc_window(time(3, 0, 0, 0), time(3, 0, 0, 0));
        assert!(all_day.contains(ts("2026-01-01T12:00:00Z")));
    }

    #[test]
    fn next_open() {
        let w = utc_window(time(2, 0, 0, 0), time(6, 0, 0, 0));
        assert_eq!(
            w.next_open(ts("2026-01-01T03:00:00Z")),
            Some(ts("2026-01-01T03:00:00Z"))
        );
        assert_eq!(
            w.next_open(ts("2026-01-01T01:00:00Z")),
            Some(ts("2026-01-01T02:00:00Z"))
        );
        assert_eq!(
            w.next_open(ts("2026-01-01T07:00:00Z")),
            Some(ts("2026-01-02T02:00:00Z"))
        );
        let wrap = utc_window(time(22, 0, 0, 0), time(4, 0, 0, 0));
        assert_eq!(
            wrap.next_open(ts("2026-01-01T12:00:00Z")),
            Some(ts("2026-01-01T22:00:00Z"))
        );
        // Opening at 02:30 Berlin on the spring-forward day: the gap ends at 01:00Z (03:00 CEST).
        let berlin = BackupWindow {
            start: time(2, 30, 0, 0),
            end: time(6, 0, 0, 0),
            tz: TimeZone::get("Europe/Berlin").unwrap(),
        };
        assert_eq!(
            berlin.next_open(ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        // A window wholly inside the gap stays shut that day and opens the next.
        let swallowed = BackupWindow {
            end: time(2, 45, 0, 0),
            ..berlin
        };
        assert_eq!(
            swallowed.next_open(ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-30T00:30:00Z"))
        );
    }

    #[test]
    fn place_defers_or_skips() {
        let w = utc_window(time(2, 0, 0, 0), time(6, 0, 0, 0));
        let inside = ts("2026-01-01T03:00:00Z");
        assert_eq!(w.place(inside, None), Placement::Run(inside));
        // Daily at 01:00: deferred to 02:00, before tomorrow's run.
        assert_eq!(
            w.place(ts("2026-01-01T01:00:00Z"), Some(ts("2026-01-02T01:00:00Z"))),
            Placement::Run(ts("2026-01-01T02:00:00Z"))
        );
        // Hourly at 10:00: the next run at 11:00 comes before the window opens.
        assert_eq!(
            w.place(ts("2026-01-01T10:00:00Z"), Some(ts("2026-01-01T11:00:00Z"))),
            Placement::Skip {
                opens_at: ts("2026-01-02T02:00:00Z")
            }
        );
        // Hourly at 01:00: the 02:00 run starts at the opening, so this one is skipped.
        assert_eq!(
            w.place(ts("2026-01-01T01:00:00Z"), Some(ts("2026-01-01T02:00:00Z"))),
            Placement::Skip {
                opens_at: ts("2026-01-01T02:00:00Z")
            }
        );
        // With no next run (manual), always defer.
        assert_eq!(
            w.place(ts("2026-01-01T10:00:00Z"), None),
            Placement::Run(ts("2026-01-02T02:00:00Z"))
        );
    }
}
