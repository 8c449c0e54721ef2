//! Scale-out: which controller replica reconciles which object, decided over shard Leases
//! (`coordination.k8s.io/v1`).
//!
//! Every object is hashed (`namespace/name`, FNV-1a) to one of N shards; shard `i` is the Lease
//! [`lease_name`]`(i)` in the controller's namespace. A replica reconciles an object only while it
//! holds the object's shard. [`plan_leases`] decides, from the Leases as listed and the time, which
//! shards this replica acquires, renews and releases; the controller carries each step out as an
//! update guarded by the Lease's `resourceVersion`, so of two replicas racing for one shard at
//! most one write succeeds.
//!
//! Why no two replicas ever reconcile one shard at once: a replica takes a shard only when the
//! Lease's `renewTime + leaseDurationSeconds` has passed, and the holder trusts its hold only for
//! [`HOLD_FRACTION`] of the duration after its own last successful write ([`held_until`]): the
//! holder stops before anyone may start, with a quarter of the duration to spare for clock skew.
//! A dead replica's shards are free after one lease duration and taken at the next round of any
//! live replica (rounds run every quarter of the duration).
//!
//! Balancing: every replica also keeps a member Lease ([`member_lease_name`]) renewed, so a new
//! replica is seen before it holds any shard. The live replicas are the live members, the
//! holders of unexpired shard Leases and this one; each aims at `ceil(shards / live)`. A replica holding more releases its highest shards (it
//! stops reconciling them before the release is written); one holding fewer takes free shards,
//! lowest first.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};

/// How much of a lease duration a holder trusts its hold after its last successful write. The
/// rest is slack for clock skew between replicas.
pub const HOLD_FRACTION: f64 = 0.75;

/// The label every shard Lease carries (value: [`SHARD_LEASE_LABEL_VALUE`]).
pub const SHARD_LEASE_LABEL: &str = "app.kubernetes.io/component";
/// The value of [`SHARD_LEASE_LABEL`].
pub const SHARD_LEASE_LABEL_VALUE: &str = "arca-controller-shard";

/// The label of every member Lease (value: [`MEMBER_LEASE_LABEL_VALUE`]).
pub const MEMBER_LEASE_LABEL_VALUE: &str = "arca-controller-member";

/// The name of the member Lease of the replica `identity`.
pub fn member_lease_name(identity: &str) -> String {
    format!("arca-controller-member-{identity}")
}

/// The name of shard `shard`'s Lease.
pub fn lease_name(shard: u32) -> String {
    format!("arca-controller-shard-{shard}")
}

/// The shard number a Lease name stands for (the inverse of [`lease_name`]).
pub fn shard_of_lease(name: &str) -> Option<u32> {
    name.strip_prefix("arca-controller-shard-")?.parse().ok()
}

/// The shard of the object `namespace/name` among `shards` shards (stable across replicas,
/// versions and platforms: FNV-1a over the bytes).
pub fn shard_of(namespace: &str, name: &str, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shards.max(1))) as u32
}

