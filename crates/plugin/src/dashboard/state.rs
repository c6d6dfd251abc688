//! What the dashboard shows, computed with the plugin's own model ([`RolloutInfo`]) so that the
//! page never disagrees with `kubectl sluice get` and `list`: the list of rollouts, kept by two
//! watches (Rollouts, and the ReplicaSets they own) with numbered changes that the page follows,
//! and the detail of one rollout with its AnalysisRuns' measurements.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use futures::{FutureExt as _, StreamExt as _, stream};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::{
    Api,
    runtime::{WatchStreamExt as _, reflector, reflector::Store, watcher},
};
use serde::Serialize;
use sluice_api::{AnalysisPhase, AnalysisRun, Rollout, vocab::POD_TEMPLATE_HASH_LABEL};
use tokio::sync::watch;

use crate::{
    Context,
    info::{
        Health, ImageInfo, Objects, Replicas, RevisionInfo, RolloutInfo, RunCounts, canary_running,
        pause_reasons,
    },
};

/// One rollout of the list page: what `list rollouts` shows, plus its images and the split of
/// traffic, and the flags that decide which actions the page offers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Canary`, `BlueGreen`, or empty.
    pub strategy: String,
    /// Health, as `kubectl sluice get` words it.
    pub status: Health,
    /// Why it has that health.
    pub message: String,
    /// Canary step, `index/count`.
    pub step: Option<String>,
    /// Canary weight the current step asks for.
    pub set_weight: Option<i32>,
    /// Canary weight in effect, as the plugin computes it.
    pub actual_weight: Option<i32>,
    /// While a canary is in flight, the canary's share of traffic (router weights when present,
    /// else the replica ratio).
    pub canary_weight: Option<i32>,
    /// While a canary is in flight, the stable version's share of traffic.
    pub stable_weight: Option<i32>,
    /// Images of the running ReplicaSets with their roles.
    pub images: Vec<ImageInfo>,
    /// Pod counts.
    pub replicas: Replicas,
    /// Paused by the controller or by `spec.paused`: promote applies.
    pub paused: bool,
    /// `status.abort`: retry applies.
    pub aborted: bool,
}

impl Row {
    /// The row of a rollout and the objects read with it.
    pub fn new(objects: &Objects) -> Self {
        Self::of(&RolloutInfo::new(objects), &objects.rollout)
    }

    /// The row of a rollout whose model is already computed.
    fn of(info: &RolloutInfo, rollout: &Rollout) -> Self {
        let status = rollout.status.clone().unwrap_or_default();
        let in_flight = info.strategy == "Canary" && canary_running(&status);
        let router = status.canary.as_ref().and_then(|c| c.weights.as_ref());
        let canary_weight = info.actual_weight.filter(|_| in_flight);
        let stable_weight = canary_weight.map(|canary| match router {
            Some(weights) => weights.stable.weight,
            None => 100 - canary,
        });
        Self {
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            strategy: info.strategy.clone(),
            status: info.status,
            message: info.message.clone(),
            step: info.step.clone(),
            set_weight: info.set_weight,
            actual_weight: info.actual_weight,
            canary_weight,
            stable_weight,
            images: info.images.clone(),
            replicas: info.replicas,
            paused: !pause_reasons(rollout).is_empty(),
            aborted: status.abort == Some(true),
        }
    }
}

/// Namespace and name: a row's key.
type Key = (String, String);

/// Deletions remembered for clients that fall behind; one further behind gets the whole list.
const MAX_GONE: usize = 10_000;

/// The list and its history of changes, behind the lock of [`ListState`].
#[derive(Default)]
struct Inner {
    /// Number of the last change.
    seq: u64,
    /// Both watches have listed once.
    ready: bool,
    /// Why the watches fail, while they do.
    problem: Option<String>,
    /// Rows, with the number of the change that last wrote each.
    rows: BTreeMap<Key, (u64, Row)>,
    /// Deleted rows, with the number of the change that deleted each, oldest first.
    gone: VecDeque<(u64, Key)>,
    /// Deletions up to this change were forgotten.
    floor: u64,
}

