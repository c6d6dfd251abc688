//! `get rollout NAME [--watch]`: the rollout's summary and its tree of revisions, ReplicaSets,
//! pods, Experiments and AnalysisRuns, redrawn on every change while watching; `get analysisrun
//! NAME`: a run's metrics and measurements; `get experiment NAME` (in `experiment.rs`): an
//! experiment's tree.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use futures::StreamExt as _;
use jiff::Timestamp;
use sluice_api::{AnalysisPhase, AnalysisRun};

use super::{
    Context, Error, Output, encode,
    experiment::experiment_rows,
    info::{AnalysisRunInfo, ReplicaSetInfo, RolloutInfo, run_info},
    print,
    style::{Paint, Style, age, icons, look, truncate},
    table::{Cell, Fit, Table},
};

/// What to show.
#[derive(Debug, Subcommand)]
pub enum Get {
    /// A rollout: its status, step, weights, images, and the tree of what it owns.
    #[command(
        visible_aliases = ["ro", "rollouts"],
        after_help = "Examples:\n  # Show a rollout\n  kubectl sluice get rollout shop\n\n  \
                      # Redraw it on every change until Ctrl-C\n  kubectl sluice get rollout shop --watch\n\n  \
                      # Watch for at most a minute, without colours\n  kubectl sluice get rollout shop -w --timeout-seconds 60 --no-color\n\n  \
                      # The same information as data\n  kubectl sluice get rollout shop -o json"
    )]
    Rollout(GetRollout),
    /// An AnalysisRun: its phase and each metric's measurements.
    #[command(
        visible_aliases = ["ar", "analysisruns"],
        after_help = "Example:\n  kubectl sluice get analysisrun shop-6f9c7d-2"
    )]
    Analysisrun(GetAnalysisRun),
    /// An Experiment: its status, and the tree of its ReplicaSets, pods and AnalysisRuns.
    #[command(
        visible_aliases = ["exp", "experiments"],
        after_help = "Examples:\n  # Show an experiment\n  kubectl sluice get experiment shop-6f9c7d-2-0\n\n  \
                      # Redraw it on every change for at most ten minutes\n  kubectl sluice get experiment shop-6f9c7d-2-0 -w --timeout-seconds 600"
    )]
    Experiment(super::experiment::GetExperiment),
}

/// `get rollout`.
#[derive(Debug, Args)]
pub struct GetRollout {
    /// The rollout's name.
    pub name: String,
    /// Redraw on every change of the rollout, its ReplicaSets, pods, AnalysisRuns or Experiments
    /// (Ctrl-C ends).
    #[arg(short, long)]
    pub watch: bool,
    /// Print the information as data instead of a tree.
    #[arg(short, long, value_enum, conflicts_with = "watch")]
    pub output: Option<Output>,
    /// Print the tree without colours or symbols (also when NO_COLOR is set, or piped).
    #[arg(long)]
    pub no_color: bool,
    /// With --watch: stop watching after this many seconds (exit 0, as Argo's); 0 watches
    /// until Ctrl-C.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub timeout_seconds: u64,
}

/// `get analysisrun`.
#[derive(Debug, Args)]
pub struct GetAnalysisRun {
    /// The AnalysisRun's name.
    pub name: String,
    /// Print the AnalysisRun object as data.
    #[arg(short, long, value_enum)]
    pub output: Option<Output>,
}

/// Runs `get`.
pub async fn run(ctx: &Context, get: Get) -> Result<ExitCode, Error> {
    match get {
        Get::Rollout(args) => {
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
            let info = RolloutInfo::new(&super::fetch::objects(ctx, &args.name).await?);
            print(&match args.output {
                Some(format) => encode(&info, format)?,
                None => render_rollout(&info, &style, Timestamp::now()),
            });
            Ok(ExitCode::SUCCESS)
        }
        Get::Analysisrun(args) => {
            let run = ctx
                .api::<AnalysisRun>()
                .get(&args.name)
                .await
                .map_err(|e| {
                    ctx.request("get", "analysisruns", "AnalysisRun", Some(&args.name))
                        .error(e)
                })?;
            print(&match args.output {
                Some(format) => encode(&run, format)?,
                None => render_analysis_run(&run, &ctx.style, Timestamp::now()),
            });
            Ok(ExitCode::SUCCESS)
        }
        Get::Experiment(args) => super::experiment::get(ctx, args).await,
    }
}

