//! `Schedule`: table tests of next/previous runs (steps, ranges, Feb 29, descriptors, the
//! day-of-month/day-of-week OR, DST both ways in Berlin and New York) and proptests (round trip,
//! monotone runs, next/previous relations, and every run against a brute-force oracle across DST
//! transitions).

use arca_sched::{Error, Schedule};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn schedule(expression: &str) -> Schedule {
    Schedule::parse(expression).unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// The first `n` runs after `from`.
fn runs(expression: &str, from: &str, n: usize) -> Vec<Timestamp> {
    let s = schedule(expression);
    let mut t = ts(from);
    (0..n)
        .map(|_| {
            t = s.next_after(t).unwrap();
            t
        })
        .collect()
}

fn all(texts: &[&str]) -> Vec<Timestamp> {
    texts.iter().map(|t| ts(t)).collect()
}

#[test]
fn steps_and_ranges() {
    assert_eq!(
        runs("*/15 * * * *", "2026-01-01T10:07:00Z", 4),
        all(&[
            "2026-01-01T10:15Z",
            "2026-01-01T10:30Z",
            "2026-01-01T10:45Z",
            "2026-01-01T11:00Z"
        ])
    );
    assert_eq!(
        runs("1-5/2 9 * * *", "2026-01-01T09:02:00Z", 3),
        all(&[
            "2026-01-01T09:03Z",
            "2026-01-01T09:05Z",
            "2026-01-02T09:01Z"
        ])
    );
    // Strictly after: a run exactly at `t` is not returned.
    assert_eq!(
        runs("0 2 * * *", "2026-01-01T02:00:00Z", 1),
        all(&["2026-01-02T02:00Z"])
    );
    // Seconds do not matter: runs are on the minute.
    assert_eq!(
        runs("0 2 * * *", "2026-01-01T01:59:59.9Z", 1),
        all(&["2026-01-01T02:00Z"])
    );
}

#[test]
fn february_29_and_yearly() {
    assert_eq!(
        runs("0 0 29 2 *", "2025-03-01T00:00:00Z", 2),
        all(&["2028-02-29T00:00Z", "2032-02-29T00:00Z"])
    );
    // 2100 is not a leap year: eight years between Feb 29s.
    assert_eq!(
        runs("0 0 29 2 *", "2096-03-01T00:00:00Z", 1),
        all(&["2104-02-29T00:00Z"])
    );
    assert_eq!(
        schedule("0 0 29 2 *").prev_before(ts("2104-02-28T00:00:00Z")),
        Some(ts("2096-02-29T00:00Z"))
    );
    assert_eq!(
        schedule("0 0 30 2 *").next_after(ts("2026-01-01T00:00:00Z")),
        None
    );
    assert_eq!(
        schedule("0 0 30 2 *").prev_before(ts("2026-01-01T00:00:00Z")),
        None
    );
    for yearly in ["@yearly", "@annually"] {
        assert_eq!(
            runs(yearly, "2026-06-01T00:00:00Z", 2),
            all(&["2027-01-01T00:00Z", "2028-01-01T00:00Z"])
        );
    }
    assert_eq!(
        runs("@monthly", "2026-01-31T00:00:00Z", 1),
        all(&["2026-02-01T00:00Z"])
    );
    // 2026-01-01 is a Thursday; @weekly is Sunday midnight.
    assert_eq!(
        runs("@weekly", "2026-01-01T00:00:00Z", 1),
        all(&["2026-01-04T00:00Z"])
    );
    assert_eq!(
        runs("@hourly", "2026-01-01T00:00:00Z", 1),
        all(&["2026-01-01T01:00Z"])
    );
    assert_eq!(
        runs("@midnight", "2026-01-01T00:00:00Z", 1),
        all(&["2026-01-02T00:00Z"])
    );
}

#[test]
fn day_of_month_or_day_of_week() {
    // 2026-02-01 is a Sunday; Fridays are the 6th, 13th, 20th, 27th.
    let from = "2026-02-01T00:00:00Z";
    assert_eq!(
        runs("0 0 10 * FRI", from, 4),
        all(&[
            "2026-02-06T00:00Z",
            "2026-02-10T00:00Z",
            "2026-02-13T00:00Z",
            "2026-02-20T00:00Z"
        ])
    );
    assert_eq!(runs("0 0 10 * *", from, 1), all(&["2026-02-10T00:00Z"]));
    assert_eq!(runs("0 0 * * FRI", from, 1), all(&["2026-02-06T00:00Z"]));
    assert_eq!(runs("0 0 ? * 5", from, 1), all(&["2026-02-06T00:00Z"]));
    // A full range is still a restriction (robfig/cron): OR with Fridays is every day.
    assert_eq!(
        runs("0 0 1-31 * FRI", from, 2),
        all(&["2026-02-02T00:00Z", "2026-02-03T00:00Z"])
    );
    // `*/1` is a star: AND, so Fridays only.
    assert_eq!(runs("0 0 */1 * FRI", from, 1), all(&["2026-02-06T00:00Z"]));
    // Names in ranges and lists, any case.
    assert_eq!(
        runs("30 6 * jan,Mar sat,SUN", "2026-02-15T00:00:00Z", 2),
        all(&["2026-03-01T06:30Z", "2026-03-07T06:30Z"])
    );
}

#[test]
fn dst_berlin() {
    // Spring: 2026-03-29 02:00 CET -> 03:00 CEST at 01:00Z. Fall: 2026-10-25 03:00 CEST -> 02:00
    // CET at 01:00Z.
    let tz = "CRON_TZ=Europe/Berlin";
    assert_eq!(
        runs(&format!("{tz} 30 2 * * *"), "2026-03-27T12:00:00Z", 3),
        all(&[
            "2026-03-28T01:30Z",
            "2026-03-29T01:00Z",
            "2026-03-30T00:30Z"
        ])
    );
    // The skipped 02:00 and the 03:00 are one run at the end of the gap.
    assert_eq!(
        runs(&format!("{tz} 0 * * * *"), "2026-03-28T23:30:00Z", 3),
        all(&[
            "2026-03-29T00:00Z",
            "2026-03-29T01:00Z",
            "2026-03-29T02:00Z"
        ])
    );
    assert_eq!(
        runs(&format!("{tz} */30 * * * *"), "2026-03-29T00:10:00Z", 3),
        all(&[
            "2026-03-29T00:30Z",
            "2026-03-29T01:00Z",
            "2026-03-29T01:30Z"
        ])
    );
    // The repeated 02:30 runs once, in its first (CEST) pass.
    assert_eq!(
        runs(&format!("{tz} 30 2 * * *"), "2026-10-24T12:00:00Z", 3),
        all(&[
            "2026-10-25T00:30Z",
            "2026-10-26T01:30Z",
            "2026-10-27T01:30Z"
        ])
    );
    assert_eq!(
        runs(&format!("{tz} 0 * * * *"), "2026-10-24T23:30:00Z", 3),
        all(&[
            "2026-10-25T00:00Z",
            "2026-10-25T02:00Z",
            "2026-10-25T03:00Z"
        ])
    );
    let s = schedule(&format!("{tz} 30 2 * * *"));
    assert_eq!(
        s.prev_before(ts("2026-03-30T00:00:00Z")),
        Some(ts("2026-03-29T01:00Z"))
    );
    assert_eq!(
        s.prev_before(ts("2026-10-25T01:45:00Z")),
        Some(ts("2026-10-25T00:30Z"))
    );
    assert_eq!(
        s.prev_before(ts("2026-10-25T00:30:00Z")),
        Some(ts("2026-10-24T00:30Z"))
    );
}

#[test]
fn dst_new_york() {
    // Spring: 2026-03-08 02:00 EST -> 03:00 EDT at 07:00Z. Fall: 2026-11-01 02:00 EDT -> 01:00
    // EST at 06:00Z.
    let tz = "CRON_TZ=America/New_York";
    assert_eq!(
        runs(&format!("{tz} 30 2 * * *"), "2026-03-07T12:00:00Z", 3),
        all(&[
            "2026-03-08T07:00Z",
            "2026-03-09T06:30Z",
            "2026-03-10T06:30Z"
        ])
    );
    assert_eq!(
        runs(&format!("{tz} 30 1 * * *"), "2026-10-31T12:00:00Z", 3),
        all(&[
            "2026-11-01T05:30Z",
            "2026-11-02T06:30Z",
            "2026-11-03T06:30Z"
        ])
    );
    // Hourly through the fold: 01:00 EDT, then 02:00 EST (01:00 EST is the same wall time).
    assert_eq!(
        runs(&format!("{tz} 0 * * * *"), "2026-11-01T04:30:00Z", 3),
        all(&[
            "2026-11-01T05:00Z",
            "2026-11-01T07:00Z",
            "2026-11-01T08:00Z"
        ])
    );
    let s = schedule(&format!("{tz} 0 * * * *"));
    assert_eq!(
        s.prev_before(ts("2026-11-01T07:00:00Z")),
        Some(ts("2026-11-01T05:00Z"))
    );
    assert_eq!(
        s.prev_before(ts("2026-11-01T06:30:00Z")),
        Some(ts("2026-11-01T05:00Z"))
    );
}

#[test]
fn with_time_zone_and_display() {
    let s = schedule("0 2 * * *").with_time_zone(TimeZone::get("Asia/Tokyo").unwrap());
    assert_eq!(
        s.next_after(ts("2026-01-01T00:00:00Z")),
        Some(ts("2026-01-01T17:00Z"))
    );
    assert_eq!(s.to_string(), "CRON_TZ=Asia/Tokyo 0 2 * * *");
    assert_eq!(schedule("  0   2 * *\t* ").to_string(), "0 2 * * *");
    assert_eq!(schedule("*/30 * * * *"), schedule("0,30 * * * *"));
    assert_ne!(
        schedule("0 2 * * *"),
        schedule("CRON_TZ=Europe/Berlin 0 2 * * *")
    );
    let json = serde_json::to_string(&schedule("TZ=Europe/Berlin @daily")).unwrap();
    assert_eq!(json, "\"CRON_TZ=Europe/Berlin @daily\"");
    assert_eq!(
        serde_json::from_str::<Schedule>(&json).unwrap(),
        schedule("CRON_TZ=Europe/Berlin 0 0 * * *")
    );
    assert!(serde_json::from_str::<Schedule>("\"61 * * * *\"").is_err());
}

#[test]
fn zones_resolve_from_the_bundled_database() {
    // The copy built into the binary serves containers without /usr/share/zoneinfo.
    let bundled = jiff::tz::TimeZoneDatabase::bundled();
    for name in [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "UTC",
    ] {
        assert!(bundled.get(name).is_ok(), "{name}");
    }
}

#[test]
fn errors_name_field_and_position() {
    let err = Schedule::parse("CRON_TZ=Europe/Berlin 0 25 * * *").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Field {
                position: 2,
                column: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("hour field (field 2 of 5, column 3)"),
        "{err}"
    );
    assert!(
        err.to_string().contains("25 is above the maximum 23"),
        "{err}"
    );
}

// ---- proptests ----

const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
];

