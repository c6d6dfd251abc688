//! AnalysisRuns under Argo CD: the health Argo CD gives the runs Sluice creates (children of the
//! Rollout in the Application's resource tree), and the Rollout's health as their verdicts move
//! it: a pass lets the update finish, an inconclusive run waits Suspended for a person (Argo CD's
//! `resume` decides), a failure aborts it (Degraded). The metric is a web metric on a server the
//! test answers.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{Router, http::header, routing::get};
use sluice_testkit::manifests::status;

use crate::app::{App, Policy, canary, stays_synced};

/// The AnalysisTemplate of the test: three measurements of the server's score, two seconds
/// apart; 0.9 or more passes, less than 0.5 fails, in between is inconclusive.
const TEMPLATE: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: score
spec:
  metrics:
  - name: score
    interval: 2s
    count: 3
    successCondition: result >= 0.9
    failureCondition: result < 0.5
    provider:
      web:
        url: URL
        jsonPath: "{$.score}"
"#;

/// The score the metric server answers with, in hundredths, as the test sets it.
struct Score {
    hundredths: Arc<AtomicU32>,
    url: String,
}

impl Score {
    /// Serves `{"score": …}` on a free port of 127.0.0.1 (the controller runs on this machine).
    async fn serve(score: f64) -> Self {
        let hundredths = Arc::new(AtomicU32::new(0));
        let read = hundredths.clone();
        let app = Router::new().route(
            "/score",
            get(move || {
                let score = f64::from(read.load(Ordering::SeqCst)) / 100.0;
                let body = serde_json::json!({ "score": score }).to_string();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let url = format!(
            "http://{}/score",
            listener.local_addr().expect("an address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let this = Self { hundredths, url };
        this.set(score);
        this
    }

    fn set(&self, score: f64) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.hundredths
            .store((score * 100.0).round() as u32, Ordering::SeqCst);
    }
}

/// The canary example with an analysis step between two weights, and the template.
fn analysed(image: &str, score: &Score) -> String {
    let text = canary(image);
    let steps = text
        .find("      steps:\n")
        .expect("examples/canary.yaml: the steps end the file");
    format!(
        "{}      steps:\n      - setWeight: 20\n      - analysis:\n          templates:\n          \
         - templateName: score\n      - setWeight: 60\n---\n{}",
        &text[..steps],
        TEMPLATE.replace("URL", &score.url)
    )
}

/// The AnalysisRun of the step the canary stands at, once Sluice has started one other than
/// `previous`.
async fn step_run(app: &App, previous: Option<&str>) -> String {
    let r = app
        .wait_rollout(90, "a step analysis started", |r| {
            step_run_name(r).is_some_and(|name| Some(name.as_str()) != previous)
        })
        .await;
    step_run_name(&r).expect("a step analysis run")
}

fn step_run_name(r: &sluice_api::Rollout) -> Option<String> {
    status(r)
        .canary?
        .current_step_analysis_run_status
        .map(|run| run.name)
}

/// Waits until Argo CD shows the AnalysisRun `run` with the health `want` (checking that the
/// Application stays Synced meanwhile); returns every health it showed on the way, in order, and
/// the last message.
async fn run_health(app: &mut App, run: &str, want: &str) -> (Vec<String>, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let view = app.get(false).await;
        if let Err(broken) = stays_synced(&view) {
            panic!(
                "{broken} while the AnalysisRun {run} runs; seen:\n{:#?}",
                app.seen
            );
        }
        if let Some((health, message)) = app.tree_health("AnalysisRun", run).await {
            if seen.last() != Some(&health) {
                seen.push(health.clone());
            }
            if health == want {
                return (seen, message);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Argo CD did not show the AnalysisRun {run} {want} within 90 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn analysis_runs_show_their_verdict_and_move_the_rollout() {
    let score = Score::serve(0.95).await;
    let mut app = App::new(
        "argocd-analysis",
        &analysed("1.0", &score),
        "guestbook",
        Policy::automated(),
    )
    .await;
    // The first version is not analysed (there is nothing to compare it with).
    app.healthy(120).await;

    // A pass: Progressing while it measures, Healthy once it passed; the update finishes.
    app.commit(&analysed("1.1", &score), "guestbook 1.1").await;
    let passed = step_run(&app, None).await;
    let (seen, message) = run_health(&mut app, &passed, "Healthy").await;
    assert_eq!(
        seen.first().map(String::as_str),
        Some("Progressing"),
        "{seen:?}"
    );
    assert!(!message.is_empty(), "Healthy without a message");
    app.healthy(120).await;

    // Inconclusive: Unknown, and the rollout Suspended until a person decides; Argo CD's
    // `resume` lets it go on.
    score.set(0.7);
    app.commit(&analysed("1.2", &score), "guestbook 1.2").await;
    let unsure = step_run(&app, Some(&passed)).await;
    run_health(&mut app, &unsure, "Unknown").await;
    app.wait(60, "Suspended by the inconclusive analysis", |v| {
        v.is("Synced", "Suspended")
    })
    .await;
    app.action("resume").await;
    app.healthy(120).await;
    assert_eq!(
        sluice_testkit::manifests::image(&app.get_rollout().await),
        "ghcr.io/example/guestbook:1.2"
    );

    // A failure: Degraded with the reason, and the rollout aborted (Degraded too); the stable
    // version keeps every pod.
    score.set(0.1);
    app.commit(&analysed("1.3", &score), "guestbook 1.3").await;
    let failed = step_run(&app, Some(&unsure)).await;
    let (_, message) = run_health(&mut app, &failed, "Degraded").await;
    assert!(!message.is_empty(), "Degraded without a message");
    let view = app
        .wait(60, "Degraded by the failed analysis", |v| {
            v.is("Synced", "Degraded")
        })
        .await;
    assert!(
        !view.rollout_message.is_empty(),
        "the Rollout Degraded without a message: {view:?}"
    );
    let r = app
        .wait_rollout(60, "the canary scaled away after the abort", |r| {
            let s = status(r);
            s.abort == Some(true) && s.updated_replicas == Some(0)
        })
        .await;
    assert_eq!(status(&r).available_replicas, Some(5), "{:?}", status(&r));
}
