//! Scale-out: the I/O around `arca_kube::lease`. A background task lists the shard Leases in
//! the controller's namespace (creating missing ones free), asks `plan_leases` what to write,
//! writes each step as a `resourceVersion`-guarded replace, and keeps the set of shards this
//! replica may reconcile. Reconciles of objects in other shards return at once; gaining a shard
//! wakes every object so the new shard's ones are reconciled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use arca_kube::lease::{
    LeaseStep, MEMBER_LEASE_LABEL_VALUE, SHARD_LEASE_LABEL, SHARD_LEASE_LABEL_VALUE, ShardLease,
    held_until, lease_name, member_lease_name, plan_leases, shard_of, shard_of_lease,
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

/// Where and as whom this replica takes part in sharding.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The namespace of the shard Leases (the controller's own).
    pub namespace: String,
    /// This replica's `holderIdentity` (its pod name).
    pub identity: String,
    /// How many shards the objects are spread over (the same on every replica).
    pub shards: u32,
    /// `leaseDurationSeconds` of every hold.
    pub duration: SignedDuration,
}

/// The shards this replica may reconcile now.
pub struct Shards {
    /// `None`: sharding is off and every object is this replica's.
    count: Option<u32>,
    /// Shard → until when this replica trusts its hold.
    held: Mutex<HashMap<u32, Timestamp>>,
}

impl Shards {
    /// Every object is this replica's (a single replica, no Leases).
    pub fn all() -> Shards {
        Shards {
            count: None,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Only the objects of shards held through Leases.
    pub fn leased(count: u32) -> Shards {
        Shards {
            count: Some(count),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this replica reconciles `namespace/name` now.
    pub fn owns(&self, namespace: &str, name: &str, now: Timestamp) -> bool {
        let Some(count) = self.count else {
            return true;
        };
        let shard = shard_of(namespace, name, count);
        self.lock().get(&shard).is_some_and(|until| *until > now)
    }

    /// How many shards this replica holds now.
    pub fn held_count(&self, now: Timestamp) -> usize {
        match self.count {
            None => 1,
            Some(_) => self.lock().values().filter(|until| **until > now).count(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Timestamp>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps this replica's Leases: a round every quarter of the lease duration, forever. After a
/// round in which this replica gained a shard, `gained` is signalled.
pub async fn run(client: Client, config: LeaseConfig, shards: &Shards, gained: watch::Sender<()>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let pause = Duration::from_millis((config.duration.as_millis() / 4).max(100) as u64);
    loop {
        match round(&api, &config, shards).await {
            Ok(true) => {
                let _ = gained.send(());
            }
            Ok(false) => {}
            Err(err) => tracing::warn!("shard leases: {err}"),
        }
        tokio::time::sleep(pause).await;
    }
}

/// The shard Lease fields read back as the decision sees them.
fn observed(shard: u32, lease: &Lease) -> ShardLease {
    let spec = lease.spec.clone().unwrap_or_default();
    ShardLease {
        shard,
        holder: spec.holder_identity,
        renew_time: spec.renew_time.map(|t| t.0),
        duration: SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0))),
        resource_version: lease.resource_version().unwrap_or_default(),
    }
}

/// Renews this replica's member Lease (only this replica writes it) and lists the live members.
async fn members(api: &Api<Lease>, config: &LeaseConfig) -> kube::Result<Vec<String>> {
    let now = Timestamp::now();
    let member = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": member_lease_name(&config.identity),
            "labels": {SHARD_LEASE_LABEL: MEMBER_LEASE_LABEL_VALUE}},
        "spec": {"holderIdentity": config.identity, "renewTime": MicroTime(now),
            "leaseDurationSeconds": config.duration.as_secs()},
    });
    api.patch(
        &member_lease_name(&config.identity),
        &PatchParams::apply("arca-controller").force(),
        &Patch::Apply(&member),
    )
    .await?;
    let selector = format!("{SHARD_LEASE_LABEL}={MEMBER_LEASE_LABEL_VALUE}");
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .iter()
        .filter_map(|lease| observed(0, lease).live_holder(now).map(str::to_owned))
        .collect())
}

/// One round: renew the member Lease, create missing shard Leases, carry out `plan_leases`;
/// whether a shard was gained.
pub async fn round(api: &Api<Lease>, config: &LeaseConfig, shards: &Shards) -> kube::Result<bool> {
    let members = members(api, config).await?;
    let selector = format!("{SHARD_LEASE_LABEL}={SHARD_LEASE_LABEL_VALUE}");
    let mut listed: HashMap<u32, Lease> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter_map(|lease| Some((shard_of_lease(&lease.name_any())?, lease)))
        .collect();
    let missing: Vec<u32> = (0..config.shards)
        .filter(|s| !listed.contains_key(s))
        .collect();
    for shard in missing {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(lease_name(shard)),
                labels: Some([(SHARD_LEASE_LABEL.into(), SHARD_LEASE_LABEL_VALUE.into())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                lease_duration_seconds: Some(config.duration.as_secs() as i32),
                ..LeaseSpec::default()
            }),
        };
        match api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                listed.insert(shard, created);
            }
            // Another replica created it first: the next round sees it.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(err),
        }
    }
    let now = Timestamp::now();
    let observed: Vec<ShardLease> = listed
        .iter()
        .map(|(shard, lease)| observed(*shard, lease))
        .collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let mut gained = false;
    for step in plan_leases(&observed, &members, &config.identity, now, config.shards) {
        let shard = step.shard();
        let Some(mut lease) = listed.remove(&shard) else {
            continue;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        match &step {
            LeaseStep::Release { .. } => {
                // Stop reconciling the shard before anyone may take it.
                shards.lock().remove(&shard);
                spec.holder_identity = None;
            }
            LeaseStep::Acquire { .. } => {
                spec.holder_identity = Some(config.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.lease_duration_seconds = Some(config.duration.as_secs() as i32);
            }
            LeaseStep::Renew { .. } => {
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(config.duration.as_secs() as i32);
            }
        }
        // `lease` still carries the resourceVersion the plan saw: a stale write gets 409.
        match api
            .replace(&lease_name(shard), &PostParams::default(), &lease)
            .await
        {
            Ok(_) if matches!(step, LeaseStep::Release { .. }) => {
                tracing::info!(shard, "released shard lease");
            }
            Ok(_) => {
                let previous = shards
                    .lock()
                    .insert(shard, held_until(now, config.duration));
                if previous.is_none_or(|until| until <= now) {
                    tracing::info!(shard, "acquired shard lease");
                    gained = true;
                }
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(shard, "shard lease changed under us; next round");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(gained)
}