/// What changed in the list since a client's last change number: the rows written since and the
/// rows deleted since (or every row, with `full`, for a new client or one too far behind).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    /// Number of the last change included; the client sends it back to get what follows.
    pub seq: u64,
    /// `rows` is the whole list: forget everything else.
    pub full: bool,
    /// The watches have listed; before that an empty list means "not known yet".
    pub ready: bool,
    /// Why the cluster cannot be watched, while it cannot.
    pub problem: Option<String>,
    /// Rows written (namespace, then name order).
    pub rows: Vec<Row>,
    /// `[namespace, name]` of the rows deleted.
    pub gone: Vec<[String; 2]>,
}

/// The list of rollouts the dashboard serves, with numbered changes: the list page reads it
/// whole once, then follows the changes pushed to it.
pub struct ListState {
    inner: RwLock<Inner>,
    changed: watch::Sender<u64>,
}

impl ListState {
    /// An empty list, not ready.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: RwLock::new(Inner::default()),
            changed: watch::Sender::new(0),
        })
    }

    /// The numbers of changes as they happen, for a pushed stream.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What changed after change `since`; everything when `since` is absent, 0, forgotten or
    /// from another run of the server.
    pub fn since(&self, since: Option<u64>) -> Delta {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let full = since.is_none_or(|s| s == 0 || s < inner.floor || s > inner.seq);
        let from = if full { 0 } else { since.unwrap_or(0) };
        Delta {
            seq: inner.seq,
            full,
            ready: inner.ready,
            problem: inner.problem.clone(),
            rows: inner
                .rows
                .values()
                .filter(|(seq, _)| *seq > from)
                .map(|(_, row)| row.clone())
                .collect(),
            gone: if full {
                Vec::new()
            } else {
                inner
                    .gone
                    .iter()
                    .filter(|(seq, _)| *seq > from)
                    .map(|(_, (ns, name))| [ns.clone(), name.clone()])
                    .collect()
            },
        }
    }

    /// Replaces the list with `rows` as one change, if anything differs.
    pub fn replace(&self, rows: Vec<Row>, ready: bool, problem: Option<String>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let next = inner.seq + 1;
        let mut changed = inner.ready != ready || inner.problem != problem;
        let mut old = std::mem::take(&mut inner.rows);
        let mut rows_now = BTreeMap::new();
        for row in rows {
            let key = (row.namespace.clone(), row.name.clone());
            let seq = match old.remove(&key) {
                Some((seq, before)) if before == row => seq,
                _ => {
                    changed = true;
                    next
                }
            };
            rows_now.insert(key, (seq, row));
        }
        for key in old.into_keys() {
            changed = true;
            inner.gone.push_back((next, key));
        }
        while inner.gone.len() > MAX_GONE {
            if let Some((seq, _)) = inner.gone.pop_front() {
                inner.floor = seq;
            }
        }
        inner.rows = rows_now;
        inner.ready = ready;
        inner.problem = problem;
        if changed {
            inner.seq = next;
            drop(inner);
            self.changed.send_replace(next);
        }
    }
}

/// Shortest time between two recomputations of the list, so that a burst of writes (1,000
/// rollouts created at once) costs a few recomputations, not one per event.
const SETTLE: Duration = Duration::from_millis(100);

/// Keeps `state` equal to the cluster's rollouts (of `ctx`'s namespace, or of all with `all`),
/// for as long as the dashboard runs. Watch failures are retried with kube's default backoff;
/// while they last, the list carries why.
pub async fn keep(ctx: Context, all: bool, state: Arc<ListState>) {
    let (rollouts_api, sets_api): (Api<Rollout>, Api<ReplicaSet>) = if all {
        (Api::all(ctx.client.clone()), Api::all(ctx.client.clone()))
    } else {
        (ctx.api(), ctx.api())
    };
    let (rollouts, rollouts_writer) = reflector::store();
    let (sets, sets_writer) = reflector::store();
    let scope = if all {
        String::new()
    } else {
        ctx.namespace.clone()
    };
    let describe = move |resource: &'static str, kind: &'static str, e: &watcher::Error| {
        let ctx = Context {
            namespace: scope.clone(),
            ..ctx.clone()
        };
        crate::fetch::refused(&ctx, resource, kind, e)
            .map_or_else(|| format!("watching {resource}: {e}"), |e| e.to_string())
    };
    let describe_sets = describe.clone();
    let a = reflector(
        rollouts_writer,
        watcher(rollouts_api, watcher::Config::default()),
    )
    .default_backoff()
    .map(move |event| event.err().map(|e| describe("rollouts", "Rollout", &e)))
    .boxed();
    // Only the ReplicaSets a Rollout made: they carry its pod-template-hash label.
    let b = reflector(
        sets_writer,
        watcher(
            sets_api,
            watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL),
        ),
    )
    .default_backoff()
    .map(move |event| {
        event
            .err()
            .map(|e| describe_sets("replicasets", "ReplicaSet", &e))
    })
    .boxed();
    let mut changes = stream::select(a, b).ready_chunks(4096);
    while let Some(chunk) = changes.next().await {
        let problem = chunk.into_iter().flatten().last();
        if let Some(problem) = &problem {
            tracing::warn!(error = %problem, "dashboard watch failed; retrying with backoff");
        }
        let listed = |ready: Option<Result<(), _>>| matches!(ready, Some(Ok(())));
        let ready = listed(rollouts.wait_until_ready().now_or_never())
            && listed(sets.wait_until_ready().now_or_never());
        let rows = if ready {
            rows(&rollouts, &sets)
        } else {
            Vec::new()
        };
        tracing::debug!(rollouts = rows.len(), ready, "dashboard list recomputed");
        state.replace(rows, ready, problem);
        tokio::time::sleep(SETTLE).await;
    }
}