/// One shard Lease as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardLease {
    /// The shard it stands for.
    pub shard: u32,
    /// `spec.holderIdentity` (absent or empty: free).
    pub holder: Option<String>,
    /// `spec.renewTime`.
    pub renew_time: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`.
    pub duration: SignedDuration,
    /// `metadata.resourceVersion`: every step's update is guarded by it.
    pub resource_version: String,
}

impl ShardLease {
    /// The holder, if the lease has one that has not expired at `now`.
    pub fn live_holder(&self, now: Timestamp) -> Option<&str> {
        let holder = self.holder.as_deref().filter(|h| !h.is_empty())?;
        let renewed = self.renew_time?;
        (renewed + self.duration > now).then_some(holder)
    }
}

/// What to write to one Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStep {
    /// Become the holder of a free or expired Lease (`holderIdentity` = me, `renewTime` = now,
    /// `acquireTime` = now, `leaseTransitions` + 1).
    Acquire {
        /// The shard.
        shard: u32,
        /// The `resourceVersion` the update must match.
        resource_version: String,
    },
    /// Extend my own Lease (`renewTime` = now).
    Renew {
        /// The shard.
        shard: u32,
        /// The `resourceVersion` the update must match.
        resource_version: String,
    },
    /// Give my Lease up (`holderIdentity` cleared). Stop reconciling the shard before writing.
    Release {
        /// The shard.
        shard: u32,
        /// The `resourceVersion` the update must match.
        resource_version: String,
    },
}

impl LeaseStep {
    /// The shard the step writes.
    pub fn shard(&self) -> u32 {
        match self {
            LeaseStep::Acquire { shard, .. }
            | LeaseStep::Renew { shard, .. }
            | LeaseStep::Release { shard, .. } => *shard,
        }
    }
}

/// Until when a replica that wrote `renewTime = written` with `duration` may reconcile the
/// shard.
pub fn held_until(written: Timestamp, duration: SignedDuration) -> Timestamp {
    written + duration.mul_f64(HOLD_FRACTION)
}

/// Which Leases `me` acquires, renews and releases now (see the [module docs](self)). `leases`
/// holds the listed shard Leases (missing shards are created free by the controller first and
/// simply not considered here); `members` the identities of live member Leases (see
/// [`ShardLease::live_holder`]); `shards` is the configured shard count.
pub fn plan_leases(
    leases: &[ShardLease],
    members: &[&str],
    me: &str,
    now: Timestamp,
    shards: u32,
) -> Vec<LeaseStep> {
    let mut leases: Vec<&ShardLease> = leases.iter().filter(|l| l.shard < shards).collect();
    leases.sort_by_key(|l| l.shard);
    let live: BTreeSet<&str> = leases
        .iter()
        .filter_map(|l| l.live_holder(now))
        .chain(members.iter().copied())
        .chain([me])
        .collect();
    let fair = (shards as usize).div_ceil(live.len());
    let mine: Vec<&ShardLease> = leases
        .iter()
        .copied()
        .filter(|l| l.live_holder(now) == Some(me))
        .collect();
    let mut steps = Vec::new();
    for (index, lease) in mine.iter().enumerate() {
        let resource_version = lease.resource_version.clone();
        let shard = lease.shard;
        steps.push(if index < fair {
            LeaseStep::Renew {
                shard,
                resource_version,
            }
        } else {
            LeaseStep::Release {
                shard,
                resource_version,
            }
        });
    }
    let wanted = fair.saturating_sub(mine.len());
    steps.extend(
        leases
            .iter()
            .filter(|l| l.live_holder(now).is_none())
            .take(wanted)
            .map(|l| LeaseStep::Acquire {
                shard: l.shard,
                resource_version: l.resource_version.clone(),
            }),
    );
    steps
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const DURATION: SignedDuration = SignedDuration::from_secs(15);

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn lease(shard: u32, holder: Option<&str>, renewed: Option<i64>) -> ShardLease {
        ShardLease {
            shard,
            holder: holder.map(Into::into),
            renew_time: renewed.map(t),
            duration: DURATION,
            resource_version: format!("rv{shard}"),
        }
    }

    fn kinds(steps: &[LeaseStep]) -> Vec<(char, u32)> {
        steps
            .iter()
            .map(|s| {
                let kind = match s {
                    LeaseStep::Acquire { .. } => 'a',
                    LeaseStep::Renew { .. } => 'r',
                    LeaseStep::Release { .. } => 'x',
                };
                (kind, s.shard())
            })
            .collect()
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("ns", "app", 16), shard_of("ns", "app", 16));
        assert_ne!(shard_of("a", "bc", 1 << 20), shard_of("ab", "c", 1 << 20));
        let mut counts = [0u32; 16];
        for i in 0..1600 {
            counts[shard_of("team", &format!("app-{i}"), 16) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
        assert_eq!(shard_of("ns", "x", 0), 0);
        assert_eq!(shard_of_lease(&lease_name(7)), Some(7));
        assert_eq!(shard_of_lease("other"), None);
    }

    #[test]
    fn plans() {
        let now = 100;
        type Case = (&'static str, Vec<ShardLease>, Vec<(char, u32)>);
        let cases: Vec<Case> = vec![
            (
                "alone, all free: take every shard",
                (0..4).map(|s| lease(s, None, None)).collect(),
                vec![('a', 0), ('a', 1), ('a', 2), ('a', 3)],
            ),
            (
                "alone, all mine: renew all",
                (0..4)
                    .map(|s| lease(s, Some("me"), Some(now - 5)))
                    .collect(),
                vec![('r', 0), ('r', 1), ('r', 2), ('r', 3)],
            ),
            (
                "a live peer holds all: take nothing yet (it releases its excess first)",
                (0..4).map(|s| lease(s, Some("b"), Some(now - 5))).collect(),
                vec![],
            ),
            (
                "a peer appeared: release down to the fair share",
                (0..4)
                    .map(|s| lease(s, Some("me"), Some(now - 5)))
                    .chain([lease(4, Some("b"), Some(now - 1))])
                    .collect(),
                vec![('r', 0), ('r', 1), ('r', 2), ('x', 3)],
            ),
            (
                "a dead peer's leases expired: take them",
                vec![
                    lease(0, Some("me"), Some(now - 1)),
                    lease(1, Some("dead"), Some(now - 15)),
                    lease(2, Some("dead"), Some(now - 40)),
                    lease(3, Some("me"), Some(now - 1)),
                ],
                vec![('r', 0), ('r', 3), ('a', 1), ('a', 2)],
            ),
            (
                "my own expired lease is free like any other",
                vec![
                    lease(0, Some("me"), Some(now - 20)),
                    lease(1, Some("b"), Some(now)),
                ],
                vec![('a', 0)],
            ),
            (
                "two live peers: fair share of 4 is 2; one free shard taken",
                vec![
                    lease(0, Some("b"), Some(now)),
                    lease(1, Some("b"), Some(now)),
                    lease(2, Some("me"), Some(now)),
                    lease(3, None, None),
                ],
                vec![('r', 2), ('a', 3)],
            ),
            (
                "a live member holding nothing yet counts: release down to half",
                (0..4)
                    .map(|s| lease(s, Some("me"), Some(now - 5)))
                    .collect(),
                vec![('r', 0), ('r', 1), ('x', 2), ('x', 3)],
            ),
            (
                "an empty holder string is free",
                vec![lease(0, Some(""), Some(now))],
                vec![('a', 0)],
            ),
        ];
        for (name, leases, expected) in cases {
            let shards = leases.len() as u32;
            let members: &[&str] = if name.starts_with("a live member") {
                &["newcomer"]
            } else {
                &[]
            };
            assert_eq!(
                kinds(&plan_leases(&leases, members, "me", t(now), shards)),
                expected,
                "{name}"
            );
        }
    }

    /// An in-memory Lease store that refuses stale writes, as the API server does.
    struct Store {
        leases: Vec<ShardLease>,
        version: u64,
    }

    impl Store {
        fn write(&mut self, step: &LeaseStep, me: &str, now: Timestamp) -> bool {
            let (shard, rv) = match step {
                LeaseStep::Acquire {
                    shard,
                    resource_version,
                }
                | LeaseStep::Renew {
                    shard,
                    resource_version,
                }
                | LeaseStep::Release {
                    shard,
                    resource_version,
                } => (*shard, resource_version),
            };
            let lease = &mut self.leases[shard as usize];
            if &lease.resource_version != rv {
                return false;
            }
            self.version += 1;
            lease.resource_version = self.version.to_string();
            match step {
                LeaseStep::Acquire { .. } | LeaseStep::Renew { .. } => {
                    lease.holder = Some(me.to_owned());
                    lease.renew_time = Some(now);
                }
                LeaseStep::Release { .. } => lease.holder = None,
            }
            true
        }
    }

    proptest::proptest! {
        /// Replicas read the Leases, and later (with others' writes in between) plan and write
        /// with guarded updates; some die. At no moment do two replicas trust a hold on one
        /// shard, and a live replica ends up holding every shard once the others are dead.
        #[test]
        fn never_two_holders(
            shards in 1u32..6,
            steps in proptest::collection::vec((0usize..3, proptest::bool::ANY, 0i64..8_000, 0usize..12), 1..120),
        ) {
            let names = ["a", "b", "c"];
            let mut store = Store {
                leases: (0..shards).map(|s| ShardLease {
                    shard: s, holder: None, renew_time: None, duration: DURATION,
                    resource_version: "0".into(),
                }).collect(),
                version: 0,
            };
            let mut read: Vec<Vec<ShardLease>> = vec![store.leases.clone(); 3];
            let mut held: Vec<BTreeMap<u32, Timestamp>> = vec![BTreeMap::new(); 3];
            let mut dead = [false; 3];
            let mut now = t(0);
            for (replica, read_now, advance_ms, die) in steps {
                now += SignedDuration::from_millis(advance_ms);
                if die == 0 && replica != 0 {
                    dead[replica] = true;
                }
                if dead[replica] {
                    continue;
                }
                if read_now {
                    read[replica] = store.leases.clone();
                } else {
                    let me = names[replica];
                    let members: Vec<&str> = (0..3).filter(|r| !dead[*r]).map(|r| names[r]).collect();
                    for step in plan_leases(&read[replica], &members, me, now, shards) {
                        if matches!(step, LeaseStep::Release { .. }) {
                            held[replica].remove(&step.shard());
                        }
                        let ok = store.write(&step, me, now);
                        if ok && !matches!(step, LeaseStep::Release { .. }) {
                            held[replica].insert(step.shard(), held_until(now, DURATION));
                        }
                    }
                }
                for shard in 0..shards {
                    let trusting = (0..3)
                        .filter(|&r| held[r].get(&shard).is_some_and(|until| *until > now))
                        .count();
                    proptest::prop_assert!(trusting <= 1, "shard {shard} trusted by {trusting} replicas");
                }
            }
            // Liveness: replica "a" never dies; once the others stop and their leases expire,
            // a few rounds give it every shard.
            now += DURATION * 2;
            for _ in 0..3 {
                read[0] = store.leases.clone();
                for step in plan_leases(&read[0], &[], "a", now, shards) {
                    if store.write(&step, "a", now) && !matches!(step, LeaseStep::Release { .. }) {
                        held[0].insert(step.shard(), held_until(now, DURATION));
                    }
                }
            }
            proptest::prop_assert_eq!(held[0].values().filter(|u| **u > now).count(), shards as usize);
        }
    }
}
