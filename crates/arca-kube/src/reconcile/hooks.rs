//! Pre- and post-backup hooks (`spec.arca.hooks`): what to run and where, what the runs' results
//! mean, and the decision when a hook with `failurePolicy: Fail` fails.
//!
//! The controller carries an [`Action::RunHook`] out by asking [`HookPlan::for_phase`] what to
//! run, listing the pods the plan's selector matches, running the command in every one of
//! [`target_pods`] (`pods/exec`, each bounded by the plan's timeout), and handing the results to
//! [`judge`]. A [`HookVerdict::Stop`] replaces the rest of the decision with [`hook_failed`].

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::core::Selector;

use super::engine::{self, Out, Reason, set_condition};
use super::objects::Owner;
use super::source::{state_of, store};
use super::{
    ControllerConfig, EventType, HookPhase, SourceDecision, SourceObserved, SyncOutcome,
    SyncReport, format_go_duration, parse_go_duration,
};
use crate::Error;
use crate::api::{HookFailurePolicy, MoverResult, MoverStatus};

/// How long a hook may run when its `timeout` is not given.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of a failed command's output a verdict quotes (its end).
const OUTPUT_TAIL: usize = 512;

impl HookPhase {
    /// `pre-backup` / `post-backup`, as events and messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::PreBackup => "pre-backup",
            HookPhase::PostBackup => "post-backup",
        }
    }

    fn field(self, leaf: &str) -> &'static str {
        match (self, leaf) {
            (HookPhase::PreBackup, "selector") => "spec.arca.hooks.preBackup.selector",
            (HookPhase::PreBackup, _) => "spec.arca.hooks.preBackup.timeout",
            (HookPhase::PostBackup, "selector") => "spec.arca.hooks.postBackup.selector",
            (HookPhase::PostBackup, _) => "spec.arca.hooks.postBackup.timeout",
        }
    }
}

/// One hook, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookPlan {
    /// Before or after the point-in-time copy.
    pub phase: HookPhase,
    /// The pods' label selector in the API's syntax (never empty).
    pub label_selector: String,
    /// The container to run in (`None`: the pod's first).
    pub container: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// How long one pod's run may take.
    pub timeout: Duration,
    /// What a failure does.
    pub failure_policy: HookFailurePolicy,
}

impl HookPlan {
    /// The source's hook of `phase`, if it has one. A selector that selects every pod (empty) or
    /// does not convert, and a timeout that does not parse, are errors naming the field.
    pub fn for_phase(
        source: &crate::api::ReplicationSource,
        phase: HookPhase,
    ) -> Result<Option<HookPlan>, Error> {
        let hooks = source.spec.arca.as_ref().and_then(|a| a.hooks.as_ref());
        let hook = match phase {
            HookPhase::PreBackup => hooks.and_then(|h| h.pre_backup.as_ref()),
            HookPhase::PostBackup => hooks.and_then(|h| h.post_backup.as_ref()),
        };
        let Some(hook) = hook else { return Ok(None) };
        let selector =
            Selector::try_from(hook.selector.clone()).map_err(|_| Error::Unsupported {
                field: phase.field("selector"),
                value: format!("{:?}", hook.selector),
                reason: "not a valid label selector (an operator In, NotIn, Exists or DoesNotExist; values for In and NotIn only)",
            })?;
        if selector.selects_all() {
            return Err(Error::Unsupported {
                field: phase.field("selector"),
                value: "{}".to_owned(),
                reason: "selects every pod of the namespace; name the application's labels",
            });
        }
        let timeout = match hook.timeout.as_deref() {
            None | Some("") => DEFAULT_HOOK_TIMEOUT,
            Some(text) => parse_go_duration(text)
                .filter(|d| !d.is_negative() && !d.is_zero())
                .map(|d| d.unsigned_abs())
                .ok_or_else(|| Error::InvalidDuration {
                    field: phase.field("timeout"),
                    value: text.to_owned(),
                })?,
        };
        Ok(Some(HookPlan {
            phase,
            label_selector: selector.to_string(),
            container: hook.container.clone().filter(|c| !c.is_empty()),
            command: hook.command.clone(),
            timeout,
            failure_policy: hook.failure_policy.unwrap_or_default(),
        }))
    }
}

