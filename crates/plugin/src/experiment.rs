//! Experiments, as `kubectl argo rollouts` shows and changes them: `get experiment NAME
//! [--watch]` (the experiment, its templates' ReplicaSets and pods, its AnalysisRuns, as a
//! tree), `list experiments`, `terminate experiment` (`{"spec":{"terminate":true}}`) and `retry
//! experiment` (its status cleared, so the controller starts it again). The model and the
//! rendering are pure functions of objects; [`super::fetch`] reads them.

use std::{collections::BTreeMap, pin::pin, process::ExitCode};

use clap::Args;
use futures::StreamExt as _;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Api,
    api::ListParams,
    runtime::{WatchStreamExt as _, watcher},
};
use serde::Serialize;
use serde_json::{Value, json};
use sluice_api::{
    AnalysisPhase, AnalysisRun, ConditionStatus, Experiment,
    vocab::{EXPERIMENT_NAME_ANNOTATION, EXPERIMENT_TEMPLATE_ANNOTATION},
};

use super::{
    Context, Error,
    get::{LABEL, analysis_run_row, field, name_cell, replica_set_rows, run_look, tree_table},
    info::{AnalysisRunInfo, ReplicaSetInfo, RunCounts, run_info},
    owned::{created, owned_by, replica_set_info},
    print,
    style::{Paint, Style, age, icons, truncate},
    table::{Cell, Fit, Table},
};

/// An experiment and the objects that may belong to it, as read from the cluster.
#[derive(Clone, Debug, Default)]
pub struct ExperimentObjects {
    /// The Experiment.
    pub experiment: Experiment,
    /// ReplicaSets (those not owned by the experiment are ignored).
    pub replica_sets: Vec<ReplicaSet>,
    /// Pods (those not owned by one of its ReplicaSets are ignored).
    pub pods: Vec<Pod>,
    /// AnalysisRuns (those neither in its status nor owned by it are ignored).
    pub analysis_runs: Vec<AnalysisRun>,
}

/// The phase of an experiment as a word; `Pending` until the controller has written one.
pub fn phase_word(experiment: &Experiment) -> &'static str {
    experiment
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or("Pending", |p| run_look(p).0)
}

/// Whether the experiment has ended (its phase is a verdict).
fn completed(experiment: &Experiment) -> bool {
    experiment
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(AnalysisPhase::is_completed)
}

/// Why the experiment is where it is: an invalid spec first (it explains an `Error` phase),
/// else the controller's message.
fn message(experiment: &Experiment) -> String {
    let Some(status) = experiment.status.as_ref() else {
        return String::new();
    };
    if let Some(invalid) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "InvalidSpec" && c.status == ConditionStatus::True)
    {
        return format!("InvalidSpec: {}", invalid.message);
    }
    status.message.clone().unwrap_or_default()
}

/// What is left of the experiment's duration at `now`: `availableAt + duration - now`, never
/// below zero; `None` without a duration, before every template is available, or once ended.
pub fn remaining(experiment: &Experiment, now: Timestamp) -> Option<SignedDuration> {
    remaining_of(
        experiment.spec.duration.as_ref(),
        available_at(experiment),
        completed(experiment),
        now,
    )
}

/// When every template of the experiment was first available.
fn available_at(experiment: &Experiment) -> Option<Timestamp> {
    Some(experiment.status.as_ref()?.available_at.as_ref()?.0)
}

/// [`remaining`], from its parts.
fn remaining_of(
    duration: Option<&sluice_api::Duration>,
    available_at: Option<Timestamp>,
    completed: bool,
    now: Timestamp,
) -> Option<SignedDuration> {
    if completed {
        return None;
    }
    let length = SignedDuration::try_from(duration?.as_std()).ok()?;
    let end = available_at?.checked_add(length).ok()?;
    Some(end.duration_since(now).max(SignedDuration::ZERO))
}

/// A length of time as the AGE column writes it (`45s`, `5m30s`, `3h20m`).
fn span(length: SignedDuration) -> String {
    let now = Timestamp::UNIX_EPOCH;
    match now.checked_add(length) {
        Ok(later) => age(Some(now), later),
        Err(_) => "-".into(),
    }
}

