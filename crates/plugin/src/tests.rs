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