/// The pods a hook runs in, by name: those of `pods` (listed by the plan's selector) that are
/// running and not being deleted.
pub fn target_pods(pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// How the command ended in one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodOutcome {
    /// Exit code 0.
    Succeeded,
    /// A non-zero exit code, with the end of what it wrote to stderr (else stdout).
    Exited {
        /// The exit code.
        code: i32,
        /// The end of its output.
        output: String,
    },
    /// It ran longer than the plan's timeout (the controller stopped waiting).
    TimedOut,
    /// It could not be run (no such container, exec refused or broken, no exit status).
    Error(String),
}

impl PodOutcome {
    /// The outcome `pods/exec` reported: its status (channel 3: `Success`, or `Failure` with
    /// reason `NonZeroExitCode` and the exit code as the cause `ExitCode`) and what the command
    /// wrote. No status at all means the stream broke before the command ended.
    pub fn from_exec(status: Option<&Status>, stdout: &str, stderr: &str) -> PodOutcome {
        let Some(status) = status else {
            return PodOutcome::Error(
                "the exec stream ended without the command's exit status".to_owned(),
            );
        };
        if status.status.as_deref() == Some("Success") {
            return PodOutcome::Succeeded;
        }
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.parse().ok());
        match code {
            Some(code) => PodOutcome::Exited {
                code,
                output: if stderr.trim().is_empty() {
                    stdout
                } else {
                    stderr
                }
                .to_owned(),
            },
            None => PodOutcome::Error(
                status
                    .message
                    .clone()
                    .unwrap_or_else(|| "the command could not be run".to_owned()),
            ),
        }
    }
}

/// The command's run in one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRun {
    /// The pod.
    pub pod: String,
    /// How it ended.
    pub outcome: PodOutcome,
}

/// What a hook's runs amount to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookVerdict {
    /// Every run succeeded (a Normal event); go on.
    Passed(super::Event),
    /// Some run failed under `failurePolicy: Continue`: a Warning event; go on.
    Continue(super::Event),
    /// Some run failed under `failurePolicy: Fail`: the sync stops with this message
    /// ([`hook_failed`]).
    Stop(String),
}