/// One list item of a field with the given bounds and names.
fn item(min: u32, max: u32, names: &'static [&'static str]) -> impl Strategy<Value = String> {
    let value = move || {
        (min..=max, any::<bool>()).prop_map(move |(v, named)| {
            if named && !names.is_empty() {
                let name = names[(v - min) as usize];
                if v % 2 == 0 {
                    name.to_uppercase()
                } else {
                    name.to_owned()
                }
            } else {
                v.to_string()
            }
        })
    };
    prop_oneof![
        Just("*".to_owned()),
        Just("?".to_owned()),
        value(),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        (1..=max + 2).prop_map(|s| format!("*/{s}")),
        (value(), 1..=max + 2).prop_map(|(v, s)| format!("{v}/{s}")),
        (min..=max, min..=max, 1..=max + 2).prop_map(|(a, b, s)| format!(
            "{}-{}/{s}",
            a.min(b),
            a.max(b)
        )),
    ]
}

fn field(min: u32, max: u32, names: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(item(min, max, names), 1..4).prop_map(|items| items.join(","))
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Any expression the parser must accept.
fn expression() -> impl Strategy<Value = String> {
    let fields = (
        field(0, 59, &[]),
        field(0, 23, &[]),
        field(1, 31, &[]),
        field(1, 12, MONTHS),
        field(0, 6, DAYS),
    )
        .prop_map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}"));
    let descriptor = prop::sample::select(
        &[
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ][..],
    )
    .prop_map(str::to_owned);
    let prefix = prop_oneof![
        Just(String::new()),
        prop::sample::select(&ZONES[..]).prop_map(|z| format!("CRON_TZ={z} ")),
        prop::sample::select(&ZONES[..]).prop_map(|z| format!("TZ={z}  ")),
    ];
    (prefix, prop_oneof![4 => fields, 1 => descriptor]).prop_map(|(p, e)| p + &e)
}

