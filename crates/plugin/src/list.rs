//! `list rollouts [-A] [--name NAME] [-w [--timestamps]]`: one line per rollout with its
//! strategy, status, step and weights; with `--watch`, then one more line each time a rollout's
//! line changes (until Ctrl-C), as Argo's plugin prints them.

use std::{collections::BTreeMap, pin::pin, process::ExitCode};

use clap::{Args, Subcommand};
use futures::StreamExt as _;
use jiff::Timestamp;
use kube::{
    Api,
    api::ListParams,
    runtime::{WatchStreamExt as _, watcher},
};
use serde::Serialize;
use sluice_api::Rollout;

use super::{
    Context, Error, Output, encode,
    info::{Health, Objects, RolloutInfo},
    print,
    style::{Style, look},
    table::{Cell, Fit, Table},
};

/// What to list.
#[derive(Debug, Subcommand)]
pub enum List {
    /// Rollouts of the namespace (or of all namespaces).
    #[command(
        visible_aliases = ["rollout", "ro"],
        after_help = "Examples:\n  # Rollouts of the current namespace\n  kubectl sluice list rollouts\n\n  \
                      # Of every namespace, as JSON\n  kubectl sluice list rollouts -A -o json\n\n  \
                      # One rollout, a line each time it changes, with the time\n  \
                      kubectl sluice list rollouts --name shop --watch --timestamps"
    )]
    Rollouts(ListRollouts),
    /// Experiments of the namespace (or of all namespaces).
    #[command(
        visible_aliases = ["experiment", "exp"],
        after_help = "Examples:\n  # Experiments of the current namespace\n  kubectl sluice list experiments\n\n  \
                      # Of every namespace, a line each time one changes\n  kubectl sluice list experiments -A --watch"
    )]
    Experiments(super::experiment::ListExperiments),
}

/// `list rollouts`.
#[derive(Debug, Args)]
pub struct ListRollouts {
    /// List the rollouts of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print the list as data instead of a table.
    #[arg(short, long, value_enum, conflicts_with = "watch")]
    pub output: Option<Output>,
    /// Only the rollout of this name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Then print a line each time a rollout's line changes (Ctrl-C ends).
    #[arg(short, long)]
    pub watch: bool,
    /// Start each line with the time it was printed (UTC, RFC 3339).
    #[arg(long)]
    pub timestamps: bool,
}

/// One rollout of the list, as data.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Canary` or `BlueGreen`.
    pub strategy: String,
    /// Health.
    pub status: Health,
    /// Why.
    pub message: String,
    /// Canary step, `index/count`.
    pub step: Option<String>,
    /// Canary weight asked for.
    pub set_weight: Option<i32>,
    /// Canary weight in effect.
    pub actual_weight: Option<i32>,
}

impl Row {
    /// The row of one rollout (its ReplicaSets are not read for a list).
    pub fn new(rollout: &Rollout) -> Self {
        let info = RolloutInfo::new(&Objects {
            rollout: rollout.clone(),
            ..Objects::default()
        });
        Self {
            namespace: info.namespace,
            name: info.name,
            strategy: info.strategy,
            status: info.status,
            message: info.message,
            step: info.step,
            set_weight: info.set_weight,
            actual_weight: info.actual_weight,
        }
    }
}