/// Everything `get experiment` shows about one experiment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentInfo {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// Its phase as a word (`Pending`, `Running`, `Successful`, `Failed`, `Error`,
    /// `Inconclusive`).
    pub status: String,
    /// Why it has that phase.
    pub message: String,
    /// `spec.duration` as written.
    pub duration: Option<String>,
    /// What is left of the duration, as of the time the model was made; `None` also in a
    /// rollout's model, which is made without a clock.
    pub remaining: Option<String>,
    /// Whether `spec.terminate` is set.
    pub terminated: bool,
    /// Each template's images, in the templates' order.
    pub images: Vec<TemplateImage>,
    /// The templates' ReplicaSets found, in the templates' order.
    pub replica_sets: Vec<ReplicaSetInfo>,
    /// Its AnalysisRuns: those of `status.analysisRuns` first, then any other it owns.
    pub analysis_runs: Vec<AnalysisRunInfo>,
    /// In a rollout's model, the revision it hangs under (the one it was made for); `None` in
    /// an experiment's own.
    pub revision: Option<i64>,
}

/// An image a template runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TemplateImage {
    /// The image reference.
    pub image: String,
    /// The template's name.
    pub template: String,
}

impl ExperimentInfo {
    /// The model of `objects` at `now` (the time only sets `remaining`).
    pub fn new(objects: &ExperimentObjects, now: Timestamp) -> Self {
        Self::of(
            &objects.experiment,
            &objects.replica_sets,
            &objects.pods,
            &objects.analysis_runs,
            Some(now),
        )
    }

    /// The model of `experiment` among objects read with it (its own are picked out: owned by
    /// it, and for a ReplicaSet made from one of its templates), so `get rollout` models each of
    /// a rollout's experiments from the lists it read once. Without `now`, `remaining` is `None`.
    pub fn of(
        experiment: &Experiment,
        replica_sets: &[ReplicaSet],
        pods: &[Pod],
        analysis_runs: &[AnalysisRun],
        now: Option<Timestamp>,
    ) -> Self {
        let exp = experiment;
        let name = exp.metadata.name.clone().unwrap_or_default();
        let uid = exp.metadata.uid.clone().unwrap_or_default();
        let images = exp
            .spec
            .templates
            .iter()
            .flat_map(|t| {
                let containers = t.template.spec.iter().flat_map(|s| &s.containers);
                containers
                    .filter_map(|c| c.image.clone())
                    .map(|image| TemplateImage {
                        image,
                        template: t.name.clone(),
                    })
            })
            .collect();
        let replica_sets = exp
            .spec
            .templates
            .iter()
            .filter_map(|t| {
                replica_sets
                    .iter()
                    .filter(|rs| !uid.is_empty() && owned_by(&rs.metadata.owner_references, &uid))
                    .find(|rs| made_from(rs, &name, &t.name))
            })
            .map(|rs| replica_set_info(rs, pods, Vec::new()))
            .collect();
        Self {
            namespace: exp.metadata.namespace.clone().unwrap_or_default(),
            created: created(&exp.metadata),
            status: phase_word(exp).to_string(),
            message: message(exp),
            duration: exp.spec.duration.as_ref().map(ToString::to_string),
            remaining: now.and_then(|now| remaining(exp, now)).map(span),
            terminated: exp.spec.is_terminated(),
            images,
            replica_sets,
            analysis_runs: runs(exp, analysis_runs, &uid),
            revision: None,
            name,
        }
    }
}

/// Whether the ReplicaSet (owned by the experiment `experiment`) is the one of `template`: by
/// Argo's annotations, or by its name `<experiment>-<template>` when they are missing.
fn made_from(rs: &ReplicaSet, experiment: &str, template: &str) -> bool {
    let annotations = rs.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    if annotation(EXPERIMENT_NAME_ANNOTATION).is_some_and(|e| e != experiment) {
        return false;
    }
    match annotation(EXPERIMENT_TEMPLATE_ANNOTATION) {
        Some(t) => t == template,
        None => rs.metadata.name.as_deref() == Some(&format!("{experiment}-{template}")),
    }
}

