//! The `soak` scenario: Rollouts rolling one round after another for a long while, watching the
//! controller's memory for a leak and its Rollouts for lost updates.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use sluice_api::RolloutPhase;
use sluice_testkit::manifests::observed as status_current;

use crate::{
    Figure, Run, contender,
    stage::{for_each, mib, populate, set_image, sizes, stage, wait_nudging},
};

/// Rollouts of 100 Rollouts, one after the other, for `--duration` (30 minutes by default, 20 s
/// with `--quick`): RSS sampled every 10 s, its first and last value and the slope of a least-
/// squares line through the samples (MiB per hour), how many rollouts were done, and how many
/// times a Rollout whose spec change went unobserved for a minute had to be nudged.
pub(crate) async fn run(run: &Run<'_>) -> Result<Vec<Figure>> {
    let n = sizes(run, &[100], &[5])[0];
    let duration = run.duration.unwrap_or(if run.quick {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(1_800)
    });
    let (ns, rollouts, mut controller) = stage(run, "soak", "soak").await?;
    let steps = json!([{ "setWeight": 50 }, { "pause": { "duration": "0s" } }]);
    populate(&rollouts, n, steps, &mut controller).await?;
    let started = Instant::now();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut next_sample = Instant::now();
    let mut round = 0usize;
    let mut nudges = 0;
    while started.elapsed() < duration {
        round += 1;
        let version = format!("v{round}");
        for_each(n, |i| {
            let (rollouts, version) = (rollouts.clone(), version.clone());
            async move { set_image(&rollouts, &format!("r-{i}"), &version).await }
        })
        .await?;
        let image = format!("example/app:{version}");
        let (_, nudged) = wait_nudging(
            &rollouts,
            n,
            |r| {
                status_current(r)
                    && r.spec
                        .template
                        .as_ref()
                        .and_then(|t| t.spec.as_ref())
                        .and_then(|s| s.containers[0].image.as_deref())
                        == Some(image.as_str())
                    && r.status.as_ref().is_some_and(|s| {
                        s.phase == Some(RolloutPhase::Healthy) && s.stable_rs == s.current_pod_hash
                    })
            },
            Duration::from_secs(600),
            &mut controller,
            Some(Duration::from_secs(60)),
        )
        .await?;
        nudges += nudged;
        if Instant::now() >= next_sample {
            samples.push((
                started.elapsed().as_secs_f64(),
                mib(controller.sample()?.rss),
            ));
            next_sample += Duration::from_secs(10);
        }
    }
    samples.push((
        started.elapsed().as_secs_f64(),
        mib(controller.sample()?.rss),
    ));
    contender::stop(controller);
    ns.delete_and_wait().await?;
    let first = samples.first().map_or(0.0, |s| s.1);
    let last = samples.last().map_or(0.0, |s| s.1);
    #[allow(clippy::cast_precision_loss)]
    Ok(vec![
        Figure {
            name: format!("RSS every 10 s, {n} Rollouts rolling for {duration:.0?}"),
            unit: "MiB",
            values: samples.iter().map(|s| s.1).collect(),
        },
        Figure::one("  RSS at the start".into(), "MiB", first),
        Figure::one("  RSS at the end".into(), "MiB", last),
        Figure::one("  RSS slope".into(), "MiB/h", slope(&samples) * 3_600.0),
        Figure::one(
            format!("rollouts done in {duration:.0?}"),
            "",
            (round * n) as f64,
        ),
        Figure::one(
            "  rollouts stuck until nudged".into(),
            "",
            f64::from(nudges),
        ),
    ])
}

/// The slope of the least-squares line through `(x, y)` points; 0 with fewer than two.
#[allow(clippy::cast_precision_loss)]
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}
