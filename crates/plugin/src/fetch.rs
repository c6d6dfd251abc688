//! Reads a rollout and what it owns (its Experiments and theirs included), once or as a stream
//! of snapshots driven by watches (one watch per kind, cached in reflector stores), for `get
//! rollout --watch`; and an experiment with what may be its own, for `get experiment [--watch]`.

use std::pin::Pin;

use futures::{FutureExt as _, Stream, StreamExt as _, future::ready, stream};
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Resource,
    api::ListParams,
    runtime::{WatchStreamExt as _, reflector, watcher},
};
use serde::de::DeserializeOwned;
use sluice_api::{AnalysisRun, CanaryStep, Experiment, Rollout};

use super::{Context, Error, experiment::ExperimentObjects, info::Objects, owned::owned_by};

/// The label selector of the rollout's pods (and so of its ReplicaSets), as a string.
fn selector(rollout: &Rollout) -> Option<String> {
    let selector = rollout.spec.selector.as_ref()?;
    let s = sluice_api::model::selector_string(selector);
    (!s.is_empty()).then_some(s)
}

/// The rollout and everything it owns, read once.
pub async fn objects(ctx: &Context, name: &str) -> Result<Objects, Error> {
    Ok(read(ctx, name).await?.0)
}

/// Which kinds of the tree that a cluster may lack could be listed, so a watch watches them.
#[derive(Clone, Copy, Debug)]
struct Served {
    /// AnalysisRuns.
    runs: bool,
    /// Experiments.
    experiments: bool,
}

/// The rollout and everything it owns, read once, and which optional kinds could be listed.
/// One list per kind: the Experiments first, so that the ReplicaSets' and pods' selector
/// ([`covering_selector`]) also takes in the experiments' own.
async fn read(ctx: &Context, name: &str) -> Result<(Objects, Served), Error> {
    let rollout = ctx.rollout(name).await?;
    let experiments = experiments(ctx).await?;
    let params = match covering_selector(&rollout, experiments.as_deref().unwrap_or_default()) {
        Some(s) => ListParams::default().labels(&s),
        None => ListParams::default(),
    };
    let replica_sets = ctx
        .api::<ReplicaSet>()
        .list(&params)
        .await
        .map_err(|e| {
            ctx.request("list", "replicasets", "ReplicaSet", None)
                .error(e)
        })?
        .items;
    let pods = ctx
        .api::<Pod>()
        .list(&params)
        .await
        .map_err(|e| ctx.request("list", "pods", "Pod", None).error(e))?
        .items;
    let analysis_runs = analysis_runs(ctx).await?;
    let served = Served {
        runs: analysis_runs.is_some(),
        experiments: experiments.is_some(),
    };
    let objects = Objects {
        rollout,
        replica_sets,
        pods,
        analysis_runs: analysis_runs.unwrap_or_default(),
        experiments: experiments.unwrap_or_default(),
    };
    Ok((objects, served))
}

/// The namespace's objects of a kind a cluster may not serve: `None` when it does not (404), and
/// with `unless_forbidden`, also when RBAC refuses the list (403).
async fn optional_list<K>(
    ctx: &Context,
    resource: &'static str,
    kind: &'static str,
    unless_forbidden: bool,
) -> Result<Option<Vec<K>>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    match ctx.api::<K>().list(&ListParams::default()).await {
        Ok(list) => Ok(Some(list.items)),
        Err(kube::Error::Api(s)) if s.code == 404 || (unless_forbidden && s.code == 403) => {
            Ok(None)
        }
        Err(e) => Err(ctx.request("list", resource, kind, None).error(e)),
    }
}

/// The namespace's AnalysisRuns; `None` when the cluster does not serve them.
async fn analysis_runs(ctx: &Context) -> Result<Option<Vec<AnalysisRun>>, Error> {
    optional_list(ctx, "analysisruns", "AnalysisRun", false).await
}

/// The namespace's Experiments; `None` when the cluster does not serve them or the user may not
/// list them: the rest of the rollout's tree is still worth showing, and a role written before
/// `get rollout` read Experiments keeps working.
async fn experiments(ctx: &Context) -> Result<Option<Vec<Experiment>>, Error> {
    optional_list(ctx, "experiments", "Experiment", true).await
}

