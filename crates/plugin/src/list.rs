//! `list rollouts [-A]`: one line per rollout with its strategy, status, step and weights.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kube::{Api, api::ListParams};
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
                      # Of every namespace, as JSON\n  kubectl sluice list rollouts -A -o json"
    )]
    Rollouts(ListRollouts),
}

/// `list rollouts`.
#[derive(Debug, Args)]
pub struct ListRollouts {
    /// List the rollouts of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print the list as data instead of a table.
    #[arg(short, long, value_enum)]
    pub output: Option<Output>,
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

/// Runs `list rollouts`.
pub async fn run(ctx: &Context, list: List) -> Result<ExitCode, Error> {
    let List::Rollouts(args) = list;
    let api: Api<Rollout> = if args.all_namespaces {
        Api::all(ctx.client.clone())
    } else {
        ctx.api()
    };
    let mut rollouts = api.list(&ListParams::default()).await.map_err(|e| {
        let mut request = ctx.request("list", "rollouts", "Rollout", None);
        if args.all_namespaces {
            request.namespace = "";
        }
        request.error(e)
    })?;
    rollouts.items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let rows: Vec<Row> = rollouts.items.iter().map(Row::new).collect();
    match args.output {
        Some(format) => print(&encode(&rows, format)?),
        None if rows.is_empty() && !args.all_namespaces => print(&format!(
            "No rollouts found in namespace \"{}\".\n",
            ctx.namespace
        )),
        None if rows.is_empty() => print("No rollouts found.\n"),
        None => print(&render_list(&rows, args.all_namespaces, &ctx.style)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The table of `list rollouts`; with `namespaces`, a NAMESPACE column first.
pub fn render_list(rows: &[Row], namespaces: bool, style: &Style) -> String {
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
        table.row(cells);
    }
    table.render(style)
}
