//! `target/bench/report.html`: the figures of every scenario run so far as pictures, for people
//! who would rather look than read: RSS against Rollout count (the `idle` scenario), each latency
//! distribution as dots per contender, and every median in a table. Plain SVG, no scripts; each
//! chart is also written alone as `target/bench/<name>.svg`, so a document can show it.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use anyhow::Result;
use serde_json::Value;

use sluice_testkit::paths;

const WIDTH: f64 = 640.0;
const COLOURS: [(&str, &str); 2] = [("sluice", "#1f77b4"), ("argo", "#ff7f0e")];

/// One figure of one contender, as the JSON files hold it.
struct Row {
    scenario: String,
    figure: String,
    contender: String,
    unit: String,
    median: f64,
    values: Vec<f64>,
}

/// Writes the report from `target/bench/*.json`; returns its path.
pub fn write() -> Result<PathBuf> {
    let dir = paths::repo_root().join("target/bench");
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let scenario = json["scenario"].as_str().unwrap_or_default().to_string();
        for f in json["figures"].as_array().into_iter().flatten() {
            rows.push(Row {
                scenario: scenario.clone(),
                figure: f["figure"].as_str().unwrap_or_default().to_string(),
                contender: f["contender"].as_str().unwrap_or_default().to_string(),
                unit: f["unit"].as_str().unwrap_or_default().to_string(),
                median: f["median"].as_f64().unwrap_or(f64::NAN),
                values: f["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_f64)
                    .collect(),
            });
        }
    }
    rows.sort_by(|a, b| (&a.scenario, &a.figure).cmp(&(&b.scenario, &b.figure)));

    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>Sluice vs Argo Rollouts</title>\
         <style>body{font:14px sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}\
         td:first-child,th:first-child{text-align:left}</style>\
         <h1>Sluice and Argo Rollouts v1.9.1 on the local cluster</h1>\
         <p><span style=color:#1f77b4>&#9679; Sluice</span> &nbsp; \
         <span style=color:#ff7f0e>&#9679; Argo Rollouts</span></p>",
    );
    let mut charts: Vec<(String, String, String)> = Vec::new();
    charts.extend(against_rollouts(&rows, &RSS));
    charts.extend(against_rollouts(&rows, &CPU));
    for row in rows
        .iter()
        .filter(|r| r.values.len() > 1 && r.contender == "sluice")
    {
        let others: Vec<&Row> = rows
            .iter()
            .filter(|o| o.scenario == row.scenario && o.figure == row.figure)
            .collect();
        charts.push(
            if row.scenario == "soak" && row.figure.starts_with("RSS every") {
                time_chart(&others)
            } else {
                strip_chart(&others)
            },
        );
    }
    for (file, title, svg) in &charts {
        let _ = write!(html, "<h3>{}</h3>{svg}", escape(title));
        std::fs::write(dir.join(format!("{file}.svg")), svg)?;
    }
    table(&rows, &mut html);
    let path = dir.join("report.html");
    std::fs::write(&path, html)?;
    Ok(path)
}

fn colour(contender: &str) -> &'static str {
    COLOURS
        .iter()
        .find(|(c, _)| *c == contender)
        .map_or("#777", |(_, colour)| colour)
}

/// Makes `text` safe inside SVG and HTML text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A file name for a figure: its scenario and words, lower case, joined by dashes.
fn slug(scenario: &str, figure: &str) -> String {
    let words: Vec<String> = format!("{scenario} {figure}")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words.join("-")
}

/// The opening of a standalone SVG (valid inside HTML too), with a white background and the
/// legend of the two contenders.
fn svg_open(width: f64, height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\"><title>{}</title>\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
         <text x=\"{}\" y=\"14\" fill=\"{}\">&#9679; Sluice</text>\
         <text x=\"{}\" y=\"14\" fill=\"{}\">&#9679; Argo Rollouts v1.9.1</text>",
        escape(title),
        width - 250.0,
        colour("sluice"),
        width - 180.0,
        colour("argo"),
    )
}

/// One idle figure drawn against the number of Rollouts.
struct Against {
    /// The figure's name before the count (`RSS with `, `CPU over 300s idle, `).
    before: &'static str,
    unit: &'static str,
    title: &'static str,
    file: &'static str,
}