/// The rows of every rollout in the store, each with the ReplicaSets it owns.
fn rows(rollouts: &Store<Rollout>, sets: &Store<ReplicaSet>) -> Vec<Row> {
    let mut by_owner: HashMap<String, Vec<ReplicaSet>> = HashMap::new();
    for rs in sets.state() {
        for owner in rs.metadata.owner_references.iter().flatten() {
            if owner.kind == "Rollout" {
                by_owner
                    .entry(owner.uid.clone())
                    .or_default()
                    .push((*rs).clone());
            }
        }
    }
    rollouts
        .state()
        .iter()
        .map(|ro| {
            let uid = ro.metadata.uid.clone().unwrap_or_default();
            Row::new(&Objects {
                rollout: (**ro).clone(),
                replica_sets: by_owner.remove(&uid).unwrap_or_default(),
                ..Objects::default()
            })
        })
        .collect()
}

/// Measurements plotted per metric, at most: runs keep 10 by default; a run keeping thousands
/// would make the page slow for no reading gain.
const MAX_POINTS: usize = 500;

/// Everything the rollout page shows: the row, the tree of revisions, the containers (for "set
/// image") and the AnalysisRuns with every metric's measurements.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    /// The summary, as in the list.
    pub row: Row,
    /// Revisions, newest first, with their ReplicaSets, pods and AnalysisRuns.
    pub revisions: Vec<RevisionInfo>,
    /// Names of the pod template's containers and init containers.
    pub containers: Vec<String>,
    /// The rollout's AnalysisRuns, oldest first, with their metrics.
    pub analysis_runs: Vec<RunDetail>,
}

/// An AnalysisRun of the rollout, its verdict and its metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    /// Its name.
    pub name: String,
    /// Its phase.
    pub phase: AnalysisPhase,
    /// Why it is in its phase.
    pub message: Option<String>,
    /// One entry per metric of the spec (and per result of a metric no longer in it).
    pub metrics: Vec<MetricDetail>,
}

/// A metric of a run: its conditions as written, its verdict and its measurements.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricDetail {
    /// Its name.
    pub name: String,
    /// Its verdict so far.
    pub phase: AnalysisPhase,
    /// `successCondition`, as written.
    pub success_condition: Option<String>,
    /// `failureCondition`, as written.
    pub failure_condition: Option<String>,
    /// Why the metric is in its phase.
    pub message: Option<String>,
    /// Measurements by outcome.
    pub counts: RunCounts,
    /// The measurements kept, oldest first (the last [`MAX_POINTS`]).
    pub measurements: Vec<Point>,
}

/// One measurement, as the page plots it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Its verdict.
    pub phase: AnalysisPhase,
    /// When its value was collected (or when it began, while in flight).
    pub at: Option<Timestamp>,
    /// The value as the provider returned it.
    pub value: Option<String>,
    /// Why (an error, typically).
    pub message: Option<String>,
}

