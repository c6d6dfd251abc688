//! Snapshot tests of the renderers: canary and blue/green rollouts at several stages, aborted
//! and paused, on wide and narrow terminals, plain and coloured (objects from `fixtures.rs`).

use insta::assert_snapshot;
use serde_json::{Value, json};

use super::{
    fixtures::*,
    get::{render_analysis_run, render_rollout},
    info::{Objects, RolloutInfo},
    list::{Row, render_list},
    status::status_line,
    style::{Style, columns},
};

fn tree(objects: &Objects, style: Style) -> String {
    let out = render_rollout(&RolloutInfo::new(objects), &style, now());
    if !style.color {
        for line in out.lines() {
            assert!(
                columns(line) <= style.width.max(60),
                "wider than {}: {line}",
                style.width
            );
        }
    }
    out
}

#[test]
fn canary_paused_at_a_step() {
    let objects = canary_paused();
    assert_snapshot!("canary_paused_wide", tree(&objects, plain(120)));
    assert_snapshot!("canary_paused_narrow", tree(&objects, plain(60)));
}

#[test]
fn canary_on_a_terminal_has_colour_and_symbols() {
    let style = Style {
        width: 120,
        color: true,
    };
    let out = tree(&canary_paused(), style).replace('\x1b', "\\e");
    assert_snapshot!("canary_paused_colour", out);
}

#[test]
fn canary_progressing_with_pods_starting_and_stopping() {
    let objects = canary_progressing();
    assert_snapshot!("canary_progressing_wide", tree(&objects, plain(120)));
    assert_snapshot!("canary_progressing_narrow", tree(&objects, plain(60)));
}

#[test]
fn canary_aborted_after_a_failed_analysis() {
    let objects = canary_aborted();
    assert_snapshot!("canary_aborted_wide", tree(&objects, plain(120)));
    assert_snapshot!("canary_aborted_narrow", tree(&objects, plain(60)));
}

#[test]
fn canary_healthy_after_all_steps() {
    assert_snapshot!("canary_healthy", tree(&canary_healthy(), plain(120)));
}

#[test]
fn blue_green_waiting_for_promotion() {
    let objects = blue_green_preview();
    assert_snapshot!("blue_green_preview_wide", tree(&objects, plain(120)));
    assert_snapshot!("blue_green_preview_narrow", tree(&objects, plain(60)));
}

#[test]
fn blue_green_after_promotion() {
    assert_snapshot!(
        "blue_green_promoted",
        tree(&blue_green_promoted(), plain(120))
    );
}

#[test]
fn a_user_paused_rollout_not_yet_observed_is_progressing() {
    let mut objects = canary_healthy();
    objects.rollout.spec.paused = Some(true);
    objects.rollout.metadata.generation = Some(3);
    let line = status_line(&objects.rollout, &plain(120));
    assert_eq!(
        line,
        "Progressing - waiting for the controller to observe generation 3"
    );
}

#[test]
fn an_experiment_step_hangs_its_experiment_under_its_revision() {
    let objects = canary_experimenting();
    let wide = tree(&objects, plain(120));
    assert_snapshot!("canary_experimenting_wide", wide);
    assert_snapshot!("canary_experimenting_narrow", tree(&objects, plain(60)));
    let coloured = tree(
        &objects,
        Style {
            width: 120,
            color: true,
        },
    );
    assert_snapshot!(
        "canary_experimenting_colour",
        coloured.replace('\x1b', "\\e")
    );
    // Revision 2 (the canary's) holds its ReplicaSet, then the experiment with its own sets,
    // pods and run; revision 1 holds the stable set only.
    let names: Vec<&str> = wide
        .lines()
        .skip_while(|l| !l.starts_with("NAME"))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("shop") || w.starts_with("revision"))
        })
        .collect();
    let at = |name: &str| names.iter().position(|n| *n == name);
    assert!(at("revision:2") < at("shop-7d9f8c6b5") && at("shop-7d9f8c6b5") < at(EXP));
    assert!(at(EXP) < at("shop-7d9f8c6b5-2-0-success-rate"));
    assert!(at("shop-7d9f8c6b5-2-0-success-rate") < at("revision:1"));
}

