//! criterion bench: the operator's scheduling decisions for 10,000 objects.
//!
//! `next_after` for 10,000 schedules (a mix of expressions, half in DST zones), and one
//! `next_batch` over a queue of 10,000 due items under both concurrency limits. Throughput is
//! per object, so criterion's "elem/s" is objects per second.

use std::hint::black_box;

use arca_sched::{DataClass, Limits, RunningItem, Schedule, WorkItem, WorkQueue, jitter};
use criterion::{Criterion, Throughput, criterion_main};
use jiff::{SignedDuration, Timestamp};

const OBJECTS: usize = 10_000;

/// Expression shapes seen in practice; `{m}` is a per-object minute.
const SHAPES: [&str; 8] = [
    "{m} 2 * * *",
    "CRON_TZ=Europe/Berlin {m} 2 * * *",
    "CRON_TZ=America/New_York {m} */4 * * *",
    "*/15 * * * *",
    "{m} * * * *",
    "{m} 3 * * MON-FRI",
    "CRON_TZ=Asia/Tokyo {m} 1 1,15 * *",
    "@daily",
];

fn schedules() -> Vec<Schedule> {
    (0..OBJECTS)
        .map(|n| {
            let minute = jitter("bench", &n.to_string(), SignedDuration::from_hours(1)).as_mins();
            SHAPES[n % SHAPES.len()]
                .replace("{m}", &minute.to_string())
                .parse()
                .unwrap()
        })
        .collect()
}

fn queue(now: Timestamp) -> WorkQueue {
    (0..OBJECTS)
        .map(|n| WorkItem {
            key: format!("ns-{}/volume-{n}", n % 50),
            node: Some(format!("node-{}", n % 20)),
            class: DataClass::ALL[n % 3],
            due: now - jitter("bench", &n.to_string(), SignedDuration::from_hours(30)),
        })
        .collect()
}

fn sched(c: &mut Criterion) {
    let now: Timestamp = "2026-03-29T00:30:00Z".parse().unwrap();
    let schedules = schedules();
    let queue = queue(now);
    let running: Vec<RunningItem> = (0..20)
        .map(|n| RunningItem {
            key: format!("running/{n}"),
            node: Some(format!("node-{n}")),
        })
        .collect();
    let limits = Limits {
        global: 64,
        per_node: 4,
    };

    let mut group = c.benchmark_group("sched");
    group.throughput(Throughput::Elements(OBJECTS as u64));
    group.bench_function("next_after_10k_schedules", |b| {
        b.iter(|| {
            schedules
                .iter()
                .filter_map(|s| s.next_after(black_box(now)))
                .count()
        })
    });
    group.bench_function("next_batch_10k_items", |b| {
        b.iter(|| queue.next_batch(black_box(now), &running, limits).len())
    });
    group.finish();
}

/// Runs every bench in this file (what `criterion_group!` would generate, but documented).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    sched(&mut criterion);
}

criterion_main!(benches);