/// Expressions that run often enough for the proptests to see many runs in a few days.
fn frequent_expression() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&ZONES[..]),
        field(0, 59, &[]),
        prop_oneof![Just("*".to_owned()), field(0, 23, &[])],
    )
        .prop_map(|(z, m, h)| format!("CRON_TZ={z} {m} {h} * * *"))
}

/// An instant between 1990 and 2090, on any second.
fn instant() -> impl Strategy<Value = Timestamp> {
    (631_152_000i64..3_786_912_000).prop_map(|s| Timestamp::from_second(s).unwrap())
}

/// Instants close to a DST transition of the zone (the nearest one after a random instant).
fn near_transition(zone: &str, at: Timestamp, offset_mins: i64) -> Timestamp {
    let tz = TimeZone::get(zone).unwrap();
    let base = tz.following(at).next().map_or(at, |t| t.timestamp());
    base + SignedDuration::from_mins(offset_mins)
}

/// The oracle for the DST rule, by brute force: walk the zone's instants minute by minute and
/// run when the wall clock reaches or passes a matching wall-clock minute it has not reached
/// before.
fn oracle_runs(s: &Schedule, from: Timestamp, until: Timestamp) -> Vec<Timestamp> {
    let tz = s.time_zone();
    let minute = SignedDuration::from_mins(1);
    // Start on a whole minute (transitions here are all on whole minutes), a day early so the
    // high-water mark is right even when `from` is in the second pass through a fold.
    let mut t = Timestamp::from_second(from.as_second().div_euclid(60) * 60).unwrap()
        - SignedDuration::from_hours(26);
    let floor = |dt: DateTime| dt.with().second(0).subsec_nanosecond(0).build().unwrap();
    let mut high_water = floor(tz.to_datetime(t));
    let mut out = Vec::new();
    while t <= until {
        t += minute;
        let wall = floor(tz.to_datetime(t));
        if wall > high_water {
            let mut reached = false;
            let mut c = high_water;
            while c < wall {
                c = c.checked_add(minute).unwrap();
                reached |= s.matches(c);
            }
            if reached && t > from && t <= until {
                out.push(t);
            }
            high_water = wall;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn display_round_trips(text in expression()) {
        let parsed = Schedule::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let shown = parsed.to_string();
        let reparsed = Schedule::parse(&shown).unwrap();
        prop_assert_eq!(&reparsed, &parsed);
        prop_assert_eq!(reparsed.to_string(), shown.clone());
        let via_from_str: Schedule = shown.parse().unwrap();
        prop_assert_eq!(via_from_str, parsed);
    }

    #[test]
    fn next_after_is_strictly_after_and_monotone(text in expression(), a in instant(), b in instant()) {
        let s = Schedule::parse(&text).unwrap();
        let (early, late) = (a.min(b), a.max(b));
        if let Some(next_early) = s.next_after(early) {
            prop_assert!(next_early > early);
            if let Some(next_late) = s.next_after(late) {
                prop_assert!(next_late > late);
                prop_assert!(next_early <= next_late);
            }
        }
        if let Some(prev_late) = s.prev_before(late) {
            prop_assert!(prev_late < late);
            if let Some(prev_early) = s.prev_before(early) {
                prop_assert!(prev_early <= prev_late);
            }
        }
    }

    #[test]
    fn next_and_prev_are_inverse(text in expression(), t in instant()) {
        let s = Schedule::parse(&text).unwrap();
        if let Some(next) = s.next_after(t) {
            // Nothing runs in (t, next): the run before `next` is at or before `t`.
            let before = s.prev_before(next);
            prop_assert!(before.is_none_or(|p| p <= t), "{:?} {:?}", before, t);
            if let Some(before) = before {
                prop_assert_eq!(s.next_after(before), Some(next));
            }
        }
        if let Some(prev) = s.prev_before(t) {
            let after = s.next_after(prev);
            prop_assert!(after.is_some_and(|n| n >= t), "{:?} {:?}", after, t);
            prop_assert_eq!(s.prev_before(after.unwrap()), Some(prev));
        }
    }

    #[test]
    fn runs_match_the_oracle_across_dst(
        text in frequent_expression(),
        at in instant(),
        offset_hours in -30i64..6,
    ) {
        let s = Schedule::parse(&text).unwrap();
        let zone = s.time_zone().iana_name().unwrap().to_owned();
        let from = near_transition(&zone, at, offset_hours * 60 + 7);
        let until = from + SignedDuration::from_hours(50);
        let mut ours = Vec::new();
        let mut t = from;
        while let Some(next) = s.next_after(t).filter(|n| *n <= until) {
            ours.push(next);
            t = next;
        }
        let oracle = oracle_runs(&s, from, until);
        prop_assert_eq!(&ours, &oracle, "{} from {}", text, from);
        // And backwards.
        let mut back = Vec::new();
        let mut t = until + SignedDuration::from_secs(1);
        while let Some(prev) = s.prev_before(t).filter(|p| *p > from) {
            back.push(prev);
            t = prev;
        }
        back.reverse();
        prop_assert_eq!(back, oracle);
    }

    #[test]
    fn daily_runs_once_every_date(zone in prop::sample::select(&ZONES[..]), hour in 0u32..24, minute in 0u32..60, year in 2000i16..2080) {
        let s = Schedule::parse(&format!("CRON_TZ={zone} {minute} {hour} * * *")).unwrap();
        let tz = s.time_zone().clone();
        let start = jiff::civil::date(year, 1, 1).to_zoned(tz.clone()).unwrap().timestamp();
        let mut t = start - SignedDuration::from_secs(1);
        let mut expected = jiff::civil::date(year, 1, 1);
        for _ in 0..366 {
            let next = s.next_after(t).unwrap();
            let date = tz.to_datetime(next).date();
            // Santiago's transitions are at midnight: a run at 00:xx skipped by the gap lands at
            // 01:00 of the same date, still once per date.
            prop_assert_eq!(date, expected, "{} {}", s, next);
            expected = expected.tomorrow().unwrap();
            t = next;
        }
    }

    #[test]
    fn hourly_runs_never_double(zone in prop::sample::select(&ZONES[..]), minute in 0u32..60, at in instant()) {
        let s = Schedule::parse(&format!("CRON_TZ={zone} {minute} * * * *")).unwrap();
        let tz = s.time_zone();
        let from = near_transition(zone, at, -180);
        let mut t = from;
        let mut walls = Vec::new();
        for _ in 0..12 {
            let next = s.next_after(t).unwrap();
            let gap = next.duration_since(t);
            // An hour apart in wall-clock terms: never more than two real hours (a fold), never
            // twice the same wall time.
            prop_assert!(gap <= SignedDuration::from_hours(2), "{} {} -> {}", s, t, next);
            walls.push(tz.to_datetime(next));
            t = next;
        }
        prop_assert!(walls.windows(2).all(|w| w[0] < w[1]), "{:?}", walls);
    }
}
