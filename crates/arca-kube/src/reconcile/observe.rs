//! From API objects to the observed state decisions read: pure conversions the controller
//! applies to what it fetched, kept here so they are tested without a cluster.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};

use super::names::DO_NOT_DELETE_LABEL;
use super::observed::{
    AgentResult, JobObserved, JobPhase, PvcObserved, SecretObserved, SnapshotObserved,
};
use crate::api::VolumeSnapshot;

impl PvcObserved {
    /// What decisions need of a PVC.
    pub fn from_pvc(pvc: &PersistentVolumeClaim) -> PvcObserved {
        let spec = pvc.spec.as_ref();
        let status = pvc.status.as_ref();
        PvcObserved {
            name: pvc.metadata.name.clone().unwrap_or_default(),
            phase: status.and_then(|s| s.phase.clone()),
            capacity: status
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage").cloned()),
            requested: spec
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage").cloned()),
            storage_class_name: spec.and_then(|s| s.storage_class_name.clone()),
            access_modes: spec
                .and_then(|s| s.access_modes.clone())
                .unwrap_or_default(),
        }
    }
}

impl SnapshotObserved {
    /// What decisions need of a VolumeSnapshot.
    pub fn from_snapshot(snapshot: &VolumeSnapshot) -> SnapshotObserved {
        let status = snapshot.status.as_ref();
        SnapshotObserved {
            name: snapshot.metadata.name.clone().unwrap_or_default(),
            ready_to_use: status.and_then(|s| s.ready_to_use).unwrap_or(false),
            restore_size: status.and_then(|s| s.restore_size.clone()),
            do_not_delete: snapshot
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(DO_NOT_DELETE_LABEL)),
        }
    }
}

impl SecretObserved {
    /// A Secret's name and key names; its values are dropped here.
    pub fn from_secret(secret: &Secret) -> SecretObserved {
        let data = secret.data.iter().flat_map(|d| d.keys());
        let string_data = secret.string_data.iter().flat_map(|d| d.keys());
        SecretObserved {
            name: secret.metadata.name.clone().unwrap_or_default(),
            keys: data.chain(string_data).cloned().collect(),
        }
    }
}

impl JobObserved {
    /// A mover Job and its pods: phase from the Job's conditions, the agent's result from the
    /// termination message of the newest pod that has one. A message that is not the agent's
    /// document counts as no result (the decision then reads the Job's phase alone).
    pub fn from_job(job: &Job, pods: &[Pod]) -> JobObserved {
        let status = job.status.as_ref();
        let condition = |kind: &str| {
            status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .find(|c| c.type_ == kind && c.status == "True")
        };
        let (phase, finished) = if let Some(done) = condition("Complete") {
            let at = status
                .and_then(|s| s.completion_time.as_ref())
                .or(done.last_transition_time.as_ref());
            (JobPhase::Succeeded, at)
        } else if let Some(failed) = condition("Failed") {
            (JobPhase::Failed, failed.last_transition_time.as_ref())
        } else {
            (JobPhase::Active, None)
        };
        let spec = job.spec.as_ref();
        let container = spec
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first());
        let mut terminated: Vec<_> = pods
            .iter()
            .filter_map(|pod| {
                let state = pod
                    .status
                    .as_ref()?
                    .container_statuses
                    .as_ref()?
                    .first()?
                    .state
                    .as_ref()?
                    .terminated
                    .clone()?;
                Some(state)
            })
            .collect();
        terminated.sort_by_key(|t| t.finished_at.as_ref().map(|f| f.0));
        let result = terminated
            .iter()
            .rev()
            .find_map(|t| t.message.as_deref())
            .and_then(|message| AgentResult::from_document(message).ok());
        JobObserved {
            name: job.metadata.name.clone().unwrap_or_default(),
            phase,
            parallelism: spec.and_then(|s| s.parallelism).unwrap_or(1),
            actions: container.and_then(|c| c.args.clone()).unwrap_or_default(),
            finished_at: finished.map(|t| t.0),
            result,
            logs: None,
            progress: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_completed_job_carries_the_agent_result_of_its_newest_pod() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "volsync-src-app"},
            "spec": {"parallelism": 1, "template": {"spec": {"containers": [
                {"name": "mover", "args": ["unlock", "backup"]}]}}},
            "status": {"completionTime": "2026-12-06T02:10:00Z",
                "conditions": [{"type": "Complete", "status": "True"}]}
        }))
        .unwrap();
        let pod = |finished: &str, message: &str| -> Pod {
            serde_json::from_value(json!({"status": {"containerStatuses": [{
                "name": "mover", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"terminated": {"exitCode": 0, "finishedAt": finished, "message": message}}}]}}))
            .unwrap()
        };
        let newest = r#"{"version": 1, "outcome": "success", "actions": []}"#;
        let observed = JobObserved::from_job(
            &job,
            &[
                pod("2026-12-06T02:10:00Z", newest),
                pod("2026-12-06T02:00:00Z", "garbage"),
            ],
        );
        assert_eq!(observed.phase, JobPhase::Succeeded);
        assert_eq!(observed.actions, ["unlock", "backup"]);
        assert_eq!(
            observed.finished_at.unwrap().to_string(),
            "2026-12-06T02:10:00Z"
        );
        assert!(observed.result.expect("the newest pod's document").success);

        let only_garbage = JobObserved::from_job(&job, &[pod("2026-12-06T02:00:00Z", "garbage")]);
        assert_eq!(only_garbage.result, None);
    }

    #[test]
    fn secrets_keep_key_names_only() {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "repo"},
            "data": {"RESTIC_PASSWORD": "c2VjcmV0"},
            "stringData": {"RESTIC_REPOSITORY": "/repository/app"}
        }))
        .unwrap();
        let observed = SecretObserved::from_secret(&secret);
        assert_eq!(observed.name, "repo");
        assert_eq!(
            observed.keys.iter().map(String::as_str).collect::<Vec<_>>(),
            ["RESTIC_PASSWORD", "RESTIC_REPOSITORY"]
        );
        assert!(!format!("{observed:?}").contains("c2VjcmV0"));
    }
}
