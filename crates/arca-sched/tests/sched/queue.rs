//! `WorkQueue::next_batch` proptests: limits, no running item, order, work conservation,
//! late lower classes ahead of barely-due higher ones, and starvation-freedom in a simulation
//! where demand exceeds capacity.

use std::collections::{HashMap, HashSet};

use arca_sched::{DataClass, Limits, RunningItem, Schedule, WorkItem, WorkQueue, level};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn class() -> impl Strategy<Value = DataClass> {
    prop::sample::select(&DataClass::ALL[..])
}

/// Items with keys from a small set (so some collide and replace each other), on a few nodes
/// or none, due from three days ago to an hour from now.
fn items() -> impl Strategy<Value = Vec<WorkItem>> {
    prop::collection::vec(
        (
            0u32..60,
            prop::option::of(0u32..4),
            class(),
            -60i64..(3 * 24 * 60),
        ),
        0..60,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .map(|(key, node, class, overdue_mins)| WorkItem {
                key: format!("ns/{key}"),
                node: node.map(|n| format!("node-{n}")),
                class,
                due: now() - SignedDuration::from_mins(overdue_mins),
            })
            .collect()
    })
}

fn running() -> impl Strategy<Value = Vec<RunningItem>> {
    prop::collection::vec((0u32..80, prop::option::of(0u32..4)), 0..8).prop_map(|raw| {
        raw.into_iter()
            .map(|(key, node)| RunningItem {
                key: format!("ns/{key}"),
                node: node.map(|n| format!("node-{n}")),
            })
            .collect()
    })
}