/// The idle RSS against the Rollouts.
const RSS: Against = Against {
    before: "RSS with ",
    unit: "MiB",
    title: "Resident memory against Rollouts (idle)",
    file: "rss-against-rollouts",
};

/// The CPU of the idle window against the Rollouts.
const CPU: Against = Against {
    before: "CPU over ",
    unit: "s",
    title: "CPU seconds over the idle window against Rollouts",
    file: "cpu-against-rollouts",
};

/// The count `N` in a figure named `<before>… N Rollouts` (the window of a CPU figure, `300s
/// idle, `, sits between the two).
fn rollouts_in(figure: &str, before: &str) -> Option<f64> {
    let rest = figure.strip_prefix(before)?.strip_suffix(" Rollouts")?;
    rest.rsplit([' ', ',']).next()?.parse().ok()
}

/// One of the idle figures against the number of Rollouts, a line per contender: (file name,
/// title, SVG), or nothing without `idle` figures.
fn against_rollouts(rows: &[Row], what: &Against) -> Option<(String, String, String)> {
    let mut points: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.scenario == "idle") {
        let Some(n) = rollouts_in(&row.figure, what.before) else {
            continue;
        };
        points
            .entry(&row.contender)
            .or_default()
            .push((n, row.median));
    }
    if points.is_empty() {
        return None;
    }
    let max_n = points.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.values().flatten().map(|p| p.1).fold(0.1, f64::max);
    let (h, left, bottom) = (300.0, 60.0, 30.0);
    let x = |n: f64| left + (n / max_n) * (WIDTH - left - 20.0);
    let y = |v: f64| h - bottom - (v / max_y) * (h - bottom - 30.0);
    let (unit, title) = (what.unit, what.title);
    let mut svg = svg_open(WIDTH, h, title);
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\"/>\
         <line x1=\"{left}\" y1=\"30\" x2=\"{left}\" y2=\"{}\" stroke=\"#000\"/>\
         <text x=\"5\" y=\"34\">{max_y:.1} {unit}</text><text x=\"{left}\" y=\"{}\">0</text>\
         <text x=\"{}\" y=\"{}\">{max_n:.0} Rollouts</text>",
        h - bottom,
        WIDTH - 20.0,
        h - bottom,
        h - bottom,
        h - 10.0,
        WIDTH - 120.0,
        h - 10.0,
    );
    for (contender, mut pts) in points {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .map(|(n, v)| format!("{:.1},{:.1}", x(*n), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            colour(contender),
            path.join(" ")
        );
        for (n, v) in &pts {
            // Hundredths for what is under one (the CPU of an idle Sluice), tenths above.
            let digits = if *v < 1.0 { 2 } else { 1 };
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>{contender}: {v:.2} {unit} at {n}</title></circle>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{}\">{v:.digits$}</text>",
                x(*n),
                y(*v),
                colour(contender),
                x(*n) - 30.0,
                y(*v) - 8.0,
                colour(contender),
            );
        }
    }
    svg.push_str("</svg>");
    Some((what.file.into(), title.into(), svg))
}

/// Every trial of one figure as a dot, one row per contender, the median as a bar: (file name,
/// title, SVG).
fn strip_chart(rows: &[&Row]) -> (String, String, String) {
    let max = rows
        .iter()
        .flat_map(|r| r.values.iter().copied())
        .fold(f64::MIN_POSITIVE, f64::max);
    let (left, row_h) = (80.0, 30.0);
    let h = row_h * rows.len() as f64 + 50.0;
    let x = |v: f64| left + (v / max) * (WIDTH - left - 20.0);
    let first = rows[0];
    let title = format!("{}: {}", first.scenario, first.figure);
    let mut svg = svg_open(WIDTH, h, &title);
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\">{max:.1} {}</text>",
        h - 5.0,
        WIDTH - 120.0,
        h - 5.0,
        escape(&first.unit)
    );
    for (i, row) in rows.iter().enumerate() {
        let cy = row_h * i as f64 + 40.0;
        let c = colour(&row.contender);
        let _ = write!(
            svg,
            "<text x=\"5\" y=\"{:.0}\">{}</text>",
            cy + 4.0,
            escape(&row.contender)
        );
        for v in &row.values {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{cy:.0}\" r=\"3\" fill=\"{c}\" fill-opacity=\"0.5\"/>",
                x(*v)
            );
        }
        let _ = write!(
            svg,
            "<line x1=\"{m:.1}\" x2=\"{m:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"#000\" stroke-width=\"2\"><title>median {:.2} {}</title></line>",
            cy - 10.0,
            cy + 10.0,
            row.median,
            escape(&row.unit),
            m = x(row.median)
        );
    }
    svg.push_str("</svg>");
    (slug(&first.scenario, &first.figure), title, svg)
}