/// Runs `list rollouts` (and `list experiments`, in `experiment.rs`).
pub async fn run(ctx: &Context, list: List) -> Result<ExitCode, Error> {
    let args = match list {
        List::Rollouts(args) => args,
        List::Experiments(args) => return super::experiment::list(ctx, args).await,
    };
    let api: Api<Rollout> = if args.all_namespaces {
        Api::all(ctx.client.clone())
    } else {
        ctx.api()
    };
    let describe = |verb| {
        let mut request = ctx.request(verb, "rollouts", "Rollout", None);
        if args.all_namespaces {
            request.namespace = "";
        }
        request
    };
    let fields = args.name.as_ref().map(|n| format!("metadata.name={n}"));
    let params = match &fields {
        Some(f) => ListParams::default().fields(f),
        None => ListParams::default(),
    };
    let mut rollouts = api
        .list(&params)
        .await
        .map_err(|e| describe("list").error(e))?;
    rollouts.items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let rows: Vec<Row> = rollouts.items.iter().map(Row::new).collect();
    let stamp = || args.timestamps.then(|| timestamp(Timestamp::now()));
    match args.output {
        Some(format) => print(&encode(&rows, format)?),
        // Watching: the header first, even with no rollout yet, as the lines follow.
        None if rows.is_empty() && !args.watch && !args.all_namespaces => print(&format!(
            "No rollouts found in namespace \"{}\".\n",
            ctx.namespace
        )),
        None if rows.is_empty() && !args.watch => print("No rollouts found.\n"),
        None => print(&render_list_at(
            &rows,
            args.all_namespaces,
            stamp().as_deref(),
            &ctx.style,
        )),
    }
    if !args.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let mut last: BTreeMap<(String, String), Row> = rows
        .into_iter()
        .map(|r| ((r.namespace.clone(), r.name.clone()), r))
        .collect();
    let mut config = watcher::Config::default();
    if let Some(f) = &fields {
        config = config.fields(f);
    }
    let mut changes = pin!(watcher(api, config).default_backoff().applied_objects());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            next = changes.next() => match next {
                Some(Ok(rollout)) => {
                    let row = Row::new(&rollout);
                    let key = (row.namespace.clone(), row.name.clone());
                    if last.get(&key) != Some(&row) {
                        let table =
                            render_list_at(std::slice::from_ref(&row), args.all_namespaces, stamp().as_deref(), &ctx.style);
                        // The header was printed once, above.
                        print(&table.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>());
                        last.insert(key, row);
                    }
                }
                // RBAC refused the watch: retrying cannot help, and waiting would hang.
                Some(Err(e)) => {
                    if let Some(refused) = super::fetch::refused(ctx, "rollouts", "Rollout", &e) {
                        return Err(refused);
                    }
                }
                None => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// A time as `--timestamps` prints it: UTC, to the second, RFC 3339.
pub fn timestamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The table of `list rollouts`; with `namespaces`, a NAMESPACE column first.
pub fn render_list(rows: &[Row], namespaces: bool, style: &Style) -> String {
    render_list_at(rows, namespaces, None, style)
}

/// The table of `list rollouts`, each line starting with `timestamp` when there is one.
pub fn render_list_at(
    rows: &[Row],
    namespaces: bool,
    timestamp: Option<&str>,
    style: &Style,
) -> String {
    let mut headers = vec![
        ("NAME", Fit::Cut(8)),
        ("STRATEGY", Fit::Keep),
        ("STATUS", Fit::Keep),
        ("STEP", Fit::Keep),
        ("SET-WEIGHT", Fit::Keep),
        ("ACTUAL-WEIGHT", Fit::Keep),
    ];
    if namespaces {
        headers.insert(0, ("NAMESPACE", Fit::Cut(6)));
    }
    if timestamp.is_some() {
        headers.insert(0, ("TIMESTAMP", Fit::Keep));
    }
    let mut table = Table::new(&headers);
    let or_dash = |v: Option<String>| Cell::plain(v.unwrap_or_else(|| "-".into()));
    for row in rows {
        let (icon, paint) = look(row.status.as_str());
        let mut cells = vec![
            Cell::plain(&row.name),
            Cell::plain(if row.strategy.is_empty() {
                "-"
            } else {
                &row.strategy
            }),
            Cell::painted(
                format!("{}{}", style.icon(icon), row.status.as_str()),
                paint,
            ),
            or_dash(row.step.clone()),
            or_dash(row.set_weight.map(|w| w.to_string())),
            or_dash(row.actual_weight.map(|w| w.to_string())),
        ];
        if namespaces {
            cells.insert(0, Cell::plain(&row.namespace));
        }
        if let Some(at) = timestamp {
            cells.insert(0, Cell::plain(at));
        }
        table.row(cells);
    }
    table.render(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_lead_each_line_when_asked() {
        let row = Row {
            namespace: "shop".into(),
            name: "app".into(),
            strategy: "Canary".into(),
            status: Health::Paused,
            message: String::new(),
            step: Some("1/2".into()),
            set_weight: Some(50),
            actual_weight: Some(50),
        };
        let at = timestamp("2026-12-03T10:04:05.789Z".parse().expect("a time"));
        assert_eq!(at, "2026-12-03T10:04:05Z");
        let table = render_list_at(&[row], false, Some(&at), &Style::plain());
        let lines: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec![
                    "TIMESTAMP",
                    "NAME",
                    "STRATEGY",
                    "STATUS",
                    "STEP",
                    "SET-WEIGHT",
                    "ACTUAL-WEIGHT"
                ],
                vec![
                    "2026-12-03T10:04:05Z",
                    "app",
                    "Canary",
                    "Paused",
                    "1/2",
                    "50",
                    "50"
                ],
            ]
        );
    }
}