/// One label selector whose list holds the rollout's ReplicaSets and pods and those of its
/// Experiments, present (owned by it) and to come (its canary's `experiment` steps): the terms
/// all their selectors share, in the rollout's order; `None` (the whole namespace) when they
/// share none. An experiment step's templates copy the rollout's pod template, so this is the
/// rollout's own selector unless a template says otherwise.
pub fn covering_selector(rollout: &Rollout, experiments: &[Experiment]) -> Option<String> {
    let uid = rollout.metadata.uid.as_deref().unwrap_or_default();
    let mut selectors = vec![selector(rollout)];
    selectors.extend(
        experiments
            .iter()
            .filter(|e| !uid.is_empty() && owned_by(&e.metadata.owner_references, uid))
            .flat_map(experiment_selectors),
    );
    let steps = rollout
        .spec
        .canary()
        .into_iter()
        .flat_map(|c| c.steps.iter());
    selectors.extend(
        steps
            .filter_map(|step| match step {
                CanaryStep::Experiment(e) => Some(e),
                _ => None,
            })
            .flat_map(|e| &e.templates)
            .filter_map(|t| t.selector.as_ref())
            .map(|s| Some(sluice_api::model::selector_string(s)).filter(|s| !s.is_empty())),
    );
    shared_terms(&selectors)
}

/// The terms every selector has (`None` among them selects everything, so nothing is shared).
fn shared_terms(selectors: &[Option<String>]) -> Option<String> {
    let split: Vec<Vec<String>> = selectors
        .iter()
        .map(|s| s.as_deref().map(terms))
        .collect::<Option<_>>()?;
    let (first, rest) = split.split_first()?;
    let shared: Vec<&str> = first
        .iter()
        .filter(|t| rest.iter().all(|r| r.contains(t)))
        .map(String::as_str)
        .collect();
    (!shared.is_empty()).then(|| shared.join(","))
}

/// The terms of a selector string (`a=b`, `c in (d,e)`, `!f`), split at the commas between them.
fn terms(selector: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut term = String::new();
    let mut depth = 0_usize;
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut term).trim().to_string());
                continue;
            }
            _ => {}
        }
        term.push(c);
    }
    out.push(term.trim().to_string());
    out.retain(|t| !t.is_empty());
    out
}

/// A boxed stream of "something changed" signals, or of the error that ends the watch.
type Changes = Pin<Box<dyn Stream<Item = Result<(), Error>> + Send>>;

/// The verb that failed and the API server's answer under a watch error, if it answered at all.
fn api_status(error: &watcher::Error) -> Option<(&'static str, &kube::core::Status)> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => Some(("list", &**status)),
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchError(status) => Some(("watch", &**status)),
        _ => None,
    }
}

/// The error that ends a watch for good: RBAC refused it (retrying cannot help, and waiting
/// silently would hang). Any other failure (a dropped connection, an expired resourceVersion) is
/// retried with backoff.
pub fn refused(
    ctx: &Context,
    resource: &'static str,
    kind: &'static str,
    error: &watcher::Error,
) -> Option<Error> {
    let (verb, status) = api_status(error).filter(|(_, s)| s.code == 403)?;
    Some(
        ctx.request(verb, resource, kind, None)
            .error(kube::Error::Api(Box::new(status.clone()))),
    )
}

/// A reflector of one kind: its store and the stream that fills it.
fn reflect<K>(
    ctx: &Context,
    resource: &'static str,
    kind: &'static str,
    config: watcher::Config,
) -> (reflector::Store<K>, Changes)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    K: Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let api = ctx.api::<K>();
    let ctx = ctx.clone();
    let refusal = move |error: &watcher::Error| refused(&ctx, resource, kind, error);
    let changes = reflector(writer, watcher(api, config))
        .default_backoff()
        .filter_map(move |event| {
            ready(match event {
                Ok(_) => Some(Ok(())),
                Err(e) => refusal(&e).map(Err),
            })
        })
        .boxed();
    (reader, changes)
}

