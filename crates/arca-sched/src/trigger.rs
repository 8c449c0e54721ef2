//! VolSync's trigger rules (`internal/controller/statemachine/machine.go`), kept as they are so a
//! VolSync ReplicationSource behaves the same under Arca.

use jiff::Timestamp;

use crate::schedule::Schedule;

/// VolSync's missed-interval rule: a sync that last completed at `last_sync` has missed its
/// interval when `next(next(last_sync)) < now`, i.e. the run after the one that was due has also
/// come and gone. VolSync passes `status.lastSyncTime` (the end of the last successful sync).
/// A schedule that never runs again cannot be missed.
pub fn missed_interval(schedule: &Schedule, last_sync: Timestamp, now: Timestamp) -> bool {
    schedule
        .next_after(last_sync)
        .and_then(|next| schedule.next_after(next))
        .is_some_and(|deadline| deadline < now)
}

/// What starts a sync, in VolSync's precedence: a non-empty manual tag wins over a schedule,
/// and with neither the object syncs continuously.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger<'a> {
    /// `spec.trigger.manual`: sync once each time the tag changes.
    Manual(&'a str),
    /// `spec.trigger.schedule`.
    Schedule(&'a Schedule),
    /// No trigger: sync again as soon as the previous sync is cleaned up.
    Continuous,
}

impl<'a> Trigger<'a> {
    /// Applies the precedence to a spec's `trigger.manual` and parsed `trigger.schedule`.
    pub fn select(manual: Option<&'a str>, schedule: Option<&'a Schedule>) -> Trigger<'a> {
        match (manual.filter(|tag| !tag.is_empty()), schedule) {
            (Some(tag), _) => Trigger::Manual(tag),
            (None, Some(schedule)) => Trigger::Schedule(schedule),
            (None, None) => Trigger::Continuous,
        }
    }

    /// `status.nextSyncTime` after a sync that completed at `last_sync`: the schedule's next run,
    /// `None` for the other triggers.
    pub fn next_sync_time(&self, last_sync: Timestamp) -> Option<Timestamp> {
        match self {
            Trigger::Schedule(schedule) => schedule.next_after(last_sync),
            Trigger::Manual(_) | Trigger::Continuous => None,
        }
    }

    /// Whether an idle object should start syncing: a schedule once `now` is past
    /// `next_sync_time` (at once if there is none yet, as VolSync does when a CR is created); a
    /// manual tag when it differs from `status.lastManualSync`; no trigger always.
    pub fn should_sync(
        &self,
        next_sync_time: Option<Timestamp>,
        last_manual_sync: Option<&str>,
        now: Timestamp,
    ) -> bool {
        match self {
            Trigger::Schedule(_) => next_sync_time.is_none_or(|next| now > next),
            Trigger::Manual(tag) => last_manual_sync != Some(*tag),
            Trigger::Continuous => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn missed_after_two_runs() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let last = ts("2026-01-01T10:20:00Z");
        // next = 11:00, next(next) = 12:00.
        assert!(!missed_interval(&hourly, last, ts("2026-01-01T11:30:00Z")));
        assert!(!missed_interval(&hourly, last, ts("2026-01-01T12:00:00Z")));
        assert!(missed_interval(&hourly, last, ts("2026-01-01T12:00:01Z")));
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert!(!missed_interval(&never, last, ts("2030-01-01T00:00:00Z")));
    }

    #[test]
    fn precedence_and_due() {
        let daily = Schedule::parse("@daily").unwrap();
        let now = ts("2026-01-02T00:00:01Z");
        assert_eq!(
            Trigger::select(Some("t1"), Some(&daily)),
            Trigger::Manual("t1")
        );
        assert_eq!(
            Trigger::select(Some(""), Some(&daily)),
            Trigger::Schedule(&daily)
        );
        assert_eq!(Trigger::select(None, None), Trigger::Continuous);

        let scheduled = Trigger::Schedule(&daily);
        let next = scheduled.next_sync_time(ts("2026-01-01T00:10:00Z"));
        assert_eq!(next, Some(ts("2026-01-02T00:00:00Z")));
        assert!(scheduled.should_sync(next, None, now));
        assert!(!scheduled.should_sync(next, None, ts("2026-01-02T00:00:00Z")));
        assert!(scheduled.should_sync(None, None, now));

        let manual = Trigger::Manual("t2");
        assert_eq!(manual.next_sync_time(now), None);
        assert!(manual.should_sync(None, Some("t1"), now));
        assert!(manual.should_sync(None, None, now));
        assert!(!manual.should_sync(None, Some("t2"), now));
        assert!(Trigger::Continuous.should_sync(None, None, now));
    }
}
