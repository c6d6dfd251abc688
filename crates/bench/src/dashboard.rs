//! `dashboard`: what the plugin's dashboard costs a person opening it on a cluster with N
//! Rollouts (1,000 by default): bytes on the wire with nothing cached and with the assets cached,
//! time to first contentful paint and until every row is shown, read from a headless Chromium's
//! Performance API (milliseconds from the start of the navigation).
//!
//! Sluice only: Argo Rollouts' dashboard is a React application built from its `ui/` folder with
//! Node and yarn; its Go module holds the sources, not the built page, so there is nothing to
//! serve side by side without that build.

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use sluice_testkit::{
    binaries,
    browser::{Browser, Dashboard},
};

use crate::{
    Figure, Run, contender,
    stage::{populate, sizes, stage},
};

/// The page's weight and timings from the Performance API.
const MEASURE: &str = "
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource');
    const paint = Object.fromEntries(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]));
    const mark = (name) => performance.getEntriesByName(name)[0]?.startTime;
    return {
      rows: document.querySelectorAll('#rollouts tbody tr').length,
      transferred: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
      firstContentfulPaint: paint['first-contentful-paint'],
      listRendered: mark('sluice-list-rendered'),
    };";

/// Runs the scenario: N Healthy Rollouts, then each trial opens the list in a fresh browser
/// profile (cold cache) and again (assets cached).
pub(crate) async fn run(run: &Run<'_>) -> Result<Vec<Figure>> {
    let n = sizes(run, &[1_000], &[10])[0];
    let (ns, rollouts, mut controller) = stage(run, "dashboard", "dashboard").await?;
    populate(&rollouts, n, json!([]), &mut controller).await?;
    // The page only reads: the controller's work is done.
    contender::stop(controller);
    let plugin = binaries::build("kubectl-sluice", "kubectl-sluice", !run.quick)?;
    let dashboard = Dashboard::start(&plugin, &["-n", &ns.name]).await?;
    let last_row = format!(r#"tr[data-name="r-{}"]"#, n.saturating_sub(1));
    let mut figures = [
        ("page weight, nothing cached", "KB"),
        ("page weight, assets cached", "KB"),
        ("first contentful paint, nothing cached", "ms"),
        ("every row shown, nothing cached", "ms"),
    ]
    .map(|(name, unit)| Figure {
        name: format!("{name}, {n} Rollouts"),
        unit,
        values: Vec::new(),
    });
    for _ in 0..run.trials {
        let browser = Browser::start().await?;
        // The browser's first navigation pays for starting its renderer: warm it on a page that
        // loads no asset (a 404), so the first load measures a cold cache, not a cold browser.
        browser.client.goto(&dashboard.at("warm-up")).await?;
        let mut loads = Vec::new();
        for _ in 0..2 {
            browser.client.goto(&dashboard.url).await?;
            browser.find(&last_row).await;
            // Paint entries and marks land after the row appears; give them a moment.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            loads.push(browser.script(MEASURE).await);
        }
        let [cold, cached] = [&loads[0], &loads[1]];
        for load in &loads {
            ensure!(
                load["rows"].as_u64() == u64::try_from(n).ok(),
                "the list shows {} rows, not {n}",
                load["rows"]
            );
        }
        let number =
            |v: &Value, key: &str| v[key].as_f64().with_context(|| format!("no {key} in {v}"));
        figures[0]
            .values
            .push(number(cold, "transferred")? / 1000.0);
        figures[1]
            .values
            .push(number(cached, "transferred")? / 1000.0);
        figures[2]
            .values
            .push(number(cold, "firstContentfulPaint")?);
        figures[3].values.push(number(cold, "listRendered")?);
    }
    drop(dashboard);
    ns.delete_and_wait().await?;
    Ok(figures.into())
}