#[test]
fn an_experiment_is_matched_to_its_revision_by_annotation_then_by_hash() {
    let revision_of = |objects: &Objects| {
        let info = RolloutInfo::new(objects);
        let revisions: Vec<i64> = info.revisions.iter().map(|r| r.revision).collect();
        (
            info.experiments
                .iter()
                .map(|e| e.revision)
                .collect::<Vec<_>>(),
            revisions,
        )
    };
    let objects = canary_experimenting();
    assert_eq!(revision_of(&objects), (vec![Some(2)], vec![2, 1]));

    // Written without the annotation (by another controller): its pod-template-hash label
    // names the rollout's ReplicaSet, whose revision it takes.
    let mut unannotated = canary_experimenting();
    unannotated.experiments[0].metadata.annotations = None;
    assert_eq!(revision_of(&unannotated), (vec![Some(2)], vec![2, 1]));

    // Made for a revision whose ReplicaSet does not exist (yet, or any more): the revision is
    // drawn for it all the same.
    let mut newer = canary_experimenting();
    let mut next = newer.experiments[0].clone();
    next.metadata.name = Some("shop-3e8a1f2c4-3-0".into());
    next.metadata.uid = Some("next-experiment".into());
    if let Some(a) = next.metadata.annotations.as_mut() {
        a.insert("rollout.argoproj.io/revision".into(), "3".into());
    }
    newer.experiments.push(next);
    assert_eq!(revision_of(&newer), (vec![Some(3), Some(2)], vec![3, 2, 1]));
    assert!(
        tree(&newer, plain(120)).contains("├── revision:3\n│  └── shop-3e8a1f2c4-3-0 "),
        "{}",
        tree(&newer, plain(120))
    );

    // Not the rollout's: not shown.
    let mut foreign = canary_experimenting();
    foreign.experiments[0].metadata.owner_references = None;
    assert_eq!(revision_of(&foreign), (vec![], vec![2, 1]));
    assert!(!tree(&foreign, plain(120)).contains("Experiment"));
}

#[test]
fn one_list_per_kind_holds_the_rollout_s_objects_and_its_experiments() {
    use super::fetch::covering_selector;
    let objects = canary_experimenting();
    // The templates copy the rollout's pod template: its selector covers them.
    assert_eq!(
        covering_selector(&objects.rollout, &objects.experiments).as_deref(),
        Some("app=shop")
    );
    // Terms with commas of their own are kept whole; only the shared ones are kept.
    let mut rollout = objects.rollout.clone();
    rollout.spec.selector = Some(from(json!({
        "matchLabels": { "app": "shop" },
        "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["web", "api"] }]
    })));
    let mut experiment = objects.experiments[0].clone();
    experiment.spec.templates[1].selector = Some(from(json!({
        "matchLabels": { "app": "shop", "role": "canary" },
        "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["web", "api"] }]
    })));
    experiment.spec.templates[0].selector = experiment.spec.templates[1].selector.clone();
    assert_eq!(
        covering_selector(&rollout, &[experiment.clone()]).as_deref(),
        Some("app=shop,tier in (web,api)")
    );
    // An experiment step whose template selects on other labels: nothing is shared, so the
    // lists take the whole namespace (and still one each), also before that experiment exists.
    let mut steps = objects.rollout.clone();
    let step = json!({ "experiment": { "templates": [{
        "name": "canary", "specRef": "canary",
        "selector": { "matchLabels": { "track": "experiment" } }
    }] } });
    if let Some(c) = steps.spec.strategy.as_mut().and_then(|s| s.canary.as_mut()) {
        c.steps[0] = from(step);
    }
    assert_eq!(covering_selector(&steps, &[]), None);
    // Another rollout's experiment does not widen the lists.
    let mut foreign = experiment;
    foreign.metadata.owner_references = None;
    foreign.spec.templates[0].selector = Some(from(json!({ "matchLabels": { "track": "x" } })));
    assert_eq!(
        covering_selector(&objects.rollout, &[foreign]).as_deref(),
        Some("app=shop")
    );
}

fn rows() -> Vec<Row> {
    let mut rows: Vec<Row> = [
        canary_paused(),
        canary_aborted(),
        blue_green_preview(),
        canary_healthy(),
    ]
    .iter()
    .map(|o| Row::new(&o.rollout))
    .collect();
    let names = ["shop", "checkout-frontend-eu-west", "catalog", "payments"];
    let namespaces = ["prod", "prod", "staging", "payments-prod"];
    for ((row, name), ns) in rows.iter_mut().zip(names).zip(namespaces) {
        row.name = name.into();
        row.namespace = ns.into();
    }
    rows
}

