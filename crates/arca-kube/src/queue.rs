//! The mover queue: whether a sync that wants to start gets one of the cluster's mover slots now.
//!
//! The controller keeps one [`arca_sched::WorkQueue`] of syncs waiting to start and observes the
//! mover Jobs that run (cluster-wide, by the operator's `created-by` label). When a source's
//! decision starts a sync ([`starts_sync`]), the controller asks [`claim_slot`]; a sync that does
//! not get one is held back by [`hold_for_slot`]: nothing is made, the `Synchronizing`
//! condition says `WaitingForSlot`, and the object is looked at again after a short delay.
//! Order and limits are arca-sched's: the more overdue (in RPOs) first, then critical before
//! important before archival, under `--max-concurrent-jobs` and `--max-jobs-per-node`.
//!
//! Nodes: a running mover's node is where its pod is scheduled (`spec.nodeName`); a waiting
//! sync's node is where its source volume is in use (the node of a running pod that mounts the
//! claim), else the node the claim was provisioned for (`volume.kubernetes.io/selected-node`),
//! else unknown, and an unknown node counts against the global limit only ([`node_of_claim`]).
//! Restores (ReplicationDestinations) are never queued: a restore is what the RTO measures.

use std::collections::HashMap;

use arca_sched::{Limits, RunningItem, WorkItem, WorkQueue};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

/// The answer of [`claim_slot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Start now (the item left the queue).
    Granted,
    /// Wait: the limits are reached by running movers or by more urgent waiting syncs.
    Waiting,
}

/// Queues `item` (replacing its earlier entry) and grants it a slot if it is among the syncs
/// the limits allow to start now, given the movers `running`.
pub fn claim_slot(
    queue: &mut WorkQueue,
    item: WorkItem,
    running: &[RunningItem],
    limits: Limits,
    now: Timestamp,
) -> Slot {
    let key = item.key.clone();
    queue.push(item);
    if queue.next_batch(now, running, limits).contains(&key) {
        queue.remove(&key);
        Slot::Granted
    } else {
        Slot::Waiting
    }
}

/// The controller's queue of waiting syncs. A waiting sync asks again every few seconds; one
/// that has not asked for `forget_after` (its object was deleted, or moved to another replica's
/// shard) is dropped before the next claim, so it cannot hold a slot it will never use.
#[derive(Clone, Debug)]
pub struct SlotQueue {
    queue: WorkQueue,
    asked: HashMap<String, Timestamp>,
    forget_after: SignedDuration,
}

impl SlotQueue {
    /// An empty queue forgetting items not asked for within `forget_after`.
    pub fn new(forget_after: SignedDuration) -> SlotQueue {
        SlotQueue {
            queue: WorkQueue::new(),
            asked: HashMap::new(),
            forget_after,
        }
    }

    /// [`claim_slot`], after dropping the items no longer asked for.
    pub fn claim(
        &mut self,
        item: WorkItem,
        running: &[RunningItem],
        limits: Limits,
        now: Timestamp,
    ) -> Slot {
        let forget_after = self.forget_after;
        let stale: Vec<String> = self
            .asked
            .iter()
            .filter(|(_, at)| now.duration_since(**at) > forget_after)
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.remove(&key);
        }
        self.asked.insert(item.key.clone(), now);
        let key = item.key.clone();
        let slot = claim_slot(&mut self.queue, item, running, limits, now);
        if slot == Slot::Granted {
            self.asked.remove(&key);
        }
        slot
    }

    /// Drops the item of `key` (its object no longer waits).
    pub fn remove(&mut self, key: &str) {
        self.queue.remove(key);
        self.asked.remove(key);
    }

    /// How many syncs wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no sync waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The node of a claim (see the [module docs](self)): the node of a running pod mounting it,
