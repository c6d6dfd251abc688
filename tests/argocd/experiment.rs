//! Experiments under Argo CD: the Experiment a canary's `experiment` step creates is a child of
//! the Rollout in the Application's resource tree, and Argo CD's own health check for the kind
//! reads what Sluice writes: Progressing while it runs, Healthy once it succeeded; the update
//! then goes on to the end, and the Application stays Synced throughout.

use std::time::Duration;

use sluice_testkit::manifests::status;

use crate::app::{App, Policy, canary, stays_synced};

/// The canary example with an experiment of the canary template between two weights.
fn experimenting(image: &str) -> String {
    let text = canary(image);
    let steps = text
        .find("      steps:\n")
        .expect("examples/canary.yaml: the steps end the file");
    format!(
        "{}      steps:\n      - setWeight: 20\n      - experiment:\n          duration: 6s\n          \
         templates:\n          - name: canary\n            specRef: canary\n      - setWeight: 60\n",
        &text[..steps],
    )
}

#[tokio::test]
async fn an_experiment_shows_progressing_then_healthy_and_the_update_goes_on() {
    let mut app = App::new(
        "argocd-experiment",
        &experimenting("1.0"),
        "guestbook",
        Policy::automated(),
    )
    .await;
    app.healthy(120).await;

    app.commit(&experimenting("1.1"), "guestbook 1.1").await;
    let r = app
        .wait_rollout(90, "the experiment step started", |r| {
            status(r)
                .canary
                .is_some_and(|c| c.current_experiment.is_some())
        })
        .await;
    let experiment = status(&r)
        .canary
        .and_then(|c| c.current_experiment)
        .expect("the experiment's name");

    // Its health as Argo CD shows it, every change of it, until Healthy.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let view = app.get(false).await;
        if let Err(broken) = stays_synced(&view) {
            panic!("{broken} while the Experiment {experiment} runs; seen: {seen:?}");
        }
        if let Some((health, _)) = app.tree_health("Experiment", &experiment).await
            && seen.last() != Some(&health)
        {
            seen.push(health);
        }
        if seen.last().is_some_and(|h| h == "Healthy") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Argo CD did not show the Experiment {experiment} Healthy within 90 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("Progressing"),
        "Progressing while it ran: {seen:?}"
    );
    app.healthy(120).await;
    assert_eq!(
        sluice_testkit::manifests::image(&app.get_rollout().await),
        "ghcr.io/example/guestbook:1.1"
    );
}