/// The experiment's runs: those its status lists, in its order (the run's own phase when the
/// run was read, else the status's), then the runs it owns that the status does not list yet.
fn runs(experiment: &Experiment, analysis_runs: &[AnalysisRun], uid: &str) -> Vec<AnalysisRunInfo> {
    let by_name: BTreeMap<&str, &AnalysisRun> = analysis_runs
        .iter()
        .filter_map(|r| r.metadata.name.as_deref().map(|n| (n, r)))
        .collect();
    let listed = experiment.status.iter().flat_map(|s| &s.analysis_runs);
    let mut out: Vec<AnalysisRunInfo> = listed
        .clone()
        .map(|entry| match by_name.get(entry.analysis_run.as_str()) {
            Some(run) => run_info(run),
            None => AnalysisRunInfo {
                name: entry.analysis_run.clone(),
                created: None,
                phase: entry.phase,
                counts: RunCounts::default(),
            },
        })
        .collect();
    let mut unlisted: Vec<&AnalysisRun> = analysis_runs
        .iter()
        .filter(|r| !uid.is_empty() && owned_by(&r.metadata.owner_references, uid))
        .filter(|r| {
            let name = r.metadata.name.as_deref().unwrap_or_default();
            !listed.clone().any(|e| e.analysis_run == name)
        })
        .collect();
    unlisted.sort_by(|a, b| {
        (created(&a.metadata), &a.metadata.name).cmp(&(created(&b.metadata), &b.metadata.name))
    });
    out.extend(unlisted.into_iter().map(run_info));
    out
}

/// The experiment's summary and tree, as `get experiment` prints it. Pure: the time comes in as
/// `now`.
pub fn render_experiment(info: &ExperimentInfo, style: &Style, now: Timestamp) -> String {
    let mut out = String::new();
    field(&mut out, "Name:", &info.name, style);
    field(&mut out, "Namespace:", &info.namespace, style);
    out.push_str(&format!(
        "{:<LABEL$}{}\n",
        "Status:",
        phase_text(&info.status, style)
    ));
    if !info.message.is_empty() {
        field(&mut out, "Message:", &info.message, style);
    }
    if let Some(duration) = &info.duration {
        field(&mut out, "Duration:", duration, style);
    }
    if let Some(remaining) = &info.remaining {
        field(&mut out, "Remaining:", remaining, style);
    }
    if info.terminated {
        field(&mut out, "Terminated:", "yes", style);
    }
    for (i, image) in info.images.iter().enumerate() {
        let suffix = format!(" ({})", image.template);
        let room = style
            .width
            .saturating_sub(LABEL + suffix.chars().count())
            .max(12);
        let label = if i == 0 { "Images:" } else { "" };
        out.push_str(&format!(
            "{label:<LABEL$}{}{suffix}\n",
            truncate(&image.image, room)
        ));
    }
    out.push('\n');
    let mut table = tree_table();
    experiment_rows(&mut table, info, "", "", style, now);
    out.push_str(&table.render(style));
    out
}

/// An experiment's phase with its symbol and colour: in progress (Pending, Running) looks like
/// a running AnalysisRun, the verdicts like a finished one.
fn phase_text(word: &str, style: &Style) -> String {
    let (icon, paint) = phase_look(word);
    style.paint(paint, &format!("{}{word}", style.icon(icon)))
}

/// The symbol and colour of an experiment's phase word.
fn phase_look(word: &str) -> (&'static str, Paint) {
    match word {
        "Pending" | "Running" => (icons::PROGRESSING, Paint::Yellow),
        "Error" => (icons::WARNING, Paint::Red),
        _ => super::style::look(word),
    }
}

/// The rows of an experiment in a tree: its own row with `branch` drawn before it, then its
/// ReplicaSets (with their pods) and its AnalysisRuns hanging from `stem`; a tree of its own
/// has both empty, a rollout's tree hangs it under the revision it was made for.
pub(crate) fn experiment_rows(
    table: &mut Table,
    info: &ExperimentInfo,
    branch: &str,
    stem: &str,
    style: &Style,
    now: Timestamp,
) {
    let (icon, paint) = phase_look(&info.status);
    table.row(vec![
        name_cell(style, branch, icons::EXPERIMENT, &info.name, Paint::None),
        Cell::plain("Experiment"),
        Cell::painted(format!("{}{}", style.icon(icon), info.status), paint),
        Cell::plain(age(info.created, now)),
    ]);
    let children = info.replica_sets.len() + info.analysis_runs.len();
    let mut child = 0;
    for rs in &info.replica_sets {
        child += 1;
        replica_set_rows(table, rs, stem, child == children, style, now);
    }
    for run in &info.analysis_runs {
        child += 1;
        analysis_run_row(table, run, stem, child == children, style, now);
    }
}

