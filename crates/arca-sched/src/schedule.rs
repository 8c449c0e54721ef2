//! `Schedule`: a cron expression in a time zone, and its run times as instants.
//!
//! The DST rule: a schedule is a set of wall-clock minutes, and each matching wall-clock minute
//! runs once, at the first instant at which the zone's wall clock reaches or jumps past it.
//! - A wall time skipped by a spring-forward (02:30 in Berlin on the last Sunday of March) runs
//!   at the first instant after the gap (03:00 CEST), as cronie does; several skipped times, and a
//!   match at the gap's end itself, are one run there.
//! - A wall time repeated by a fall-back (01:30 in New York on the first Sunday of November) runs
//!   at its first occurrence only.
//!
//! robfig/cron (VolSync's parser) instead skips a time inside the gap and runs a time inside the
//! fold twice; neither is what a backup schedule wants.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::cron::{Fields, Minute, Spec, parse_spec};
use crate::error::Error;

/// A cron schedule in a time zone (UTC unless a `CRON_TZ=`/`TZ=` prefix or
/// [`Schedule::with_time_zone`] says otherwise).
///
/// Equality is by meaning: `*/30 * * * *` equals `0,30 * * * *` in the same zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    spec: Spec,
    fields: Fields,
    time_zone: TimeZone,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.fields == other.fields && self.time_zone == other.time_zone
    }
}

impl Eq for Schedule {}

impl Schedule {
    /// Parses a cron expression as VolSync accepts it (robfig/cron's standard parser): five fields
    /// `minute hour day-of-month month day-of-week` with lists, ranges, steps, `*`/`?` and
    /// month/weekday names, or one of `@yearly @annually @monthly @weekly @daily @midnight
    /// @hourly`, optionally preceded by `CRON_TZ=<IANA zone> ` or `TZ=<IANA zone> `.
    /// See `docs/SCHEDULING.md` for the exact grammar and where it is stricter than robfig/cron.
    pub fn parse(expression: &str) -> Result<Schedule, Error> {
        let (time_zone, rest) = split_time_zone(expression)?;
        let (spec, fields) = parse_spec(rest)?;
        Ok(Schedule {
            spec,
            fields,
            time_zone,
        })
    }

    /// The same schedule evaluated in another time zone.
    pub fn with_time_zone(self, time_zone: TimeZone) -> Schedule {
        Schedule { time_zone, ..self }
    }

    /// The zone the schedule's wall-clock times are read in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }

    /// Whether a wall-clock time (to the minute; seconds are ignored) matches the expression.
    pub fn matches(&self, datetime: DateTime) -> bool {
        self.fields.matches(Minute::of(datetime))
    }

    /// The first run strictly after `t`, or `None` if there is none within ten years (an
    /// expression like `0 0 30 2 *` never matches).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        // Runs are monotone in wall-clock order, and every wall-clock minute not after `t`'s own
        // runs no later than `t`; so scan forward from the minute after `t`'s wall-clock minute,
        // skipping the few matches that a fold maps back to or before `t`.
        let mut from = Minute::of(self.time_zone.to_datetime(t)).succ();
        loop {
            let candidate = self.fields.first_at_or_after(from)?;
            let run = self.run_time(candidate)?;
            if run > t {
                return Some(run);
            }
            from = candidate.succ();
        }
    }

    /// The last run strictly before `t`, or `None` if there is none within ten years.
    pub fn prev_before(&self, t: Timestamp) -> Option<Timestamp> {
        let wall = self.time_zone.to_datetime(t);
        // In the second pass through a fold, the rest of the fold's wall-clock minutes already
        // ran during the first pass, so the scan starts from the fold's end.
        let mut upto = wall;
        if let AmbiguousOffset::Fold { before, after } =
            self.time_zone.to_ambiguous_timestamp(wall).offset()
            && self.time_zone.to_offset(t) == after
        {
            upto = wall.checked_add(before.duration_since(after)).ok()?;
        }
        let mut from = Minute::of(upto);
        loop {
            let candidate = self.fields.last_at_or_before(from)?;
            let run = self.run_time(candidate)?;
            if run < t {
                return Some(run);
            }
            from = candidate.pred();
        }
    }

    /// The instant a matching wall-clock minute runs at (see the module docs for the DST rule).
    fn run_time(&self, minute: Minute) -> Option<Timestamp> {
        first_instant(&self.time_zone, minute.to_datetime()?)
    }
}

/// The first instant at which `tz`'s wall clock reaches or passes `wall`: its only instant, the
/// earlier of two in a fold, the transition itself in a gap.
pub(crate) fn first_instant(tz: &TimeZone, wall: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(wall).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(wall).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, `wall` is an instant just before the transition.
            let before_gap = after.to_timestamp(wall).ok()?;
            tz.following(before_gap)
                .next()
                .map(|transition| transition.timestamp())
        }
    }
}