impl Detail {
    /// The detail of a rollout and the objects read with it.
    pub fn new(objects: &Objects) -> Self {
        let info = RolloutInfo::new(objects);
        let row = Row::of(&info, &objects.rollout);
        let names: Vec<&str> = info
            .revisions
            .iter()
            .flat_map(|r| &r.analysis_runs)
            .map(|r| r.name.as_str())
            .collect();
        let mut runs: Vec<&AnalysisRun> = objects
            .analysis_runs
            .iter()
            .filter(|r| names.contains(&r.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        runs.sort_by_key(|r| {
            (
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                r.metadata.name.clone(),
            )
        });
        let containers = objects
            .rollout
            .spec
            .template
            .as_ref()
            .and_then(|t| t.spec.as_ref())
            .map(|spec| {
                spec.containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            row,
            revisions: info.revisions,
            containers,
            analysis_runs: runs.into_iter().map(run_detail).collect(),
        }
    }
}

/// A run's metrics with their conditions and measurements.
fn run_detail(run: &AnalysisRun) -> RunDetail {
    let status = run.status.clone().unwrap_or_default();
    let mut metrics: Vec<MetricDetail> = run
        .spec
        .metrics
        .iter()
        .map(|m| MetricDetail {
            name: m.name.clone(),
            phase: AnalysisPhase::Pending,
            success_condition: m.success_condition.clone(),
            failure_condition: m.failure_condition.clone(),
            message: None,
            counts: RunCounts::default(),
            measurements: Vec::new(),
        })
        .collect();
    for result in &status.metric_results {
        let index = match metrics.iter().position(|m| m.name == result.name) {
            Some(i) => i,
            None => {
                metrics.push(MetricDetail {
                    name: result.name.clone(),
                    phase: result.phase,
                    success_condition: None,
                    failure_condition: None,
                    message: None,
                    counts: RunCounts::default(),
                    measurements: Vec::new(),
                });
                metrics.len() - 1
            }
        };
        let metric = &mut metrics[index];
        metric.phase = result.phase;
        metric.message = result.message.clone();
        metric.counts = RunCounts {
            successful: result.successful.unwrap_or(0),
            failed: result.failed.unwrap_or(0),
            inconclusive: result.inconclusive.unwrap_or(0),
            error: result.error.unwrap_or(0),
        };
        let skip = result.measurements.len().saturating_sub(MAX_POINTS);
        metric.measurements = result
            .measurements
            .iter()
            .skip(skip)
            .map(|m| Point {
                phase: m.phase,
                at: m
                    .finished_at
                    .as_ref()
                    .or(m.started_at.as_ref())
                    .map(|t| t.0),
                value: m.value.clone(),
                message: m.message.clone(),
            })
            .collect();
    }
    RunDetail {
        name: run.metadata.name.clone().unwrap_or_default(),
        phase: status.phase,
        message: status.message.clone(),
        metrics,
    }
}

/// Whether a stream of details should send `next`: only when it differs from what was sent.
pub fn differs(last: &mut Option<String>, next: String) -> Option<String> {
    if last.as_deref() == Some(next.as_str()) {
        return None;
    }
    *last = Some(next.clone());
    Some(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(name: &str, step: &str) -> Row {
        let rollout: Rollout = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": { "name": name, "namespace": "shop" },
            "spec": { "strategy": { "canary": { "steps": [{ "setWeight": 50 }, { "pause": {} }] } } },
            "status": { "currentStepIndex": step.parse::<i32>().unwrap_or(0) }
        }))
        .expect("a rollout");
        Row::new(&Objects {
            rollout,
            ..Objects::default()
        })
    }

    #[test]
    fn deltas_carry_only_what_changed_since_the_clients_last_change() {
        let state = ListState::new();
        state.replace(vec![row("a", "0"), row("b", "0")], true, None);
        let first = state.since(None);
        assert!(first.full);
        assert_eq!(first.rows.len(), 2);
        // Nothing differs: no new change.
        state.replace(vec![row("a", "0"), row("b", "0")], true, None);
        assert_eq!(state.since(None).seq, first.seq);
        state.replace(vec![row("a", "1")], true, None);
        let delta = state.since(Some(first.seq));
        assert!(!delta.full);
        assert_eq!(delta.rows.len(), 1);
        assert_eq!(delta.rows[0].step.as_deref(), Some("1/2"));
        assert_eq!(delta.gone, vec![["shop".to_string(), "b".to_string()]]);
        // A client from another run of the server (a number from the future) starts over.
        assert!(state.since(Some(delta.seq + 10)).full);
    }
}
