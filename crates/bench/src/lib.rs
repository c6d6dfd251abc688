//! The benchmark harness behind `cargo xtask bench <scenario>`: Sluice and Argo Rollouts side by
//! side on the local cluster, one contender at a time (each with its own CRDs and fresh
//! namespaces), figures printed as a table and written to `target/bench/<scenario>.json`.
//!
//! The cluster, the Go builds, the processes, namespaces and manifests come from
//! `sluice-testkit`, shared with the integration tests; xtask only parses the command line.

mod analysis;
mod audit;
mod contender;
mod dashboard;
mod picture;
mod reaction;
mod scenarios;
mod soak;
mod stage;
mod traffic;

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;
use sluice_testkit::{cluster, paths};

pub use self::contender::Contender;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The scenario: idle, cold-start, reaction, canary-steps, storm, analysis, soak, traffic,
    /// dashboard, several of them comma-separated, or `all`; `report` only redraws the pictures
    /// from the figures there.
    pub scenario: String,
    /// Run the scenario at this Rollout count only.
    #[arg(long)]
    pub size: Option<usize>,
    /// The contenders, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [Contender::Sluice, Contender::Argo])]
    pub contenders: Vec<Contender>,
    /// Repetitions of each measurement (median and spread are reported).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Tiny sizes and one trial: checks that the harness works, not how fast anything is.
    #[arg(long)]
    pub quick: bool,
    /// How long `soak` keeps rolling (e.g. `30m`, `2h`, `45s`); 30 minutes by default.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// The client rate limit (requests a second) both contenders get; figures measured at
    /// another limit than the default are named with it, beside the default's.
    #[arg(long, default_value_t = contender::QPS)]
    pub qps: u32,
    /// The burst above `--qps` both contenders get.
    #[arg(long, default_value_t = contender::BURST)]
    pub burst: u32,
}

/// `45s`, `30m`, `2h`, or plain seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3_600,
        _ => return Err(format!("not a duration: {text:?} (use s, m or h)")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

/// One figure of one contender: every trial's value.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What was measured, e.g. `image change to Healthy`.
    pub name: String,
    /// Its unit, e.g. `s`.
    pub unit: &'static str,
    /// One value per trial.
    pub values: Vec<f64>,
}

impl Figure {
    /// A figure measured once.
    pub fn one(name: String, unit: &'static str, value: f64) -> Self {
        Self {
            name,
            unit,
            values: vec![value],
        }
    }