/// `get experiment`.
#[derive(Debug, Args)]
pub struct GetExperiment {
    /// The experiment's name.
    pub name: String,
    /// Redraw on every change of the experiment, its ReplicaSets, pods or AnalysisRuns (Ctrl-C
    /// ends).
    #[arg(short, long)]
    pub watch: bool,
    /// Print the tree without colours or symbols (also when NO_COLOR is set, or piped).
    #[arg(long)]
    pub no_color: bool,
    /// With --watch: stop watching after this many seconds (exit 0, as Argo's); 0 watches
    /// until Ctrl-C.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub timeout_seconds: u64,
}

/// Runs `get experiment`.
pub(crate) async fn get(ctx: &Context, args: GetExperiment) -> Result<ExitCode, Error> {
    let style = Style {
        color: ctx.style.color && !args.no_color,
        ..ctx.style
    };
    let ctx = &Context {
        style,
        ..ctx.clone()
    };
    if args.watch {
        let timeout = (args.timeout_seconds > 0)
            .then(|| std::time::Duration::from_secs(args.timeout_seconds));
        return watch(ctx, &args.name, timeout).await;
    }
    let objects = super::fetch::experiment_objects(ctx, &args.name).await?;
    let now = Timestamp::now();
    print(&render_experiment(
        &ExperimentInfo::new(&objects, now),
        &style,
        now,
    ));
    Ok(ExitCode::SUCCESS)
}

/// Redraws the experiment's tree on every change until Ctrl-C or `timeout` (both exit 0); its
/// deletion, or a watch RBAC refuses, ends it with an error.
async fn watch(
    ctx: &Context,
    name: &str,
    timeout: Option<std::time::Duration>,
) -> Result<ExitCode, Error> {
    let mut snapshots = pin!(super::fetch::watch_experiment(ctx, name).await?);
    let mut deadline = pin!(async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    });
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            () = &mut deadline => return Ok(ExitCode::SUCCESS),
            next = snapshots.next() => match next.transpose()? {
                Some(Some(objects)) => {
                    let style = Style { width: Style::of_stdout().width, ..ctx.style };
                    let now = Timestamp::now();
                    let text = render_experiment(&ExperimentInfo::new(&objects, now), &style, now);
                    if text != last {
                        print(&if ctx.style.color { format!("\x1b[H\x1b[2J{text}") } else { format!("{text}\n") });
                        last = text;
                    }
                }
                Some(None) => {
                    return Err(Error::Refused(format!("the experiment \"{name}\" was deleted")));
                }
                None => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// `list experiments`.
#[derive(Debug, Args)]
pub struct ListExperiments {
    /// List the experiments of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Then print a line each time an experiment's line changes (Ctrl-C ends).
    #[arg(short, long)]
    pub watch: bool,
}

/// One experiment of the list: what its line is made of.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its phase as a word.
    pub status: String,
    /// Whether the phase is a verdict (no time remains then).
    pub completed: bool,
    /// `spec.duration`.
    pub duration: Option<sluice_api::Duration>,
    /// When every template was first available: the duration counts from here.
    pub available_at: Option<Timestamp>,
    /// When it was created.
    pub created: Option<Timestamp>,
}

impl ExperimentRow {
    /// The row of one experiment.
    pub fn new(experiment: &Experiment) -> Self {
        Self {
            namespace: experiment.metadata.namespace.clone().unwrap_or_default(),
            name: experiment.metadata.name.clone().unwrap_or_default(),
            status: phase_word(experiment).to_string(),
            completed: completed(experiment),
            duration: experiment.spec.duration.clone(),
            available_at: available_at(experiment),
            created: created(&experiment.metadata),
        }
    }

    /// What is left of the duration at `now`, as [`remaining`] says.
    pub fn remaining(&self, now: Timestamp) -> Option<SignedDuration> {
        remaining_of(
            self.duration.as_ref(),
            self.available_at,
            self.completed,
            now,
        )
    }
}