/// Judges a hook's runs: every selected pod must have succeeded; no pod at all is a failure too
/// (a selector that matches nothing is more often a mistake than a stopped application).
pub fn judge(plan: &HookPlan, runs: &[PodRun]) -> HookVerdict {
    let phase = plan.phase.as_str();
    let failures: Vec<String> = runs
        .iter()
        .filter_map(|run| {
            let why = match &run.outcome {
                PodOutcome::Succeeded => return None,
                PodOutcome::Exited { code, output } if output.is_empty() => {
                    format!("exit code {code}")
                }
                PodOutcome::Exited { code, output } => {
                    format!("exit code {code}: {}", tail(output))
                }
                PodOutcome::TimedOut => format!(
                    "no exit within {}",
                    format_go_duration(
                        jiff::SignedDuration::try_from(plan.timeout).unwrap_or_default()
                    )
                ),
                PodOutcome::Error(error) => error.clone(),
            };
            Some(format!("pod {}: {why}", run.pod))
        })
        .collect();
    let message = if runs.is_empty() {
        format!(
            "the {phase} hook found no running pod matching {}",
            plan.label_selector
        )
    } else if failures.is_empty() {
        return HookVerdict::Passed(super::Event {
            type_: EventType::Normal,
            reason: "HookSucceeded",
            action: "RunHook",
            note: format!(
                "the {phase} hook succeeded in {} pod(s): {}",
                runs.len(),
                runs.iter()
                    .map(|r| r.pod.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    } else {
        format!("the {phase} hook failed: {}", failures.join("; "))
    };
    match plan.failure_policy {
        HookFailurePolicy::Fail => HookVerdict::Stop(message),
        HookFailurePolicy::Continue => HookVerdict::Continue(super::Event {
            type_: EventType::Warning,
            reason: "HookFailed",
            action: "RunHook",
            note: format!("{message} (failurePolicy Continue: the sync goes on)"),
        }),
    }
}

fn tail(text: &str) -> String {
    let text = text.trim_end();
    if text.len() <= OUTPUT_TAIL {
        return text.to_owned();
    }
    let mut start = text.len() - OUTPUT_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// The decision that replaces `decision` once a hook with `failurePolicy: Fail` failed with
/// `message` (the actions before the hook are done; the rest are dropped).
///
/// A sync still in progress fails like a failed mover run: `latestMoverStatus` Failed with the
/// message, condition `Error`, one more consecutive failure, a retry after the backoff (the sync
/// stays in progress and starts over with the pre-backup hook), a `HookFailed` Warning event, a
/// failed attempt for the metrics, and its temporaries (a snapshot or clone already taken)
/// deleted. A sync that already completed (the post-backup hook of a `Direct` backup: its
/// snapshot is in the repository) stays completed; the condition and the event say the hook
/// failed.
pub fn hook_failed(
    observed: &SourceObserved,
    decision: &SourceDecision,
    message: &str,
    now: Timestamp,
    config: &ControllerConfig,
) -> SourceDecision {
    let meta = &observed.source.metadata;
    let owner = Owner {
        kind: "ReplicationSource",
        plural: "replicationsources",
        name: meta.name.as_deref().unwrap_or_default(),
        namespace: meta.namespace.as_deref(),
        uid: meta.uid.as_deref().unwrap_or_default(),
    };
    let mut status = decision.status.clone();
    let mut state = state_of(&status);
    let mut out = Out::default();
    out.event(
        EventType::Warning,
        "HookFailed",
        "RunHook",
        message.to_owned(),
    );
    let mut requeue = decision.requeue;
    let mut report = decision.report;
    let note = match state.last_sync_start_time {
        Some(started) => {
            let failures = state.consecutive_failures.unwrap_or(0).saturating_add(1);
            let delay = engine::backoff(config, failures, super::ErrorClass::Retryable);
            state.consecutive_failures = Some(failures);
            state.retry_after = Some(now.saturating_add(delay).unwrap_or(now));
            state.latest_mover_status = Some(MoverStatus {
                result: Some(MoverResult::Failed),
                logs: Some(message.to_owned()),
            });
            state.progress = None;
            report = Some(SyncReport {
                outcome: SyncOutcome::Failed,
                duration: now.duration_since(started).max(jiff::SignedDuration::ZERO),
                missed_interval: false,
            });
            requeue = super::Requeue::After(delay);
            format!(
                "{message}; the sync stopped ({failures} failure(s) in a row), retrying in {}",
                format_go_duration(delay)
            )
        }
        None => format!("{message}; the backup itself completed"),
    };
    set_condition(&mut state, Reason::Error, note, meta.generation, now);
    store(state, &mut status);
    engine::cleanup_temporaries(&owner, &mut out);
    SourceDecision {
        actions: out.actions,
        status,
        events: out.events,
        requeue,
        report,
        out_of_sync: decision.out_of_sync,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ArcaSourceSpec, Hook, Hooks, ReplicationSource};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, StatusCause, StatusDetails,
    };

    fn source_with(hook: Hook) -> ReplicationSource {
        let mut source: ReplicationSource = serde_json::from_value(serde_json::json!({
            "apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationSource",
            "metadata": {"name": "app", "namespace": "ns"},
            "spec": {"sourcePVC": "data"}}))
        .unwrap();
        source.spec.arca = Some(ArcaSourceSpec {
            hooks: Some(Hooks {
                pre_backup: Some(hook),
                post_backup: None,
            }),
            ..Default::default()
        });
        source
    }

    fn hook(labels: &[(&str, &str)], timeout: Option<&str>) -> Hook {
        Hook {
            selector: LabelSelector {
                match_labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                match_expressions: None,
            },
            container: Some("db".to_owned()),
            command: vec!["fsfreeze".to_owned()],
            timeout: timeout.map(str::to_owned),
            failure_policy: None,
        }
    }

    #[test]
    fn plans_default_and_reject_what_cannot_be_run_safely() {
        let plan = HookPlan::for_phase(
            &source_with(hook(&[("app", "db")], None)),
            HookPhase::PreBackup,
        )
        .unwrap()
        .unwrap();
        assert_eq!(plan.label_selector, "app=db");
        assert_eq!(plan.timeout, DEFAULT_HOOK_TIMEOUT);
        assert_eq!(plan.failure_policy, HookFailurePolicy::Fail);
        assert_eq!(plan.container.as_deref(), Some("db"));
        let source = source_with(hook(&[("app", "db")], Some("1m30s")));
        assert_eq!(
            HookPlan::for_phase(&source, HookPhase::PreBackup)
                .unwrap()
                .unwrap()
                .timeout,
            Duration::from_secs(90)
        );
        assert_eq!(
            HookPlan::for_phase(&source, HookPhase::PostBackup).unwrap(),
            None
        );

        let everything = HookPlan::for_phase(&source_with(hook(&[], None)), HookPhase::PreBackup);
        let message = everything.unwrap_err().to_string();
        assert!(
            message.contains("spec.arca.hooks.preBackup.selector"),
            "{message}"
        );
        let bad_timeout = HookPlan::for_phase(
            &source_with(hook(&[("app", "db")], Some("0s"))),
            HookPhase::PreBackup,
        );
        assert!(
            bad_timeout
                .unwrap_err()
                .to_string()
                .contains("preBackup.timeout")
        );
    }

    fn plan(policy: HookFailurePolicy) -> HookPlan {
        HookPlan {
            phase: HookPhase::PreBackup,
            label_selector: "app=db".to_owned(),
            container: None,
            command: vec!["true".to_owned()],
            timeout: Duration::from_secs(5),
            failure_policy: policy,
        }
    }

    #[test]
    fn every_selected_pod_must_succeed() {
        let ok = |pod: &str| PodRun {
            pod: pod.to_owned(),
            outcome: PodOutcome::Succeeded,
        };
        let passed = judge(&plan(HookFailurePolicy::Fail), &[ok("db-0"), ok("db-1")]);
        assert!(matches!(passed, HookVerdict::Passed(ref e) if e.note.contains("db-0, db-1")));

        let runs = [
            ok("db-0"),
            PodRun {
                pod: "db-1".to_owned(),
                outcome: PodOutcome::Exited {
                    code: 7,
                    output: "cannot freeze\n".to_owned(),
                },
            },
            PodRun {
                pod: "db-2".to_owned(),
                outcome: PodOutcome::TimedOut,
            },
        ];
        let HookVerdict::Stop(message) = judge(&plan(HookFailurePolicy::Fail), &runs) else {
            panic!("a failed pod stops the sync under Fail");
        };
        assert!(
            message.contains("pod db-1: exit code 7: cannot freeze"),
            "{message}"
        );
        assert!(message.contains("pod db-2: no exit within 5s"), "{message}");
        assert!(!message.contains("db-0"), "{message}");
        let HookVerdict::Continue(event) = judge(&plan(HookFailurePolicy::Continue), &runs) else {
            panic!("Continue goes on");
        };
        assert_eq!(
            (event.type_, event.reason),
            (EventType::Warning, "HookFailed")
        );

        let HookVerdict::Stop(none) = judge(&plan(HookFailurePolicy::Fail), &[]) else {
            panic!("no pod is a failure");
        };
        assert!(none.contains("no running pod matching app=db"), "{none}");
    }

    #[test]
    fn exec_statuses_become_outcomes() {
        let success = Status {
            status: Some("Success".to_owned()),
            ..Status::default()
        };
        assert_eq!(
            PodOutcome::from_exec(Some(&success), "", ""),
            PodOutcome::Succeeded
        );
        let exited = Status {
            status: Some("Failure".to_owned()),
            reason: Some("NonZeroExitCode".to_owned()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".to_owned()),
                    message: Some("2".to_owned()),
                    field: None,
                }]),
                ..StatusDetails::default()
            }),
            ..Status::default()
        };
        assert_eq!(
            PodOutcome::from_exec(Some(&exited), "out", " "),
            PodOutcome::Exited {
                code: 2,
                output: "out".to_owned()
            }
        );
        let refused = Status {
            status: Some("Failure".to_owned()),
            message: Some("exec: \"x\": not found".to_owned()),
            ..Status::default()
        };
        assert_eq!(
            PodOutcome::from_exec(Some(&refused), "", ""),
            PodOutcome::Error("exec: \"x\": not found".to_owned())
        );
        assert!(matches!(
            PodOutcome::from_exec(None, "", ""),
            PodOutcome::Error(_)
        ));
    }

    #[test]
    fn only_running_pods_are_targets() {
        let pod = |name: &str, phase: &str, deleting: bool| -> Pod {
            let mut pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}, "status": {"phase": phase}}))
            .unwrap();
            if deleting {
                pod.metadata.deletion_timestamp =
                    Some(crate::reconcile::time(Timestamp::UNIX_EPOCH));
            }
            pod
        };
        let pods = [
            pod("b", "Running", false),
            pod("a", "Running", false),
            pod("c", "Pending", false),
            pod("d", "Running", true),
        ];
        assert_eq!(target_pods(&pods), ["a", "b"]);
    }
}