    fn median(&self) -> f64 {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    fn spread(&self) -> (f64, f64) {
        let min = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
}

/// What one scenario needs to run one contender.
pub struct Run<'a> {
    /// The contender.
    pub contender: Contender,
    /// Its binary.
    pub binary: &'a PathBuf,
    /// Trials per measurement.
    pub trials: usize,
    /// Tiny sizes (`--quick`).
    pub quick: bool,
    /// One Rollout count instead of the scenario's (`--size`).
    pub size: Option<usize>,
    /// How long `soak` runs (`--duration`).
    pub duration: Option<std::time::Duration>,
    /// The client rate limit the contender gets (`--qps`, `--burst`).
    pub qps: u32,
    /// The burst above it.
    pub burst: u32,
    /// A client for the cluster.
    pub client: kube::Client,
    /// Where this run's logs go.
    pub log_dir: PathBuf,
}

/// Runs `cargo xtask bench` with these arguments.
pub async fn run(args: &BenchArgs) -> Result<()> {
    if args.scenario == "report" {
        // The pictures again from the figures already in `target/bench`, without running anything.
        println!("pictures: {}", picture::write()?.display());
        return Ok(());
    }
    let scenarios: Vec<&str> = match args.scenario.as_str() {
        "all" => scenarios::NAMES.to_vec(),
        list => list
            .split(',')
            .map(|name| {
                scenarios::NAMES
                    .iter()
                    .copied()
                    .find(|known| *known == name.trim())
                    .with_context(|| {
                        format!(
                            "unknown scenario {name:?}; one of: {}, all (or several, comma-separated)",
                            scenarios::NAMES.join(", ")
                        )
                    })
            })
            .collect::<Result<_>>()?,
    };
    // Room for the largest scenario's pods (one per Rollout, and a surge pod each in a storm);
    // the idle point of 100,000 Rollouts runs without pods.
    let largest = args
        .size
        .unwrap_or(if args.quick { 10 } else { 10_000 })
        .min(10_000);
    let pods_per_node = 500;
    let nodes = u32::try_from((2 * largest + 200).div_ceil(pods_per_node)).unwrap_or(u32::MAX);
    cluster::up(&cluster::UpOptions {
        audit: true,
        nodes: nodes.max(2),
        pods_per_node: u32::try_from(pods_per_node).unwrap_or(500),
    })
    .await?;
    let client = cluster::ready(&paths::kubeconfig()).await?;
    let mut binaries = BTreeMap::new();
    for contender in &args.contenders {
        eprintln!("==> building {contender}");
        binaries.insert(contender.to_string(), contender.build(!args.quick)?);
    }
    let trials = args.trials.unwrap_or(if args.quick { 1 } else { 5 });
    // A failed scenario does not end a long run: the others still run, and the run fails at the
    // end, naming every scenario that failed.
    let mut failed = Vec::new();
    for scenario in scenarios {
        let mut results: Vec<(Contender, Vec<Figure>)> = Vec::new();
        let contenders = scenarios::contenders(scenario, &args.contenders);
        for &contender in &contenders {
            eprintln!("==> {scenario}: {contender}");
            contender.install_crds(&client).await?;
            let log_dir = paths::repo_root()
                .join("target/bench/logs")
                .join(scenario)
                .join(contender.to_string());
            std::fs::create_dir_all(&log_dir)?;
            let run = Run {
                contender,
                binary: &binaries[&contender.to_string()],
                trials,
                quick: args.quick,
                size: args.size,
                duration: args.duration,
                qps: args.qps,
                burst: args.burst,
                client: client.clone(),
                log_dir,
            };
            let figures = scenarios::run(scenario, &run)
                .await
                .with_context(|| format!("{scenario} with {contender}"))
                .and_then(|mut figures| {
                    check_sane(scenario, contender, &figures)?;
                    if args.qps != contender::QPS {
                        for figure in &mut figures {
                            figure.name = format!("{}, at {} QPS", figure.name, args.qps);
                        }
                    }
                    Ok(figures)
                });
            match figures {
                Ok(figures) => results.push((contender, figures)),
                Err(e) => {
                    eprintln!("==> {scenario} with {contender} failed: {e:#}");
                    failed.push(format!("{scenario} with {contender}: {e:#}"));
                }
            }
        }
        // The figures of the contenders that finished are kept even when another failed.
        if !results.is_empty() {
            report(
                scenario,
                &results,
                args.size.is_some() || args.qps != contender::QPS,
            )?;
        }
    }
    let picture = picture::write()?;
    println!("\npictures: {}", picture.display());
    // Leave the cluster with Sluice's CRDs, as the tests and the demo expect.
    Contender::Sluice.install_crds(&client).await?;
    if !failed.is_empty() {
        bail!(
            "{} scenario run(s) failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
    Ok(())
}

/// Every figure was produced, and none is zero or NaN where a run happened.
fn check_sane(scenario: &str, contender: Contender, figures: &[Figure]) -> Result<()> {
    if figures.is_empty() {
        bail!("{scenario} produced no figures for {contender}");
    }
    for figure in figures {
        if figure.values.is_empty() || figure.values.iter().any(|v| !v.is_finite()) {
            bail!(
                "{scenario}/{contender}: {} has no sane values: {:?}",
                figure.name,
                figure.values
            );
        }
        // The peer's stuck updates are a finding; Sluice's are a bug.
        if contender == Contender::Sluice
            && figure.name.contains("stuck")
            && figure.values.iter().any(|v| *v != 0.0)
        {
            bail!("{scenario}/sluice: {} = {:?}", figure.name, figure.values);
        }
    }
    Ok(())
}

/// Prints the table and writes `target/bench/<scenario>.json`; a run at one size (`--size`) or
/// at another client limit (`--qps`) keeps the figures already there, so that a scenario too long for one
/// sitting (`idle` at full size) is measured a size at a time into one file.
fn report(scenario: &str, results: &[(Contender, Vec<Figure>)], keep_others: bool) -> Result<()> {
    let median_of = |who: Contender, name: &str| {
        results
            .iter()
            .find(|(c, _)| *c == who)
            .and_then(|(_, figures)| figures.iter().find(|f| f.name == name))
            .map(Figure::median)
    };
    let mut names: Vec<&str> = Vec::new();
    for (_, figures) in results {
        for f in figures {
            if !names.contains(&f.name.as_str()) {
                names.push(&f.name);
            }
        }
    }
    // Columns as wide as the longest figure name and unit, so that every row lines up.
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let unit = results
        .iter()
        .flat_map(|(_, figures)| figures.iter().map(|f| f.unit.chars().count()))
        .max()
        .unwrap_or(0);
    println!("\n{scenario}");
    println!(
        "{:<width$} {:<8} {:>w_median$} {:>w_spread$} {:>11}",
        "figure",
        "who",
        "median",
        "min – max",
        "sluice/argo",
        w_median = 11 + unit,
        w_spread = 22 + unit,
    );
    let mut json_figures = Vec::new();
    for name in names {
        for (who, figures) in results {
            let Some(figure) = figures.iter().find(|f| f.name == name) else {
                continue;
            };
            let (min, max) = figure.spread();
            let ratio = match (
                median_of(Contender::Sluice, name),
                median_of(Contender::Argo, name),
            ) {
                (Some(s), Some(a)) if *who == Contender::Sluice && a != 0.0 => {
                    format!("{:.2}", s / a)
                }
                _ => String::new(),
            };
            println!(
                "{:<width$} {:<8} {:>10.3} {:<unit$} {:>9.3} – {:<9.3} {:<unit$} {:>11}",
                name,
                who.to_string(),
                figure.median(),
                figure.unit,
                min,
                max,
                figure.unit,
                ratio
            );
            json_figures.push(json!({
                "figure": name,
                "contender": who.to_string(),
                "unit": figure.unit,
                "median": figure.median(),
                "min": min,
                "max": max,
                "values": figure.values,
            }));
        }
    }
    let dir = paths::repo_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{scenario}.json"));
    if keep_others && let Ok(text) = std::fs::read_to_string(&path) {
        let before: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("reading the figures in {}", path.display()))?;
        json_figures = merged(&before["figures"], json_figures);
    }
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json!({ "scenario": scenario, "figures": json_figures }))?,
    )?;
    println!("written to {}", path.display());
    Ok(())
}