/// Redraws the tree on every change until Ctrl-C or `timeout` (both exit 0); the rollout's
/// deletion, or a watch RBAC refuses, ends it with an error. `create -w` watches with it too.
pub(crate) async fn watch(
    ctx: &Context,
    name: &str,
    timeout: Option<std::time::Duration>,
) -> Result<ExitCode, Error> {
    let mut snapshots = std::pin::pin!(super::fetch::watch(ctx, name).await?);
    let mut deadline = std::pin::pin!(async {
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
                    // The width is read again: the terminal may have been resized.
                    let style = Style { width: Style::of_stdout().width, ..ctx.style };
                    let text = render_rollout(&RolloutInfo::new(&objects), &style, Timestamp::now());
                    if text != last {
                        // On a terminal, draw over the previous tree; piped, append the new one.
                        print(&if ctx.style.color { format!("\x1b[H\x1b[2J{text}") } else { format!("{text}\n") });
                        last = text;
                    }
                }
                Some(None) => return Err(Error::Deleted { name: name.to_string() }),
                None => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// Width of the labels of the summary (`  ActualWeight:` and a space).
pub(crate) const LABEL: usize = 16;

/// One `Label:  value` line of the summary, the value cut to the width.
pub(crate) fn field(out: &mut String, label: &str, value: &str, style: &Style) {
    let room = style.width.saturating_sub(LABEL).max(12);
    out.push_str(format!("{label:<LABEL$}{}", truncate(value, room)).trim_end());
    out.push('\n');
}

/// The status word, with its symbol and colour on a terminal.
pub(crate) fn status_text(status: &str, style: &Style) -> String {
    let (icon, paint) = look(status);
    style.paint(paint, &format!("{}{status}", style.icon(icon)))
}

/// The colour of a role's marker.
fn role_paint(role: &str) -> Paint {
    match role {
        "stable" | "active" => Paint::Green,
        "canary" => Paint::Yellow,
        "preview" => Paint::Blue,
        _ => Paint::None,
    }
}

/// The rollout's summary and tree, as `get rollout` prints it. Pure: the time comes in as `now`.
pub fn render_rollout(info: &RolloutInfo, style: &Style, now: Timestamp) -> String {
    let mut out = String::new();
    field(&mut out, "Name:", &info.name, style);
    field(&mut out, "Namespace:", &info.namespace, style);
    // Coloured values are short and never cut; the status is written whole.
    out.push_str(&format!(
        "{:<LABEL$}{}\n",
        "Status:",
        status_text(info.status.as_str(), style)
    ));
    if !info.message.is_empty() {
        field(&mut out, "Message:", &info.message, style);
    }
    field(&mut out, "Strategy:", &info.strategy, style);
    if info.strategy == "Canary" {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        field(&mut out, "  Step:", &or_dash(info.step.clone()), style);
        let weight = |w: Option<i32>| or_dash(w.map(|w| w.to_string()));
        field(&mut out, "  SetWeight:", &weight(info.set_weight), style);
        field(
            &mut out,
            "  ActualWeight:",
            &weight(info.actual_weight),
            style,
        );
    }
    for (i, image) in info.images.iter().enumerate() {
        let roles: Vec<&str> = image.roles.iter().map(|r| r.as_str()).collect();
        let suffix = if roles.is_empty() {
            String::new()
        } else {
            format!(" ({})", roles.join(", "))
        };
        // The image is cut, never its roles.
        let room = style
            .width
            .saturating_sub(LABEL + suffix.chars().count())
            .max(12);
        let painted: Vec<String> = roles
            .iter()
            .map(|r| style.paint(role_paint(r), r))
            .collect();
        let suffix = if roles.is_empty() {
            String::new()
        } else {
            format!(" ({})", painted.join(", "))
        };
        let label = if i == 0 { "Images:" } else { "" };
        out.push_str(&format!(
            "{label:<LABEL$}{}{suffix}\n",
            truncate(&image.image, room)
        ));
    }
    out.push_str("Replicas:\n");
    let r = info.replicas;
    for (label, n) in [
        ("  Desired:", r.desired),
        ("  Current:", r.current),
        ("  Updated:", r.updated),
        ("  Ready:", r.ready),
        ("  Available:", r.available),
    ] {
        field(&mut out, label, &n.to_string(), style);
    }
    out.push('\n');
    out.push_str(&tree(info, style, now).render(style));
    out
}

/// The tree of the rollout as a table: NAME (with the tree drawn in it), KIND, STATUS, AGE, INFO.
/// Under each revision: its ReplicaSets with their pods, its Experiments with theirs (as `get
/// experiment` draws them), its AnalysisRuns.
fn tree(info: &RolloutInfo, style: &Style, now: Timestamp) -> Table {
    let mut table = tree_table();
    table.row(vec![
        name_cell(style, "", icons::ROLLOUT, &info.name, Paint::None),
        Cell::plain("Rollout"),
        status_cell(style, info.status.as_str()),
        Cell::plain(age(info.created, now)),
    ]);
    let count = info.revisions.len();
    for (i, revision) in info.revisions.iter().enumerate() {
        let (branch, stem) = branches(i + 1 == count);
        table.row(vec![name_cell(
            style,
            branch,
            icons::REVISION,
            &format!("revision:{}", revision.revision),
            Paint::None,
        )]);
        let experiments: Vec<_> = info
            .experiments
            .iter()
            .filter(|e| e.revision == Some(revision.revision))
            .collect();
        let children =
            revision.replica_sets.len() + experiments.len() + revision.analysis_runs.len();
        let mut child = 0;
        for rs in &revision.replica_sets {
            child += 1;
            replica_set_rows(&mut table, rs, stem, child == children, style, now);
        }
        // As Argo draws them: between the revision's ReplicaSets and its runs.
        for experiment in experiments {
            child += 1;
            let (twig, leaf_stem) = branches(child == children);
            experiment_rows(
                &mut table,
                experiment,
                &format!("{stem}{twig}"),
                &format!("{stem}{leaf_stem}"),
                style,
                now,
            );
        }
        for run in &revision.analysis_runs {
            child += 1;
            analysis_run_row(&mut table, run, stem, child == children, style, now);
        }
    }
    table
}

/// The columns of a tree (`get rollout`, `get experiment`): NAME with the tree drawn in it,
/// KIND, STATUS, AGE, INFO.
pub(crate) fn tree_table() -> Table {
    Table::new(&[
        ("NAME", Fit::Cut(16)),
        ("KIND", Fit::Drop),
        ("STATUS", Fit::Keep),
        ("AGE", Fit::Keep),
        ("INFO", Fit::Cut(8)),
    ])
}

/// A STATUS cell: the word with its symbol and colour on a terminal.
pub(crate) fn status_cell(style: &Style, status: &str) -> Cell {
    let (icon, paint) = look(status);
    Cell::painted(format!("{}{status}", style.icon(icon)), paint)
}

/// A NAME cell of a tree: the branches above it, the kind's symbol, the name.
pub(crate) fn name_cell(style: &Style, prefix: &str, icon: &str, name: &str, paint: Paint) -> Cell {
    let mut icon = style.icon(icon);
    if icon.is_empty() && !prefix.is_empty() {
        icon.push(' ');
    }
    Cell::plain(format!("{prefix}{icon}")).push(name, paint)
}

/// The row of a ReplicaSet hanging from `stem` (the last child when `last`), then its pods.
pub(crate) fn replica_set_rows(
    table: &mut Table,
    rs: &ReplicaSetInfo,
    stem: &str,
    last: bool,
    style: &Style,
    now: Timestamp,
) {
    let (twig, leaf_stem) = branches(last);
    let roles: Vec<&str> = rs.roles.iter().map(|r| r.as_str()).collect();
    let paint = roles.first().map_or(Paint::None, |r| role_paint(r));
    let mut info_cell = Cell::default();
    for (k, role) in roles.iter().enumerate() {
        let sep = if k == 0 { "" } else { "," };
        info_cell = info_cell.push(format!("{sep}{role}"), role_paint(role));
    }
    table.row(vec![
        name_cell(
            style,
            &format!("{stem}{twig}"),
            icons::REPLICA_SET,
            &rs.name,
            paint,
        ),
        Cell::plain("ReplicaSet"),
        status_cell(style, &format!("{:?}", rs.status)),
        Cell::plain(age(rs.created, now)),
        info_cell,
    ]);
    let pods = rs.pods.len();
    for (k, pod) in rs.pods.iter().enumerate() {
        let (leaf, _) = branches(k + 1 == pods);
        let mut detail = format!("ready:{}", pod.ready);
        if pod.restarts > 0 {
            detail.push_str(&format!(",restarts:{}", pod.restarts));
        }
        table.row(vec![
            name_cell(
                style,
                &format!("{stem}{leaf_stem}{leaf}"),
                icons::POD,
                &pod.name,
                Paint::None,
            ),
            Cell::plain("Pod"),
            status_cell(style, &pod.status),
            Cell::plain(age(pod.created, now)),
            Cell::plain(detail),
        ]);
    }
}

/// The row of an AnalysisRun hanging from `stem` (the last child when `last`).
pub(crate) fn analysis_run_row(
    table: &mut Table,
    run: &AnalysisRunInfo,
    stem: &str,
    last: bool,
    style: &Style,
    now: Timestamp,
) {
    let (twig, _) = branches(last);
    let (word, icon, paint) = run_look(run.phase);
    table.row(vec![
        name_cell(
            style,
            &format!("{stem}{twig}"),
            icons::ANALYSIS_RUN,
            &run.name,
            paint,
        ),
        Cell::plain("AnalysisRun"),
        Cell::painted(format!("{}{word}", style.icon(icon)), paint),
        Cell::plain(age(run.created, now)),
        run_counts(run, style),
    ]);
}

/// The connector of a child and the stem its own children hang from.
fn branches(last: bool) -> (&'static str, &'static str) {
    if last {
        ("└──", "   ")
    } else {
        ("├──", "│  ")
    }
}

/// An AnalysisRun's phase as a word, symbol and colour.
pub(crate) fn run_look(phase: AnalysisPhase) -> (&'static str, &'static str, Paint) {
    let word = match phase {
        AnalysisPhase::Pending => "Pending",
        AnalysisPhase::Running => "Running",
        AnalysisPhase::Successful => "Successful",
        AnalysisPhase::Failed => "Failed",
        AnalysisPhase::Error => "Error",
        AnalysisPhase::Inconclusive => "Inconclusive",
    };
    let (icon, paint) = match phase {
        AnalysisPhase::Pending | AnalysisPhase::Running => (icons::PROGRESSING, Paint::Yellow),
        AnalysisPhase::Error => (icons::WARNING, Paint::Red),
        _ => look(word),
    };
    (word, icon, paint)
}

/// Measurement counts of a run: symbols on a terminal, words when plain.
fn run_counts(run: &AnalysisRunInfo, style: &Style) -> Cell {
    let c = run.counts;
    let mut cell = Cell::default();
    for (n, icon, word, paint) in [
        (c.successful, icons::OK, "successful", Paint::Green),
        (c.failed, icons::BAD, "failed", Paint::Red),
        (c.inconclusive, icons::UNKNOWN, "inconclusive", Paint::Grey),
        (c.error, icons::WARNING, "error", Paint::Red),
    ] {
        if n == 0 {
            continue;
        }
        let sep = if cell.0.is_empty() { "" } else { "," };
        cell = if style.color {
            cell.push(sep, Paint::None)
                .push(format!("{icon} {n}"), paint)
        } else {
            cell.push(format!("{sep}{word}:{n}"), Paint::None)
        };
    }
    cell
}

/// An AnalysisRun's summary and a table of its metrics, as `get analysisrun` prints it.
pub fn render_analysis_run(run: &AnalysisRun, style: &Style, now: Timestamp) -> String {
    let info = run_info(run);
    let status = run.status.clone().unwrap_or_default();
    let mut out = String::new();
    field(&mut out, "Name:", &info.name, style);
    field(
        &mut out,
        "Namespace:",
        run.metadata.namespace.as_deref().unwrap_or_default(),
        style,
    );
    let (word, icon, paint) = run_look(info.phase);
    out.push_str(&format!(
        "{:<LABEL$}{}\n",
        "Status:",
        style.paint(paint, &format!("{}{word}", style.icon(icon)))
    ));
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        field(&mut out, "Message:", message, style);
    }
    field(&mut out, "Age:", &age(info.created, now), style);
    if run.spec.is_terminated() {
        field(&mut out, "Terminated:", "yes", style);
    }
    out.push('\n');
    let mut table = Table::new(&[
        ("METRIC", Fit::Cut(10)),
        ("STATUS", Fit::Keep),
        ("MEASUREMENTS", Fit::Drop),
        ("LAST VALUE", Fit::Cut(10)),
        ("MESSAGE", Fit::Cut(10)),
    ]);
    let metrics = run.spec.metrics.iter().map(|m| m.name.clone());
    let results = &status.metric_results;
    for metric in metrics {
        let result = results.iter().find(|r| r.name == metric);
        let (word, icon, paint) = run_look(result.map_or(AnalysisPhase::Pending, |r| r.phase));
        let counts = result.map(|r| AnalysisRunInfo {
            name: String::new(),
            created: None,
            phase: r.phase,
            counts: super::info::RunCounts {
                successful: r.successful.unwrap_or(0),
                failed: r.failed.unwrap_or(0),
                inconclusive: r.inconclusive.unwrap_or(0),
                error: r.error.unwrap_or(0),
            },
        });
        let last = result.and_then(|r| r.measurements.last());
        let message = result
            .and_then(|r| r.message.clone())
            .or_else(|| last.and_then(|m| m.message.clone()))
            .unwrap_or_default();
        table.row(vec![
            Cell::plain(metric),
            Cell::painted(format!("{}{word}", style.icon(icon)), paint),
            counts.map_or_else(Cell::default, |c| run_counts(&c, style)),
            Cell::plain(last.and_then(|m| m.value.clone()).unwrap_or_default()),
            Cell::plain(message),
        ]);
    }
    out.push_str(&table.render(style));
    out
}
