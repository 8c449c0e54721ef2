//! The work queue: which due objects start next, under global and per-node concurrency limits.
//!
//! Order: an item's *level* is how many whole RPOs of its class it is overdue by
//! (`floor(overdue / rpo)`); higher levels go first, then the more important class, then the more
//! overdue item, then the key (so the order is total and repeatable). Within its RPO every item
//! is at level 0, so the order is "by class, then by how overdue". An item that has waited past
//! its RPO climbs above every item still within its own, whatever the classes: an archival
//! backup a day late goes before a critical one that just became due. Since each object has at
//! most one item (the key is `namespace/name`) and a waiting item's level keeps rising, no class
//! starves.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;

use crate::class::DataClass;

/// One object waiting for its turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    /// `namespace/name` of the object; one item per key.
    pub key: String,
    /// The node the object's volume is attached to, if known: the per-node limit applies to it.
    pub node: Option<String>,
    /// The object's data class.
    pub class: DataClass,
    /// When the run became (or becomes) due; items due after `now` are not started.
    pub due: Timestamp,
}

/// A run in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningItem {
    /// `namespace/name` of the object.
    pub key: String,
    /// The node it runs on, if known.
    pub node: Option<String>,
}

/// Concurrency limits for [`WorkQueue::next_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Runs at once in the whole cluster.
    pub global: usize,
    /// Runs at once on one node (items with no node count against the global limit only).
    pub per_node: usize,
}

/// The pending items, one per key.
#[derive(Clone, Debug, Default)]
pub struct WorkQueue {
    items: BTreeMap<String, WorkItem>,
}

/// The sort key of an item (smaller sorts first).
type Priority<'a> = (Reverse<i64>, DataClass, Reverse<i128>, &'a str);

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> WorkQueue {
        WorkQueue::default()
    }

    /// Adds an item, replacing any item with the same key.
    pub fn push(&mut self, item: WorkItem) {
        self.items.insert(item.key.clone(), item);
    }

    /// Removes and returns the item with this key.
    pub fn remove(&mut self, key: &str) -> Option<WorkItem> {
        self.items.remove(key)
    }

    /// The item with this key.
    pub fn get(&self, key: &str) -> Option<&WorkItem> {
        self.items.get(key)
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &WorkItem> {
        self.items.values()
    }

    /// The keys of the items to start now, most urgent first: only items due at or before `now`,
    /// none that is already running, and never more than the limits allow counting `running`.
    /// An item blocked by its node's limit is passed over for the next one.
    pub fn next_batch(
        &self,
        now: Timestamp,
        running: &[RunningItem],
        limits: Limits,
    ) -> Vec<String> {
        let mut free = limits.global.saturating_sub(running.len());
        if free == 0 {
            return Vec::new();
        }
        let running_keys: HashSet<&str> = running.iter().map(|r| r.key.as_str()).collect();
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for node in running.iter().filter_map(|r| r.node.as_deref()) {
            *per_node.entry(node).or_default() += 1;
        }
        let mut candidates: Vec<(Priority<'_>, &WorkItem)> = self
            .items
            .values()
            .filter(|item| item.due <= now && !running_keys.contains(item.key.as_str()))
            .map(|item| (priority(item, now), item))
            .collect();
        candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut batch = Vec::new();
        for (_, item) in candidates {
            if let Some(node) = item.node.as_deref() {
                let count = per_node.entry(node).or_default();
                if *count >= limits.per_node {
                    continue;
                }
                *count += 1;
            }
            batch.push(item.key.clone());
            free -= 1;
            if free == 0 {
                break;
            }
        }
        batch
    }
}

impl FromIterator<WorkItem> for WorkQueue {
    fn from_iter<I: IntoIterator<Item = WorkItem>>(items: I) -> WorkQueue {
        let mut queue = WorkQueue::new();
        for item in items {
            queue.push(item);
        }
        queue
    }
}

/// How many whole RPOs of its class an item due at or before `now` is overdue by.
pub fn level(class: DataClass, due: Timestamp, now: Timestamp) -> i64 {
    let overdue = now.duration_since(due).as_nanos().max(0);
    (overdue / class.rpo().as_nanos()) as i64
}

fn priority(item: &WorkItem, now: Timestamp) -> Priority<'_> {
    let overdue = now.duration_since(item.due).as_nanos();
    (
        Reverse(level(item.class, item.due, now)),
        item.class,
        Reverse(overdue),
        &item.key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn item(
        key: &str,
        node: Option<&str>,
        class: DataClass,
        overdue_mins: i64,
        now: Timestamp,
    ) -> WorkItem {
        WorkItem {
            key: key.into(),
            node: node.map(Into::into),
            class,
            due: now - SignedDuration::from_mins(overdue_mins),
        }
    }

    #[test]
    fn order_and_limits() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let queue: WorkQueue = [
            item(
                "ns/archival-late",
                Some("n1"),
                DataClass::Archival,
                25 * 60,
                now,
            ),
            item("ns/critical-fresh", Some("n1"), DataClass::Critical, 1, now),
            item(
                "ns/critical-older",
                Some("n2"),
                DataClass::Critical,
                30,
                now,
            ),
            item("ns/important", None, DataClass::Important, 200, now),
            item("ns/future", None, DataClass::Critical, -5, now),
            item("ns/running", Some("n2"), DataClass::Critical, 50, now),
        ]
        .into_iter()
        .collect();
        let unlimited = Limits {
            global: 100,
            per_node: 100,
        };
        let running = [RunningItem {
            key: "ns/running".into(),
            node: Some("n2".into()),
        }];
        assert_eq!(
            queue.next_batch(now, &running, unlimited),
            [
                "ns/archival-late",
                "ns/critical-older",
                "ns/critical-fresh",
                "ns/important"
            ]
        );
        // n1 allows one run: the late archival item takes it and critical-fresh waits.
        assert_eq!(
            queue.next_batch(
                now,
                &running,
                Limits {
                    global: 100,
                    per_node: 1
                }
            ),
            ["ns/archival-late", "ns/important"]
        );
        // Global 3 with one running leaves two slots.
        assert_eq!(
            queue.next_batch(
                now,
                &running,
                Limits {
                    global: 3,
                    per_node: 100
                }
            ),
            ["ns/archival-late", "ns/critical-older"]
        );
        assert!(
            queue
                .next_batch(
                    now,
                    &running,
                    Limits {
                        global: 1,
                        per_node: 100
                    }
                )
                .is_empty()
        );
    }
}