#[test]
fn list_of_rollouts() {
    assert_snapshot!("list_wide", render_list(&rows(), false, &plain(120)));
    assert_snapshot!(
        "list_all_namespaces",
        render_list(&rows(), true, &plain(120))
    );
    let narrow = render_list(&rows(), true, &plain(74));
    assert!(narrow.lines().all(|l| columns(l) <= 74), "{narrow}");
    assert_snapshot!("list_all_namespaces_narrow", narrow);
}

#[test]
fn status_lines() {
    let lines: Vec<String> = [
        canary_paused(),
        canary_progressing(),
        canary_aborted(),
        canary_healthy(),
        blue_green_preview(),
    ]
    .iter()
    .map(|o| status_line(&o.rollout, &plain(120)))
    .collect();
    assert_snapshot!("status_lines", lines.join("\n"));
    let narrow = status_line(&canary_aborted().rollout, &plain(30));
    assert_eq!(narrow, "Degraded - RolloutAborted: Ro…");
    let coloured = status_line(
        &canary_paused().rollout,
        &Style {
            width: 80,
            color: true,
        },
    );
    assert_eq!(coloured, "\x1b[90m‖ Paused\x1b[0m - CanaryPauseStep");
}

#[test]
fn analysis_run_details() {
    let failed = run("shop-7d9f8c6b5-2", 2, "Failed", [3, 2, 1, 1], 590);
    assert_snapshot!(
        "analysis_run_failed",
        render_analysis_run(&failed, &plain(120), now())
    );
    assert_snapshot!(
        "analysis_run_failed_narrow",
        render_analysis_run(&failed, &plain(60), now())
    );
}

#[test]
fn the_json_output_is_the_same_model() {
    let info = RolloutInfo::new(&canary_paused());
    let json = super::encode(&info, super::Output::Json).expect("JSON");
    let value: Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["status"], "Paused");
    assert_eq!(value["step"], "1/4");
    assert_eq!(value["setWeight"], 20);
    assert_eq!(value["actualWeight"], 20);
    assert_eq!(value["revisions"][0]["revision"], 2);
    assert_eq!(
        value["revisions"][0]["replicaSets"][0]["roles"],
        json!(["canary"])
    );
    assert_eq!(
        value["revisions"][1]["replicaSets"][0]["roles"],
        json!(["stable"])
    );
    assert_eq!(value["experiments"], json!([]));
    let info = RolloutInfo::new(&canary_experimenting());
    let json = super::encode(&info, super::Output::Json).expect("JSON");
    let value: Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["experiments"][0]["name"], EXP);
    assert_eq!(value["experiments"][0]["revision"], 2);
    assert_eq!(value["experiments"][0]["status"], "Running");
    assert_eq!(
        value["experiments"][0]["replicaSets"][1]["name"],
        format!("{EXP}-canary")
    );
}

#[test]
fn a_watch_ends_on_healthy_or_degraded_and_waits_through_every_pause() {
    use std::process::ExitCode;

    use super::status::end_state;
    assert_eq!(
        end_state(&canary_healthy().rollout),
        Some(ExitCode::SUCCESS)
    );
    assert_eq!(
        end_state(&canary_aborted().rollout),
        Some(ExitCode::from(super::status::ABORTED))
    );
    let mut invalid = canary_aborted().rollout;
    if let Some(s) = invalid.status.as_mut() {
        s.abort = None;
    }
    assert_eq!(
        end_state(&invalid),
        Some(ExitCode::FAILURE),
        "Degraded, not aborted"
    );
    assert_eq!(end_state(&canary_progressing().rollout), None);
    // A pause is on the way to Healthy, whoever ends it: a CI gate never goes green on it.
    assert_eq!(
        end_state(&canary_paused().rollout),
        None,
        "pause without duration"
    );
    assert_eq!(end_state(&blue_green_preview().rollout), None, "preview");
    let mut timed = canary_paused().rollout;
    if let Some(s) = timed.status.as_mut() {
        s.current_step_index = Some(3);
    }
    assert_eq!(status_line(&timed, &plain(80)), "Paused - CanaryPauseStep");
    assert_eq!(end_state(&timed), None);
    timed.spec.paused = Some(true);
    assert_eq!(end_state(&timed), None, "spec.paused");
}
