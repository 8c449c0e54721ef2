#![no_main]
//! Fuzz target: cron expressions (from users' manifests) never panic the parser or the run
//! search; every accepted expression prints in a form that parses back to an equal schedule, and
//! its runs around a fixed instant are on the right side of it.
use arca_sched::Schedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(expression) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schedule) = Schedule::parse(expression) else {
        return;
    };
    let printed = schedule.to_string();
    let reparsed = Schedule::parse(&printed).expect("a printed schedule parses");
    assert_eq!(reparsed, schedule, "{expression:?} printed as {printed:?}");
    let t = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    if let Some(next) = schedule.next_after(t) {
        assert!(next > t);
        // Nothing runs between `t` and `next`.
        assert!(schedule.prev_before(next).is_none_or(|p| p <= t));
    }
    if let Some(prev) = schedule.prev_before(t) {
        assert!(prev < t);
    }
});