/// Snapshots of the rollout and what it owns: one when every watch has listed, then one after
/// each burst of changes; `None` once the rollout is gone (deleted), an error when a watch is
/// refused.
pub async fn watch(
    ctx: &Context,
    name: &str,
) -> Result<impl Stream<Item = Result<Option<Objects>, Error>> + use<>, Error> {
    // Read once first: a missing rollout or a forbidden list is reported, not retried forever.
    let (first, served) = read(ctx, name).await?;
    // The experiments to come are the rollout's steps', which the selector takes in already.
    let selector = covering_selector(&first.rollout, &first.experiments);
    let labels = |c: watcher::Config| match &selector {
        Some(s) => c.labels(s),
        None => c,
    };
    let (rollouts, a) = reflect::<Rollout>(
        ctx,
        "rollouts",
        "Rollout",
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    );
    let (sets, b) = reflect::<ReplicaSet>(
        ctx,
        "replicasets",
        "ReplicaSet",
        labels(watcher::Config::default()),
    );
    let (pods, c) = reflect::<Pod>(ctx, "pods", "Pod", labels(watcher::Config::default()));
    let mut streams = vec![a, b, c];
    let runs = if served.runs {
        let (runs, d) = reflect::<AnalysisRun>(
            ctx,
            "analysisruns",
            "AnalysisRun",
            watcher::Config::default(),
        );
        streams.push(d);
        Some(runs)
    } else {
        None
    };
    let experiments = if served.experiments {
        let (experiments, e) =
            reflect::<Experiment>(ctx, "experiments", "Experiment", watcher::Config::default());
        streams.push(e);
        Some(experiments)
    } else {
        None
    };
    let ready_all = {
        let (rollouts, sets, pods, runs, experiments) = (
            rollouts.clone(),
            sets.clone(),
            pods.clone(),
            runs.clone(),
            experiments.clone(),
        );
        move || {
            let ok = |r: Option<Result<(), _>>| matches!(r, Some(Ok(())));
            ok(rollouts.wait_until_ready().now_or_never())
                && ok(sets.wait_until_ready().now_or_never())
                && ok(pods.wait_until_ready().now_or_never())
                && runs
                    .as_ref()
                    .is_none_or(|r| ok(r.wait_until_ready().now_or_never()))
                && experiments
                    .as_ref()
                    .is_none_or(|e| ok(e.wait_until_ready().now_or_never()))
        }
    };
    let snapshot = move || Objects {
        rollout: rollouts
            .state()
            .first()
            .map(|r| (**r).clone())
            .unwrap_or_default(),
        replica_sets: sets.state().iter().map(|s| (**s).clone()).collect(),
        pods: pods.state().iter().map(|p| (**p).clone()).collect(),
        analysis_runs: runs
            .as_ref()
            .map(|r| r.state().iter().map(|a| (**a).clone()).collect())
            .unwrap_or_default(),
        experiments: experiments
            .as_ref()
            .map(|e| e.state().iter().map(|x| (**x).clone()).collect())
            .unwrap_or_default(),
    };
    let found = |o: &Objects| o.rollout.metadata.name.is_some();
    Ok(stream::select_all(streams)
        .ready_chunks(1024)
        .filter_map(move |chunk| {
            ready(match chunk.into_iter().find_map(Result::err) {
                Some(refused) => Some(Err(refused)),
                None => ready_all().then(&snapshot).map(Ok),
            })
        })
        .map(move |o| o.map(|o| found(&o).then_some(o))))
}