/// The table of `list experiments` at `now`: NAME, STATUS, DURATION, REMAINING, AGE, with a
/// NAMESPACE column first when `namespaces`.
pub fn render_experiment_list(
    rows: &[ExperimentRow],
    namespaces: bool,
    style: &Style,
    now: Timestamp,
) -> String {
    let mut headers = vec![
        ("NAME", Fit::Cut(8)),
        ("STATUS", Fit::Keep),
        ("DURATION", Fit::Keep),
        ("REMAINING", Fit::Keep),
        ("AGE", Fit::Keep),
    ];
    if namespaces {
        headers.insert(0, ("NAMESPACE", Fit::Cut(6)));
    }
    let mut table = Table::new(&headers);
    for row in rows {
        let (icon, paint) = phase_look(&row.status);
        let mut cells = vec![
            Cell::plain(&row.name),
            Cell::painted(format!("{}{}", style.icon(icon), row.status), paint),
            Cell::plain(
                row.duration
                    .as_ref()
                    .map_or_else(|| "-".into(), ToString::to_string),
            ),
            Cell::plain(row.remaining(now).map_or_else(|| "-".into(), span)),
            Cell::plain(age(row.created, now)),
        ];
        if namespaces {
            cells.insert(0, Cell::plain(&row.namespace));
        }
        table.row(cells);
    }
    table.render(style)
}

