//! Jitter and backup windows: proptests of the bounds and the placement policy, and a
//! uniformity check of the jitter over many names.

use arca_sched::{BackupWindow, Placement, jitter};
use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn instant() -> impl Strategy<Value = Timestamp> {
    (946_684_800i64..4_102_444_800).prop_map(|s| Timestamp::from_second(s).unwrap())
}

fn window() -> impl Strategy<Value = BackupWindow> {
    (
        0i8..24,
        prop::sample::select(&[0i8, 15, 30, 45][..]),
        0i8..24,
        prop::sample::select(&[0i8, 30][..]),
        prop::sample::select(
            &[
                "UTC",
                "Europe/Berlin",
                "America/New_York",
                "Australia/Lord_Howe",
            ][..],
        ),
    )
        .prop_map(|(sh, sm, eh, em, zone)| BackupWindow {
            start: Time::new(sh, sm, 0, 0).unwrap(),
            end: Time::new(eh, em, 0, 0).unwrap(),
            tz: TimeZone::get(zone).unwrap(),
        })
}

#[test]
fn jitter_spreads_evenly() {
    // 10,000 volumes sharing `0 2 * * *` over a one-hour window: ten six-minute buckets, each
    // within 10 % of the mean (binomial sd is ~3 %).
    let window = SignedDuration::from_hours(1);
    let mut buckets = [0u32; 10];
    for n in 0..10_000 {
        let delay = jitter(&format!("team-{}", n % 37), &format!("data-{n}"), window);
        buckets[(delay.as_secs() / 360) as usize] += 1;
    }
    for count in buckets {
        assert!((900..=1100).contains(&count), "{buckets:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn jitter_is_stable_and_bounded(
        namespace in "[a-z0-9-]{1,20}",
        name in "[a-z0-9.-]{1,40}",
        window_nanos in 1i64..(1000 * 86_400 * 1_000_000_000),
    ) {
        let window = SignedDuration::from_nanos(window_nanos);
        let delay = jitter(&namespace, &name, window);
        prop_assert_eq!(delay, jitter(&namespace, &name, window));
        prop_assert!(delay >= SignedDuration::ZERO && delay < window, "{:?} {:?}", delay, window);
        if window >= SignedDuration::from_secs(1) {
            prop_assert_eq!(delay.subsec_nanos(), 0);
        }
    }

    #[test]
    fn next_open_is_the_first_open_instant(w in window(), t in instant(), probes in prop::collection::vec(0.0f64..1.0, 8)) {
        let open = w.next_open(t).unwrap();
        prop_assert!(open >= t);
        prop_assert!(w.contains(open), "{:?} not open at {}", w, open);
        // Nothing in [t, open) is open.
        let span = open.duration_since(t);
        for p in probes {
            let probe = t + span.mul_f64(p);
            if probe < open {
                prop_assert!(!w.contains(probe), "{:?} open at {} before {}", w, probe, open);
            }
        }
    }

    #[test]
    fn placement_runs_inside_or_skips(w in window(), due in instant(), next_in_mins in prop::option::of(1i64..(3 * 24 * 60))) {
        let next_due = next_in_mins.map(|m| due + SignedDuration::from_mins(m));
        match w.place(due, next_due) {
            Placement::Run(at) => {
                prop_assert!(at >= due);
                prop_assert!(w.contains(at));
                prop_assert_eq!(Some(at), w.next_open(due));
                prop_assert!(next_due.is_none_or(|next| at < next || at == due));
            }
            Placement::Skip { opens_at } => {
                prop_assert!(!w.contains(due));
                prop_assert_eq!(Some(opens_at), w.next_open(due));
                prop_assert!(next_due.is_some_and(|next| opens_at >= next));
            }
        }
    }
}