/// Label selectors that together cover an experiment's ReplicaSets and pods: one per template
/// (its selector, else its pod labels), each once; `None` (the whole namespace) when a template
/// has neither.
pub fn experiment_selectors(experiment: &Experiment) -> Vec<Option<String>> {
    let mut selectors: Vec<Option<String>> = Vec::new();
    for template in &experiment.spec.templates {
        let selector = match &template.selector {
            Some(s) => sluice_api::model::selector_string(s),
            None => template
                .template
                .metadata
                .iter()
                .flat_map(|m| m.labels.iter().flatten())
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        if selector.is_empty() {
            return vec![None];
        }
        if !selectors.contains(&Some(selector.clone())) {
            selectors.push(Some(selector));
        }
    }
    selectors
}

/// Objects of several lists, each once (by uid; objects without one are all kept).
fn distinct<K: Resource>(objects: impl IntoIterator<Item = K>) -> Vec<K> {
    let mut seen = std::collections::BTreeSet::new();
    objects
        .into_iter()
        .filter(|o| match o.meta().uid.clone() {
            Some(uid) => seen.insert(uid),
            None => true,
        })
        .collect()
}

/// The experiment and the ReplicaSets, pods and AnalysisRuns that may be its own, read once.
pub async fn experiment_objects(ctx: &Context, name: &str) -> Result<ExperimentObjects, Error> {
    let experiment = ctx.api::<Experiment>().get(name).await.map_err(|e| {
        ctx.request("get", "experiments", "Experiment", Some(name))
            .error(e)
    })?;
    let mut replica_sets = Vec::new();
    let mut pods = Vec::new();
    for selector in experiment_selectors(&experiment) {
        let params = match &selector {
            Some(s) => ListParams::default().labels(s),
            None => ListParams::default(),
        };
        replica_sets.extend(
            ctx.api::<ReplicaSet>()
                .list(&params)
                .await
                .map_err(|e| {
                    ctx.request("list", "replicasets", "ReplicaSet", None)
                        .error(e)
                })?
                .items,
        );
        pods.extend(
            ctx.api::<Pod>()
                .list(&params)
                .await
                .map_err(|e| ctx.request("list", "pods", "Pod", None).error(e))?
                .items,
        );
    }
    let analysis_runs = analysis_runs(ctx).await?.unwrap_or_default();
    Ok(ExperimentObjects {
        experiment,
        replica_sets: distinct(replica_sets),
        pods: distinct(pods),
        analysis_runs,
    })
}

/// Snapshots of the experiment and what may be its own, as [`watch`] gives them of a rollout:
/// one when every watch has listed, then one after each burst of changes; `None` once the
/// experiment is gone, an error when a watch is refused.
pub async fn watch_experiment(
    ctx: &Context,
    name: &str,
) -> Result<impl Stream<Item = Result<Option<ExperimentObjects>, Error>> + use<>, Error> {
    let first = experiment_objects(ctx, name).await?;
    let with_runs = analysis_runs(ctx).await?.is_some();
    let (experiments, a) = reflect::<Experiment>(
        ctx,
        "experiments",
        "Experiment",
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    );
    let mut streams = vec![a];
    let mut set_stores = Vec::new();
    let mut pod_stores = Vec::new();
    for selector in experiment_selectors(&first.experiment) {
        let config = || match &selector {
            Some(s) => watcher::Config::default().labels(s),
            None => watcher::Config::default(),
        };
        let (sets, b) = reflect::<ReplicaSet>(ctx, "replicasets", "ReplicaSet", config());
        let (pods, c) = reflect::<Pod>(ctx, "pods", "Pod", config());
        streams.extend([b, c]);
        set_stores.push(sets);
        pod_stores.push(pods);
    }
    let runs = if with_runs {
        let (runs, d) = reflect::<AnalysisRun>(
            ctx,
            "analysisruns",
            "AnalysisRun",
            watcher::Config::default(),
        );
        streams.push(d);
        Some(runs)
    } else {
        None
    };
    let ready_all = {
        let (experiments, sets, pods, runs) = (
            experiments.clone(),
            set_stores.clone(),
            pod_stores.clone(),
            runs.clone(),
        );
        move || {
            let ok = |r: Option<Result<(), _>>| matches!(r, Some(Ok(())));
            ok(experiments.wait_until_ready().now_or_never())
                && sets.iter().all(|s| ok(s.wait_until_ready().now_or_never()))
                && pods.iter().all(|p| ok(p.wait_until_ready().now_or_never()))
                && runs
                    .as_ref()
                    .is_none_or(|r| ok(r.wait_until_ready().now_or_never()))
        }
    };
    let snapshot = move || ExperimentObjects {
        experiment: experiments
            .state()
            .first()
            .map(|e| (**e).clone())
            .unwrap_or_default(),
        replica_sets: distinct(
            set_stores
                .iter()
                .flat_map(|s| s.state())
                .map(|s| (*s).clone()),
        ),
        pods: distinct(
            pod_stores
                .iter()
                .flat_map(|p| p.state())
                .map(|p| (*p).clone()),
        ),
        analysis_runs: runs
            .as_ref()
            .map(|r| r.state().iter().map(|a| (**a).clone()).collect())
            .unwrap_or_default(),
    };
    let found = |o: &ExperimentObjects| o.experiment.metadata.name.is_some();
    Ok(stream::select_all(streams)
        .ready_chunks(1024)
        .filter_map(move |chunk| {
            ready(match chunk.into_iter().find_map(Result::err) {
                Some(refused) => Some(Err(refused)),
                None => ready_all().then(&snapshot).map(Ok),
            })
        })
        .map(move |o| o.map(|o| found(&o).then_some(o))))
}