/// Runs `list experiments`.
pub(crate) async fn list(ctx: &Context, args: ListExperiments) -> Result<ExitCode, Error> {
    let api: Api<Experiment> = if args.all_namespaces {
        Api::all(ctx.client.clone())
    } else {
        ctx.api()
    };
    let describe = |verb| {
        let mut request = ctx.request(verb, "experiments", "Experiment", None);
        if args.all_namespaces {
            request.namespace = "";
        }
        request
    };
    let mut experiments = api
        .list(&ListParams::default())
        .await
        .map_err(|e| describe("list").error(e))?;
    experiments.items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let rows: Vec<ExperimentRow> = experiments.items.iter().map(ExperimentRow::new).collect();
    let now = Timestamp::now();
    match () {
        () if rows.is_empty() && !args.watch && !args.all_namespaces => print(&format!(
            "No experiments found in namespace \"{}\".\n",
            ctx.namespace
        )),
        () if rows.is_empty() && !args.watch => print("No experiments found.\n"),
        () => print(&render_experiment_list(
            &rows,
            args.all_namespaces,
            &ctx.style,
            now,
        )),
    }
    if !args.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let mut last: BTreeMap<(String, String), ExperimentRow> = rows
        .into_iter()
        .map(|r| ((r.namespace.clone(), r.name.clone()), r))
        .collect();
    let mut changes = pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            next = changes.next() => match next {
                Some(Ok(experiment)) => {
                    let row = ExperimentRow::new(&experiment);
                    let key = (row.namespace.clone(), row.name.clone());
                    if last.get(&key) != Some(&row) {
                        let table = render_experiment_list(
                            std::slice::from_ref(&row),
                            args.all_namespaces,
                            &ctx.style,
                            Timestamp::now(),
                        );
                        // The header was printed once, above.
                        print(&table.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>());
                        last.insert(key, row);
                    }
                }
                // RBAC refused the watch: retrying cannot help, and waiting would hang.
                Some(Err(e)) => {
                    if let Some(refused) = super::fetch::refused(ctx, "experiments", "Experiment", &e) {
                        return Err(refused);
                    }
                }
                None => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// `terminate experiment` and `retry experiment`: the experiment's name.
#[derive(Debug, Args)]
pub struct ExperimentName {
    /// The experiment's name.
    pub name: String,
}

/// The merge patch of `terminate experiment`, on the main resource (Argo's).
pub fn terminate_patch() -> Value {
    json!({ "spec": { "terminate": true } })
}

/// The merge patch of `retry experiment`, on the status subresource: the status removed, so the
/// controller starts the experiment over (Argo's patch, sent where a CRD with a status
/// subresource takes it).
pub fn retry_patch() -> Value {
    json!({ "status": null })
}

/// What `terminate experiment` writes for `experiment`: the patch, or why nothing is written
/// (an experiment that has ended has nothing to stop), and the line it prints.
pub fn termination(experiment: &Experiment) -> (Option<Value>, String) {
    let name = experiment.metadata.name.as_deref().unwrap_or_default();
    if completed(experiment) {
        return (
            None,
            format!(
                "experiment '{name}' already completed ({}): nothing to terminate",
                phase_word(experiment)
            ),
        );
    }
    (
        Some(terminate_patch()),
        format!("experiment '{name}' terminated"),
    )
}

/// Runs `terminate experiment`.
pub(crate) async fn terminate(ctx: &Context, args: ExperimentName) -> Result<ExitCode, Error> {
    let name = args.name.as_str();
    let api = ctx.api::<Experiment>();
    let describe = |verb| ctx.request(verb, "experiments", "Experiment", Some(name));
    let experiment = api.get(name).await.map_err(|e| describe("get").error(e))?;
    let (patch, said) = termination(&experiment);
    if let Some(patch) = patch {
        api.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|e| describe("patch").error(e))?;
    }
    print(&format!("{said}\n"));
    Ok(ExitCode::SUCCESS)
}

/// Runs `retry experiment`.
pub(crate) async fn retry(ctx: &Context, args: ExperimentName) -> Result<ExitCode, Error> {
    let name = args.name.as_str();
    ctx.api::<Experiment>()
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&retry_patch()),
        )
        .await
        .map_err(|e| {
            ctx.request("patch", "experiments/status", "Experiment", Some(name))
                .error(e)
        })?;
    print(&format!("experiment '{name}' retried\n"));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use insta::assert_snapshot;

    use super::*;
    use crate::{
        Cli, Command,
        fixtures::{
            EXP, ago, experiment, experiment_run, experiment_running, experiment_set,
            experiment_status, from, now, plain, run,
        },
        style::columns,
    };

    fn tree(objects: &ExperimentObjects, style: Style) -> String {
        let out = render_experiment(&ExperimentInfo::new(objects, now()), &style, now());
        if !style.color {
            for line in out.lines() {
                assert!(
                    columns(line) <= style.width,
                    "wider than {}: {line}",
                    style.width
                );
            }
        }
        out
    }

    #[test]
    fn a_running_experiment_shows_its_templates_pods_and_runs_as_a_tree() {
        let objects = experiment_running();
        assert_snapshot!("experiment_running_wide", tree(&objects, plain(120)));
        assert_snapshot!("experiment_running_narrow", tree(&objects, plain(60)));
        let coloured = tree(
            &objects,
            Style {
                width: 120,
                color: true,
            },
        );
        assert_snapshot!("experiment_running_colour", coloured.replace('\x1b', "\\e"));
    }

    #[test]
    fn a_failed_analysis_shows_the_failed_run_and_the_experiment_failed() {
        let mut objects = experiment_running();
        let mut failed = experiment_status("Failed", "Failed");
        failed["message"] = json!("analysis success-rate Failed");
        objects.experiment = experiment(failed);
        objects.analysis_runs = vec![experiment_run("Failed", [3, 2, 0, 0])];
        assert_snapshot!("experiment_failed", tree(&objects, plain(120)));
    }

    #[test]
    fn an_experiment_not_yet_seen_by_the_controller_is_pending_with_nothing_under_it() {
        let objects = ExperimentObjects {
            experiment: experiment(Value::Null),
            ..ExperimentObjects::default()
        };
        let info = ExperimentInfo::new(&objects, now());
        assert_eq!(info.status, "Pending");
        assert_eq!(info.remaining, None, "no time runs before the pods are up");
        assert!(info.replica_sets.is_empty() && info.analysis_runs.is_empty());
        let out = tree(&objects, plain(120));
        assert!(out.contains("Status:         Pending\n"), "{out}");
        assert_eq!(
            out.lines()
                .last()
                .map(|l| l.split_whitespace().collect::<Vec<_>>()),
            Some(vec![EXP, "Experiment", "Pending", "5m0s"])
        );
    }

    #[test]
    fn an_invalid_spec_is_said_in_the_message() {
        let experiment = experiment(json!({
            "phase": "Error",
            "message": "the experiment cannot run",
            "conditions": [{
                "type": "InvalidSpec", "status": "True", "reason": "InvalidSpec",
                "message": "template \"canary\": selector does not match the template's labels",
                "lastUpdateTime": ago(290), "lastTransitionTime": ago(290)
            }]
        }));
        let info = ExperimentInfo::new(
            &ExperimentObjects {
                experiment,
                ..ExperimentObjects::default()
            },
            now(),
        );
        assert_eq!(info.status, "Error");
        assert_eq!(
            info.message,
            "InvalidSpec: template \"canary\": selector does not match the template's labels"
        );
    }

    #[test]
    fn only_the_experiment_s_own_replica_sets_and_runs_are_shown() {
        let mut objects = experiment_running();
        // Another experiment's set with the same labels, and one of this experiment's sets
        // written without Argo's annotations (found by its name).
        let mut other = experiment_set("baseline", 1, 1);
        other.metadata.name = Some("other-baseline".into());
        other.metadata.uid = Some("rs-other".into());
        for owner in other.metadata.owner_references.iter_mut().flatten() {
            owner.uid = "other-experiment".into();
        }
        objects.replica_sets.push(other);
        let mut unannotated = experiment_set("canary", 2, 1);
        unannotated.metadata.annotations = None;
        objects.replica_sets[0] = unannotated;
        let mut stray = run("shop-7d9f8c6b5-2", 2, "Running", [1, 0, 0, 0], 100);
        stray.metadata.name = Some("rollout-run".into());
        objects.analysis_runs.push(stray);
        let info = ExperimentInfo::new(&objects, now());
        let sets: Vec<&str> = info.replica_sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(sets, [format!("{EXP}-baseline"), format!("{EXP}-canary")]);
        let runs: Vec<&str> = info.analysis_runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(runs, [format!("{EXP}-success-rate")]);
    }

    #[test]
    fn a_run_the_status_lists_but_not_yet_read_shows_the_status_s_phase() {
        let mut objects = experiment_running();
        objects.analysis_runs.clear();
        let info = ExperimentInfo::new(&objects, now());
        assert_eq!(info.analysis_runs.len(), 1);
        assert_eq!(info.analysis_runs[0].phase, AnalysisPhase::Running);
        assert_eq!(info.analysis_runs[0].counts, RunCounts::default());
    }

    #[test]
    fn remaining_counts_down_from_available_at_and_stops_at_the_verdict() {
        let minutes = |m: i64| Some(SignedDuration::from_mins(m));
        let running = experiment(experiment_status("Running", "Running"));
        assert_eq!(remaining(&running, now()), minutes(6));
        let late = now() + SignedDuration::from_mins(20);
        assert_eq!(
            remaining(&running, late),
            Some(SignedDuration::ZERO),
            "past its duration (a required analysis still running): nothing left, not negative"
        );
        let done = experiment(experiment_status("Successful", "Successful"));
        assert_eq!(remaining(&done, now()), None);
        let mut no_duration = running.clone();
        no_duration.spec.duration = None;
        assert_eq!(remaining(&no_duration, now()), None);
        let mut starting = running;
        if let Some(s) = starting.status.as_mut() {
            s.available_at = None;
        }
        assert_eq!(remaining(&starting, now()), None);
    }

    #[test]
    fn list_shows_status_duration_remaining_and_age() {
        let running = experiment(experiment_status("Running", "Running"));
        let mut inconclusive = experiment(experiment_status("Inconclusive", "Running"));
        inconclusive.metadata.name = Some("checkout-exp".into());
        let mut open_ended = experiment(Value::Null);
        open_ended.metadata.name = Some("until-terminated".into());
        open_ended.metadata.namespace = Some("staging".into());
        open_ended.spec.duration = None;
        let rows: Vec<ExperimentRow> = [running, inconclusive, open_ended]
            .iter()
            .map(ExperimentRow::new)
            .collect();
        assert_snapshot!(
            "experiment_list",
            render_experiment_list(&rows, false, &plain(120), now())
        );
        assert_snapshot!(
            "experiment_list_all_namespaces",
            render_experiment_list(&rows, true, &plain(120), now())
        );
        let narrow = render_experiment_list(&rows, true, &plain(60), now());
        assert!(narrow.lines().all(|l| columns(l) <= 60), "{narrow}");
        assert!(
            narrow.contains("shop-7d…  Running"),
            "names are cut, never the status: {narrow}"
        );
    }

    #[test]
    fn a_list_line_changes_only_when_what_it_shows_changes() {
        let before = ExperimentRow::new(&experiment(experiment_status("Running", "Running")));
        let mut counts = experiment(experiment_status("Running", "Successful"));
        if let Some(s) = counts.status.as_mut() {
            s.template_statuses[1].ready_replicas = 2;
        }
        assert_eq!(
            ExperimentRow::new(&counts),
            before,
            "no new line in --watch"
        );
        let after = ExperimentRow::new(&experiment(experiment_status("Successful", "Successful")));
        assert_ne!(after, before);
    }

    #[test]
    fn terminate_sets_spec_terminate_unless_the_experiment_has_ended() {
        let (patch, said) = termination(&experiment(experiment_status("Running", "Running")));
        assert_eq!(patch, Some(json!({ "spec": { "terminate": true } })));
        assert_eq!(said, format!("experiment '{EXP}' terminated"));
        let (patch, said) = termination(&experiment(experiment_status("Failed", "Failed")));
        assert_eq!(patch, None);
        assert_eq!(
            said,
            format!("experiment '{EXP}' already completed (Failed): nothing to terminate")
        );
        // Not yet seen by the controller: it can still be stopped before it starts.
        let (patch, _) = termination(&experiment(Value::Null));
        assert!(patch.is_some());
    }

    #[test]
    fn retry_clears_the_status_so_the_controller_starts_over() {
        assert_eq!(retry_patch(), json!({ "status": null }));
        let terminated = experiment(json!({ "phase": "Running" }));
        let mut cleared = serde_json::to_value(&terminated).expect("JSON");
        if let (Some(target), Some(patch)) = (cleared.as_object_mut(), retry_patch().as_object()) {
            for (k, v) in patch {
                if v.is_null() {
                    target.remove(k);
                }
            }
        }
        let cleared: Experiment = from(cleared);
        assert_eq!(cleared.status, None);
        assert_eq!(phase_word(&cleared), "Pending");
    }

    fn parse(args: &[&str]) -> Command {
        let mut line = vec!["kubectl-sluice"];
        line.extend(args);
        Cli::try_parse_from(line)
            .expect("valid command line")
            .command
    }

    #[test]
    fn the_commands_take_argo_s_names_aliases_and_flags() {
        for word in ["experiment", "exp", "experiments"] {
            let Command::Get(crate::get::Get::Experiment(args)) = parse(&[
                "get",
                word,
                EXP,
                "-w",
                "--no-color",
                "--timeout-seconds",
                "60",
            ]) else {
                panic!("get {word} is get experiment");
            };
            assert_eq!(args.name, EXP);
            assert!(args.watch && args.no_color);
            assert_eq!(args.timeout_seconds, 60);
        }
        for word in ["experiments", "experiment", "exp"] {
            let Command::List(crate::list::List::Experiments(args)) =
                parse(&["list", word, "-A", "--watch"])
            else {
                panic!("list {word} is list experiments");
            };
            assert!(args.all_namespaces && args.watch);
        }
        let Command::Terminate(crate::terminate::Terminate::Experiment(args)) =
            parse(&["terminate", "experiment", EXP, "-n", "prod"])
        else {
            panic!("terminate experiment");
        };
        assert_eq!(args.name, EXP);
        let Command::Retry(crate::retry::Retry::Experiment(args)) = parse(&["retry", "exp", EXP])
        else {
            panic!("retry experiment");
        };
        assert_eq!(args.name, EXP);
        let missing = Cli::try_parse_from(["kubectl-sluice", "terminate", "experiment"]);
        assert_eq!(
            missing.map(|_| ()).map_err(|e| e.exit_code()),
            Err(2),
            "a missing name is a usage error"
        );
    }

    #[test]
    fn shell_completion_offers_the_experiment_commands() {
        for shell in ["bash", "zsh", "fish", "powershell"] {
            let script = crate::completion::script(&crate::completion::CompletionArgs {
                shell: shell.into(),
            });
            assert!(script.contains("experiment"), "{shell}");
            assert!(script.contains("experiments"), "{shell}: list experiments");
        }
    }
}