/// The documented order, computed independently: level down, class, overdue down, key.
fn expected_key(item: &WorkItem, now: Timestamp) -> (i64, DataClass, i128, String) {
    let overdue = now.duration_since(item.due).as_nanos();
    let level = (overdue / item.class.rpo().as_nanos()) as i64;
    (-level, item.class, -overdue, item.key.clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn batches_respect_limits_and_order(
        items in items(),
        running in running(),
        global in 0usize..12,
        per_node in 0usize..4,
    ) {
        let now = now();
        let queue: WorkQueue = items.iter().cloned().collect();
        let limits = Limits { global, per_node };
        let batch = queue.next_batch(now, &running, limits);
        let running_keys: HashSet<&str> = running.iter().map(|r| r.key.as_str()).collect();

        // Never more than the global limit allows, counting what runs.
        prop_assert!(running.len() + batch.len() <= global.max(running.len()));
        let unique: HashSet<&String> = batch.iter().collect();
        prop_assert_eq!(unique.len(), batch.len(), "a key twice");

        let mut per_node_count: HashMap<&str, usize> = HashMap::new();
        for node in running.iter().filter_map(|r| r.node.as_deref()) {
            *per_node_count.entry(node).or_default() += 1;
        }
        let mut added: HashMap<&str, usize> = HashMap::new();
        for key in &batch {
            let item = queue.get(key).expect("a queued key");
            prop_assert!(item.due <= now, "{} is not due", key);
            prop_assert!(!running_keys.contains(key.as_str()), "{} is running", key);
            if let Some(node) = item.node.as_deref() {
                *added.entry(node).or_default() += 1;
                let before = per_node_count.get(node).copied().unwrap_or(0);
                prop_assert!(added[node] <= per_node.saturating_sub(before), "node {} over its limit", node);
            }
        }

        // In priority order.
        let keys: Vec<_> = batch.iter().map(|k| expected_key(queue.get(k).unwrap(), now)).collect();
        prop_assert!(keys.windows(2).all(|w| w[0] < w[1]), "{:?}", batch);

        // Work-conserving: every eligible item left out lost to the limits, and every item
        // taken outranks every eligible item left out on a node with room or no node.
        let full = running.len() + batch.len() >= global;
        for item in queue.iter() {
            if item.due > now || running_keys.contains(item.key.as_str()) || unique.contains(&item.key) {
                continue;
            }
            let node_full = item.node.as_deref().is_some_and(|node| {
                per_node_count.get(node).copied().unwrap_or(0) + added.get(node).copied().unwrap_or(0) >= per_node
            });
            prop_assert!(full || node_full, "{} left out with room", item.key);
            if !node_full && let Some(last) = keys.last() {
                prop_assert!(*last < expected_key(item, now), "{} outranks the batch", item.key);
            }
        }
    }

    #[test]
    fn late_lower_classes_go_before_barely_due_higher_ones(
        items in items(),
        late_class in class(),
        late_by_mins in 1i64..(5 * 24 * 60),
        fresh_class in class(),
        fresh_mins in 0i64..60,
    ) {
        let now = now();
        let mut queue: WorkQueue = items.into_iter().collect();
        // One item past its RPO, one barely due (within a critical RPO, so within any).
        let late_due = now - late_class.rpo() - SignedDuration::from_mins(late_by_mins);
        let fresh_due = now - SignedDuration::from_mins(fresh_mins);
        queue.push(WorkItem { key: "late/x".into(), node: None, class: late_class, due: late_due });
        queue.push(WorkItem { key: "fresh/y".into(), node: None, class: fresh_class, due: fresh_due });
        prop_assert!(level(late_class, late_due, now) >= 1);
        prop_assert_eq!(level(fresh_class, fresh_due, now), 0);

        let all = queue.next_batch(now, &[], Limits { global: usize::MAX, per_node: usize::MAX });
        let position = |key: &str| all.iter().position(|k| k == key).unwrap();
        prop_assert!(position("late/x") < position("fresh/y"), "{:?}", all);
        // And generally: any item past its RPO goes before any item within it.
        let levels: Vec<i64> = all.iter().map(|k| {
            let item = queue.get(k).unwrap();
            level(item.class, item.due, now)
        }).collect();
        prop_assert!(levels.windows(2).all(|w| w[0] >= w[1]), "{:?}", levels);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Demand above capacity (up to 20 objects, critical ones hourly, one to three starts per
    /// ten-minute tick), simulated for twelve days: every run is started within the bound the
    /// aging rule guarantees. Each other object can go ahead of an item at level L at most once
    /// per L hours (it must be L RPOs, at least L hours, late to tie), so once L exceeds
    /// (N - 1) / (6c) the item is served: its wait is under 24 h × ((N - 1) / (6c) + 2).
    #[test]
    fn no_class_starves(
        objects in prop::collection::vec((class(), 0u32..60, 0u32..24), 1..20),
        capacity in 1usize..4,
    ) {
        let start: Timestamp = "2026-01-05T00:00:00Z".parse().unwrap();
        let tick = SignedDuration::from_mins(10);
        let schedules: Vec<(String, DataClass, Schedule)> = objects
            .iter()
            .enumerate()
            .map(|(n, (class, minute, hour))| {
                let expression = match class {
                    DataClass::Critical => format!("{minute} * * * *"),
                    DataClass::Important => format!("{minute} */4 * * *"),
                    DataClass::Archival => format!("{minute} {hour} * * *"),
                };
                (format!("ns/{n}"), *class, expression.parse().unwrap())
            })
            .collect();
        let mut queue: WorkQueue = schedules
            .iter()
            .map(|(key, class, schedule)| WorkItem {
                key: key.clone(),
                node: None,
                class: *class,
                due: schedule.next_after(start).unwrap(),
            })
            .collect();
        let n = schedules.len() as i64;
        let bound = SignedDuration::from_hours(24 * ((n - 1) / (6 * capacity as i64) + 2));
        let limits = Limits { global: capacity, per_node: 1 };
        let mut now = start;
        let mut served = HashSet::new();
        for _ in 0..(12 * 24 * 6) {
            now += tick;
            for key in queue.next_batch(now, &[], limits) {
                let item = queue.remove(&key).unwrap();
                let wait = now.duration_since(item.due);
                prop_assert!(wait <= bound, "{} ({}) waited {:?} > {:?}", key, item.class, wait, bound);
                let (_, class, schedule) = schedules.iter().find(|(k, _, _)| *k == key).unwrap();
                queue.push(WorkItem { key: key.clone(), node: None, class: *class, due: schedule.next_after(now).unwrap() });
                served.insert(key);
            }
            for item in queue.iter() {
                prop_assert!(now.duration_since(item.due) <= bound, "{} starving", item.key);
            }
        }
        prop_assert_eq!(served.len(), schedules.len());
    }
}
