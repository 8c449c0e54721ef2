//! The hands of `spec.arca.hooks`: list the pods a hook selects and run its command in each
//! through `pods/exec`. What to run, which pods count and what the results mean are arca-kube's
//! (`HookPlan`, `target_pods`, `PodOutcome::from_exec`, `judge`, `hook_failed`).

use arca_kube::api::{ReplicationSource, ReplicationSourceStatus};
use arca_kube::reconcile::{
    HookPhase, HookPlan, HookVerdict, PodOutcome, PodRun, hook_failed, judge, target_pods,
};
use arca_kube::{ControllerConfig, Decision, SourceDecision, SourceObserved};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::reconcile::{Context, ReconcileError, publish};

/// How much of a command's stdout and stderr is kept (the end), each.
const KEPT_OUTPUT: usize = 4096;

/// What carries out a decision's `RunHook` actions: `Some(decision)` replaces the rest of the
/// decision (a hook failed under `failurePolicy: Fail`).
pub(crate) trait HookRunner<S> {
    /// Runs the hook of `phase` for `decision`.
    fn run<'a>(
        &'a mut self,
        phase: HookPhase,
        decision: &'a Decision<S>,
    ) -> BoxFuture<'a, Result<Option<Decision<S>>, ReconcileError>>;
}

/// Destinations have no hooks.
pub(crate) struct NoHooks;

impl<S: Send + Sync> HookRunner<S> for NoHooks {
    fn run<'a>(
        &'a mut self,
        _: HookPhase,
        _: &'a Decision<S>,
    ) -> BoxFuture<'a, Result<Option<Decision<S>>, ReconcileError>> {
        Box::pin(async { Ok(None) })
    }
}

/// A source's hooks, for one reconcile.
pub(crate) struct SourceHooks<'c> {
    context: &'c Context,
    observed: &'c SourceObserved,
    now: jiff::Timestamp,
    /// A hook stopped the sync in this reconcile.
    pub(crate) stopped: bool,
}

impl<'c> SourceHooks<'c> {
    /// The hooks of `observed`'s source, decided at `now`.
    pub(crate) fn new(
        context: &'c Context,
        observed: &'c SourceObserved,
        now: jiff::Timestamp,
    ) -> SourceHooks<'c> {
        SourceHooks {
            context,
            observed,
            now,
            stopped: false,
        }
    }
}

impl HookRunner<ReplicationSourceStatus> for SourceHooks<'_> {
    fn run<'a>(
        &'a mut self,
        phase: HookPhase,
        decision: &'a SourceDecision,
    ) -> BoxFuture<'a, Result<Option<SourceDecision>, ReconcileError>> {
        Box::pin(async move {
            let context = self.context;
            let stop = run_hook(
                context,
                self.observed,
                decision,
                phase,
                self.now,
                &context.config,
            )
            .await?;
            self.stopped |= stop.is_some();
            Ok(stop)
        })
    }
}

/// Runs `source`'s hook of `phase` in its selected pods. `Some(decision)` replaces the rest of
/// `decision` when the hook failed under `failurePolicy: Fail`; `None` means go on (the hook's
/// Event is published either way).
async fn run_hook(
    context: &Context,
    observed: &SourceObserved,
    decision: &SourceDecision,
    phase: HookPhase,
    now: jiff::Timestamp,
    config: &ControllerConfig,
) -> Result<Option<SourceDecision>, ReconcileError> {
    let source: &ReplicationSource = &observed.source;
    let namespace = source.metadata.namespace.as_deref().unwrap_or_default();
    let verdict = match HookPlan::for_phase(source, phase) {
        Ok(None) => return Ok(None),
        // An invalid hook cannot quiesce anything: stop, naming the field.
        Err(error) => HookVerdict::Stop(error.to_string()),
        Ok(Some(plan)) => {
            let pods: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
            let listed = pods
                .list(&ListParams::default().labels(&plan.label_selector))
                .await?
                .items;
            let runs = futures::future::join_all(
                target_pods(&listed)
                    .into_iter()
                    .map(|pod| run_in_pod(&pods, pod, &plan)),
            )
            .await;
            judge(&plan, &runs)
        }
    };
    match verdict {
        HookVerdict::Passed(event) | HookVerdict::Continue(event) => {
            publish(
                context,
                source,
                event.type_,
                event.reason,
                event.action,
                event.note,
            )
            .await;
            Ok(None)
        }
        HookVerdict::Stop(message) => {
            tracing::warn!(
                "{namespace}/{}: {message}",
                source.metadata.name.as_deref().unwrap_or_default()
            );
            Ok(Some(hook_failed(observed, decision, &message, now, config)))
        }
    }
}

/// Runs the plan's command in one pod, bounded by the plan's timeout (on a timeout the
/// connection is dropped; a real kubelet may leave the command running).
async fn run_in_pod(pods: &Api<Pod>, pod: String, plan: &HookPlan) -> PodRun {
    let mut params = AttachParams::default().stdout(true).stderr(true);
    if let Some(container) = &plan.container {
        params = params.container(container.as_str());
    }
    let run = async {
        let mut process = pods.exec(&pod, plan.command.clone(), &params).await?;
        let status = process.take_status();
        let (stdout, stderr) =
            futures::join!(kept_tail(process.stdout()), kept_tail(process.stderr()));
        let status = match status {
            Some(status) => status.await,
            None => None,
        };
        Ok::<_, kube::Error>(PodOutcome::from_exec(status.as_ref(), &stdout, &stderr))
    };
    let outcome = match tokio::time::timeout(plan.timeout, run).await {
        Err(_) => PodOutcome::TimedOut,
        Ok(Ok(outcome)) => outcome,
        Ok(Err(kube::Error::Api(status))) if status.code == 403 => PodOutcome::Error(
            "the controller may not exec into pods (pods/exec): install the chart with controller.hooks.enabled=true".to_owned(),
        ),
        Ok(Err(error)) => PodOutcome::Error(format!("exec failed: {error}")),
    };
    PodRun { pod, outcome }
}

/// Reads `reader` to its end, keeping the last [`KEPT_OUTPUT`] bytes (as text).
async fn kept_tail(reader: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut reader) = reader else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > KEPT_OUTPUT {
            kept.drain(..kept.len() - KEPT_OUTPUT);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