/// The figures of `before` that `now` does not measure again (same figure, same contender),
/// then `now`'s.
fn merged(before: &serde_json::Value, now: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let key = |f: &serde_json::Value| (f["figure"].clone(), f["contender"].clone());
    let mut figures: Vec<serde_json::Value> = before
        .as_array()
        .into_iter()
        .flatten()
        .filter(|old| !now.iter().any(|new| key(new) == key(old)))
        .cloned()
        .collect();
    figures.extend(now);
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_at_one_size_replaces_its_own_figures_and_keeps_the_others() {
        let figure = |name: &str, who: &str, median: f64| json!({ "figure": name, "contender": who, "median": median });
        let before = json!([
            figure("RSS with 1000 Rollouts", "sluice", 37.0),
            figure("RSS with 10000 Rollouts", "sluice", 205.0),
            figure("RSS with 10000 Rollouts", "argo", 1142.0),
        ]);
        let now = vec![figure("RSS with 10000 Rollouts", "sluice", 190.0)];
        assert_eq!(
            merged(&before, now),
            [
                figure("RSS with 1000 Rollouts", "sluice", 37.0),
                figure("RSS with 10000 Rollouts", "argo", 1142.0),
                figure("RSS with 10000 Rollouts", "sluice", 190.0),
            ]
        );
    }

    fn figures(stuck: f64) -> Vec<Figure> {
        vec![
            Figure::one("rollouts done in 20s".into(), "", 10.0),
            Figure::one("  rollouts stuck until nudged".into(), "", stuck),
        ]
    }

    #[test]
    fn a_stuck_update_fails_sluice_and_is_a_figure_for_the_peer() {
        assert!(check_sane("soak", Contender::Sluice, &figures(0.0)).is_ok());
        let err = check_sane("soak", Contender::Sluice, &figures(1.0)).unwrap_err();
        assert!(err.to_string().contains("stuck until nudged"), "{err}");
        assert!(check_sane("soak", Contender::Argo, &figures(1.0)).is_ok());
    }

    #[test]
    fn a_figure_without_a_finite_value_fails_either_contender() {
        let nan = vec![Figure::one("RSS".into(), "MiB", f64::NAN)];
        assert!(check_sane("idle", Contender::Argo, &nan).is_err());
        assert!(check_sane("idle", Contender::Sluice, &[]).is_err());
    }
}