/// RSS over a soak, one line per contender: its samples (taken between rounds, at most every
/// 10 s) spread evenly over the run, whose length the figure's name ends with (`… for 1800s`):
/// (file name, title, SVG).
fn time_chart(rows: &[&Row]) -> (String, String, String) {
    let first = rows[0];
    let seconds = first
        .figure
        .rsplit(' ')
        .next()
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse::<f64>().ok())
        .unwrap_or(1.0);
    let max_y = rows
        .iter()
        .flat_map(|r| r.values.iter().copied())
        .fold(f64::MIN_POSITIVE, f64::max);
    let (h, left, bottom) = (260.0, 60.0, 30.0);
    let x = |t: f64| left + (t / seconds) * (WIDTH - left - 20.0);
    let y = |v: f64| h - bottom - (v / max_y) * (h - bottom - 30.0);
    let title = format!("{}: {}", first.scenario, first.figure);
    let mut svg = svg_open(WIDTH, h, &title);
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#000\"/>\
         <line x1=\"{left}\" y1=\"30\" x2=\"{left}\" y2=\"{b}\" stroke=\"#000\"/>\
         <text x=\"5\" y=\"34\">{max_y:.0} {unit}</text><text x=\"{left}\" y=\"{t}\">0</text>\
         <text x=\"{end}\" y=\"{t}\">{minutes:.0} min</text>",
        b = h - bottom,
        r = WIDTH - 20.0,
        t = h - 10.0,
        end = WIDTH - 70.0,
        unit = escape(&first.unit),
        minutes = seconds / 60.0,
    );
    for row in rows {
        #[allow(clippy::cast_precision_loss)]
        let step = seconds / (row.values.len().max(2) - 1) as f64;
        let points: Vec<String> = row
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                #[allow(clippy::cast_precision_loss)]
                let t = i as f64 * step;
                format!("{:.1},{:.1}", x(t), y(*v))
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            colour(&row.contender),
            points.join(" ")
        );
    }
    svg.push_str("</svg>");
    (slug(&first.scenario, &first.figure), title, svg)
}

/// Every figure's median per contender and the ratio Sluice/Argo.
fn table(rows: &[Row], html: &mut String) {
    html.push_str(
        "<h2>All figures (medians)</h2><table><tr><th>scenario</th><th>figure</th>\
         <th>Sluice</th><th>Argo Rollouts</th><th>Sluice/Argo</th></tr>",
    );
    let mut seen = Vec::new();
    for row in rows {
        let key = (&row.scenario, &row.figure);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let of = |who: &str| {
            rows.iter()
                .find(|r| {
                    r.scenario == row.scenario && r.figure == row.figure && r.contender == who
                })
                .map(|r| r.median)
        };
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3} {}", row.unit));
        let ratio = match (of("sluice"), of("argo")) {
            (Some(s), Some(a)) if a != 0.0 => format!("{:.2}", s / a),
            _ => String::new(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td style=text-align:left>{}</td><td>{}</td><td>{}</td><td>{ratio}</td></tr>",
            row.scenario,
            row.figure,
            cell(of("sluice")),
            cell(of("argo")),
        );
    }
    html.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollout_count_is_read_from_the_rss_and_the_cpu_figures_alone() {
        assert_eq!(
            rollouts_in("RSS with 100000 Rollouts", RSS.before),
            Some(100_000.0)
        );
        assert_eq!(
            rollouts_in("CPU over 300s idle, 1000 Rollouts", CPU.before),
            Some(1_000.0)
        );
        assert_eq!(
            rollouts_in("API requests/min idle, 1000 Rollouts", CPU.before),
            None
        );
        assert_eq!(rollouts_in("RSS with 1000 Rollouts", CPU.before), None);
    }
}