/// Splits off a `CRON_TZ=Zone ` or `TZ=Zone ` prefix (robfig/cron's syntax).
fn split_time_zone(expression: &str) -> Result<(TimeZone, &str), Error> {
    let prefix = if expression.starts_with("CRON_TZ=") {
        "CRON_TZ"
    } else if expression.starts_with("TZ=") {
        "TZ"
    } else {
        return Ok((TimeZone::UTC, expression.trim()));
    };
    let Some((head, rest)) = expression.split_once(' ') else {
        return Err(Error::TimeZonePrefix {
            prefix: expression.to_owned(),
        });
    };
    let name = &head[prefix.len() + 1..];
    if name.is_empty() {
        return Err(Error::TimeZonePrefix {
            prefix: head.to_owned(),
        });
    }
    let time_zone = if name == "UTC" {
        TimeZone::UTC
    } else {
        TimeZone::get(name).map_err(|source| Error::UnknownTimeZone {
            name: name.to_owned(),
            prefix,
            source,
        })?
    };
    Ok((time_zone, rest.trim()))
}

impl FromStr for Schedule {
    type Err = Error;

    fn from_str(expression: &str) -> Result<Schedule, Error> {
        Schedule::parse(expression)
    }
}

/// Prints the expression as written (whitespace collapsed), with a `CRON_TZ=` prefix when the
/// zone is not UTC. Parsing the output gives an equal schedule, except for a zone without an IANA
/// name (a fixed offset or POSIX TZ string given to [`Schedule::with_time_zone`]), which cannot be
/// written in a prefix and is left out.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.time_zone != TimeZone::UTC
            && let Some(name) = self.time_zone.iana_name()
        {
            write!(f, "CRON_TZ={name} ")?;
        }
        write!(f, "{}", self.spec)
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Schedule, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn prefixes_select_the_zone() {
        let berlin = Schedule::parse("CRON_TZ=Europe/Berlin 0 2 * * *").unwrap();
        assert_eq!(berlin.time_zone().iana_name(), Some("Europe/Berlin"));
        let tz = Schedule::parse("TZ=America/New_York   @daily").unwrap();
        assert_eq!(tz.time_zone().iana_name(), Some("America/New_York"));
        assert_eq!(tz.to_string(), "CRON_TZ=America/New_York @daily");
        assert_eq!(
            Schedule::parse("CRON_TZ=UTC 0 2 * * *")
                .unwrap()
                .time_zone(),
            &TimeZone::UTC
        );
        assert!(matches!(
            Schedule::parse("CRON_TZ=Mars/Olympus 0 2 * * *"),
            Err(Error::UnknownTimeZone { ref name, prefix: "CRON_TZ", .. }) if name == "Mars/Olympus"
        ));
        assert!(matches!(
            Schedule::parse("CRON_TZ=Europe/Berlin"),
            Err(Error::TimeZonePrefix { .. })
        ));
        assert!(matches!(
            Schedule::parse("TZ= 0 2 * * *"),
            Err(Error::TimeZonePrefix { .. })
        ));
    }

    #[test]
    fn descriptors_are_exact() {
        assert!(Schedule::parse("@daily").is_ok());
        assert!(matches!(
            Schedule::parse("@Daily"),
            Err(Error::UnknownDescriptor { .. })
        ));
        assert!(matches!(
            Schedule::parse("@every 1h"),
            Err(Error::UnknownDescriptor { .. })
        ));
        assert!(matches!(
            Schedule::parse("   "),
            Err(Error::EmptyExpression)
        ));
        assert!(matches!(
            Schedule::parse("0 2 * *"),
            Err(Error::FieldCount { found: 4, .. })
        ));
    }

    #[test]
    fn a_gap_run_is_at_the_transition() {
        let s = Schedule::parse("CRON_TZ=Europe/Berlin 30 2 * * *").unwrap();
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00Z.
        assert_eq!(
            s.next_after(ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            s.prev_before(ts("2026-03-29T01:00:01Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            s.prev_before(ts("2026-03-29T01:00:00Z")),
            Some(ts("2026-03-28T01:30:00Z"))
        );
    }

    #[test]
    fn a_fold_run_is_at_the_first_occurrence() {
        let s = Schedule::parse("CRON_TZ=America/New_York 30 1 * * *").unwrap();
        // 2026-11-01: 01:00–02:00 happens twice, EDT (05:00Z–06:00Z) then EST (06:00Z–07:00Z).
        let first = ts("2026-11-01T05:30:00Z");
        assert_eq!(s.next_after(ts("2026-11-01T00:00:00Z")), Some(first));
        assert_eq!(s.next_after(first), Some(ts("2026-11-02T06:30:00Z")));
        // From inside the second pass, the previous run is the first pass's 01:30.
        assert_eq!(s.prev_before(ts("2026-11-01T06:10:00Z")), Some(first));
        assert_eq!(s.prev_before(ts("2026-11-01T06:40:00Z")), Some(first));
    }
}