/// else its `volume.kubernetes.io/selected-node` annotation.
pub fn node_of_claim(claim: &PersistentVolumeClaim, pods: &[Pod]) -> Option<String> {
    let name = claim.metadata.name.as_deref()?;
    let mounted = pods.iter().find_map(|pod| {
        let spec = pod.spec.as_ref()?;
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let mounts = spec.volumes.iter().flatten().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == name)
        });
        (running && mounts)
            .then(|| spec.node_name.clone())
            .flatten()
    });
    mounted.or_else(|| {
        claim
            .metadata
            .annotations
            .as_ref()?
            .get("volume.kubernetes.io/selected-node")
            .cloned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arca_sched::DataClass;
    use jiff::SignedDuration;

    fn item(key: &str, node: Option<&str>, class: DataClass, overdue_mins: i64) -> WorkItem {
        WorkItem {
            key: key.into(),
            node: node.map(Into::into),
            class,
            due: now() - SignedDuration::from_mins(overdue_mins),
        }
    }

    fn now() -> Timestamp {
        "2026-12-06T03:00:00Z".parse().unwrap()
    }

    fn running(key: &str, node: Option<&str>) -> RunningItem {
        RunningItem {
            key: key.into(),
            node: node.map(Into::into),
        }
    }

    const LIMITS: Limits = Limits {
        global: 2,
        per_node: 1,
    };

    #[test]
    fn slots() {
        struct Case {
            name: &'static str,
            queued: Vec<WorkItem>,
            running: Vec<RunningItem>,
            asking: WorkItem,
            expected: Slot,
        }
        let cases = [
            Case {
                name: "free cluster",
                queued: vec![],
                running: vec![],
                asking: item("ns/a", Some("n1"), DataClass::Archival, 0),
                expected: Slot::Granted,
            },
            Case {
                name: "global limit reached",
                queued: vec![],
                running: vec![running("ns/x", None), running("ns/y", None)],
                asking: item("ns/a", None, DataClass::Critical, 90),
                expected: Slot::Waiting,
            },
            Case {
                name: "its node is busy",
                queued: vec![],
                running: vec![running("ns/x", Some("n1"))],
                asking: item("ns/a", Some("n1"), DataClass::Critical, 0),
                expected: Slot::Waiting,
            },
            Case {
                name: "another node is busy, not its own",
                queued: vec![],
                running: vec![running("ns/x", Some("n2"))],
                asking: item("ns/a", Some("n1"), DataClass::Archival, 0),
                expected: Slot::Granted,
            },
            Case {
                name: "a waiting critical sync goes before an important one for the last slot",
                queued: vec![item("ns/crit", None, DataClass::Critical, 1)],
                running: vec![running("ns/x", None)],
                asking: item("ns/imp", None, DataClass::Important, 30),
                expected: Slot::Waiting,
            },
            Case {
                name: "the critical sync itself gets the slot",
                queued: vec![item("ns/imp", None, DataClass::Important, 30)],
                running: vec![running("ns/x", None)],
                asking: item("ns/crit", None, DataClass::Critical, 1),
                expected: Slot::Granted,
            },
            Case {
                name: "archival overdue by more than its RPO climbs above a fresh critical one",
                queued: vec![item("ns/crit", None, DataClass::Critical, 1)],
                running: vec![running("ns/x", None)],
                asking: item("ns/arch", None, DataClass::Archival, 25 * 60),
                expected: Slot::Granted,
            },
            Case {
                name: "a more urgent item on a busy node does not block it",
                queued: vec![item("ns/crit", Some("n1"), DataClass::Critical, 1)],
                running: vec![running("ns/x", Some("n1"))],
                asking: item("ns/arch", Some("n2"), DataClass::Archival, 0),
                expected: Slot::Granted,
            },
        ];
        for case in cases {
            let mut queue: WorkQueue = case.queued.into_iter().collect();
            let key = case.asking.key.clone();
            let slot = claim_slot(&mut queue, case.asking, &case.running, LIMITS, now());
            assert_eq!(slot, case.expected, "{}", case.name);
            // A granted item leaves the queue; a waiting one stays, once.
            assert_eq!(
                queue.get(&key).is_some(),
                slot == Slot::Waiting,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn items_no_longer_asked_for_are_forgotten() {
        let mut queue = SlotQueue::new(SignedDuration::from_secs(60));
        let one = Limits {
            global: 1,
            per_node: 1,
        };
        let critical = item("ns/crit", None, DataClass::Critical, 5);
        let important = item("ns/imp", None, DataClass::Important, 5);
        assert_eq!(
            queue.claim(critical, &[running("ns/x", None)], one, now()),
            Slot::Waiting
        );
        // The critical item outranks it while it keeps asking ...
        let later = now() + SignedDuration::from_secs(30);
        assert_eq!(
            queue.claim(important.clone(), &[], one, later),
            Slot::Waiting
        );
        assert_eq!(queue.len(), 2);
        // ... and stops blocking it once it has not asked for a minute.
        let much_later = now() + SignedDuration::from_secs(61);
        assert_eq!(queue.claim(important, &[], one, much_later), Slot::Granted);
        assert!(queue.is_empty());
    }

    #[test]
    fn claims_find_their_node() {
        let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data", "annotations": {"volume.kubernetes.io/selected-node": "provisioned"}}
        }))
        .unwrap();
        let pod = |name: &str, claim: &str, node: &str, phase: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"nodeName": node, "containers": [],
                         "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        assert_eq!(
            node_of_claim(
                &claim,
                &[
                    pod("other", "other", "n9", "Running"),
                    pod("app", "data", "n1", "Running")
                ]
            ),
            Some("n1".into())
        );
        assert_eq!(
            node_of_claim(&claim, &[pod("done", "data", "n1", "Succeeded")]),
            Some("provisioned".into())
        );
        let bare: PersistentVolumeClaim =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "data"}})).unwrap();
        assert_eq!(node_of_claim(&bare, &[]), None);
    }
}
