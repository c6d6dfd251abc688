//! Fixture round trips: each manifest in `tests/fixtures/api/` parses into its typed struct
//! and serialises back to the same JSON value, nothing lost and nothing invented.

mod structural;
mod validate;

use kube_core::Resource;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::*;
use crate::vocab::{GROUP, VERSION};

/// The generated CRDs, derived once for all the tests of this crate (a derivation takes seconds
/// in a debug build).
pub(super) fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    static CRDS: std::sync::OnceLock<
        Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
    > = std::sync::OnceLock::new();
    CRDS.get_or_init(super::crds).clone()
}

/// Reads a fixture as text.
pub(super) fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../tests/fixtures/api/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Kubernetes treats `null` as absent, so the comparison does too.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The path of the first difference between two JSON values, for a readable failure.
fn first_difference(path: &str, left: &Value, right: &Value) -> Option<String> {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let keys: std::collections::BTreeSet<_> = l.keys().chain(r.keys()).collect();
            keys.into_iter().find_map(|k| match (l.get(k), r.get(k)) {
                (Some(a), Some(b)) => first_difference(&format!("{path}.{k}"), a, b),
                (a, b) => Some(format!("{path}.{k}: {a:?} became {b:?}")),
            })
        }
        (Value::Array(l), Value::Array(r)) if l.len() == r.len() => l
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(&format!("{path}[{i}]"), a, b)),
        _ if left == right => None,
        _ => Some(format!("{path}: {left} became {right}")),
    }
}

/// Parses a fixture into `T` and checks that serialising gives back the same value.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let text = fixture(name);
    let original: Value = serde_norway::from_str(&text).expect("fixture is YAML");
    let typed: T = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = serde_json::to_value(&typed).expect("serialises");
    let original = without_nulls(original);
    if let Some(diff) = first_difference("", &original, &back) {
        panic!("{name} does not round-trip: {diff}");
    }
    typed
}

#[test]
fn canary_with_nginx_round_trips() {
    let rollout: Rollout = round_trip("canary-nginx.yaml");
    let canary = rollout.spec.canary().expect("canary");
    assert_eq!(canary.max_surge, Some(IntOrPercent::Percent(25)));
    assert_eq!(canary.max_unavailable, Some(IntOrPercent::Int(0)));
    let nginx = canary
        .traffic_routing
        .as_ref()
        .and_then(|t| t.nginx.as_ref());
    assert_eq!(
        nginx.and_then(|n| n.stable_ingress.as_deref()),
        Some("storefront")
    );
    let kinds: Vec<_> = canary.steps.iter().map(CanaryStep::kind).collect();
    assert_eq!(kinds.first(), Some(&StepKind::SetWeight));
    assert_eq!(canary.steps[0], CanaryStep::SetWeight(5));
    let pause_secs = |i: usize| match &canary.steps[i] {
        CanaryStep::Pause(PauseStep { duration }) => duration.as_ref().map(Duration::as_secs),
        other => panic!("step {i} is {other:?}"),
    };
    assert_eq!(pause_secs(1), Some(30));
    assert_eq!(pause_secs(3), Some(90));
    assert_eq!(pause_secs(6), Some(5400));
    assert_eq!(pause_secs(9), None);
}

#[test]
fn canary_with_analysis_round_trips() {
    let rollout: Rollout = round_trip("canary-analysis.yaml");
    let canary = rollout.spec.canary().expect("canary");
    let background = canary.analysis.as_ref().expect("background analysis");
    assert_eq!(background.starting_step, Some(2));
    assert_eq!(background.analysis.templates.len(), 2);
    let kinds: Vec<_> = canary.steps.iter().map(|s| s.kind().json_name()).collect();
    assert_eq!(
        kinds,
        [
            "setHeaderRoute",
            "setMirrorRoute",
            "setWeight",
            "analysis",
            "experiment",
            "plugin",
            "setHeaderRoute",
            "setWeight"
        ]
    );
    let CanaryStep::Experiment(experiment) = &canary.steps[4] else {
        panic!("step 4 is an experiment")
    };
    assert_eq!(
        experiment.duration.as_ref().map(Duration::as_secs),
        Some(600)
    );
    assert_eq!(experiment.templates[0].spec_ref, SpecRef::Stable);
}

#[test]
fn blue_green_with_promotion_analysis_round_trips() {
    let rollout: Rollout = round_trip("bluegreen-analysis.yaml");
    let blue_green = rollout.spec.blue_green().expect("blue/green");
    assert_eq!(blue_green.active_service, "checkout-active");
    assert!(!blue_green.auto_promotes());
    assert!(blue_green.pre_promotion_analysis.is_some());
    assert!(blue_green.post_promotion_analysis.is_some());
    assert!(matches!(
        rollout.spec.strategy(),
        Some(Strategy::BlueGreen(_))
    ));
}

#[test]
fn analysis_template_round_trips() {
    let template: AnalysisTemplate = round_trip("analysis-template.yaml");
    let metrics = &template.spec.metrics;
    assert!(matches!(metrics[0].provider, MetricProvider::Prometheus(_)));
    assert!(matches!(metrics[1].provider, MetricProvider::Web(_)));
    assert!(matches!(metrics[2].provider, MetricProvider::Job(_)));
    assert_eq!(
        metrics[0].count,
        Some(IntOrString::String("{{args.count}}".into()))
    );
    assert_eq!(
        metrics[0].interval.as_ref().map(Duration::as_secs),
        Some(60)
    );
    let secret = template.spec.args[2]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref());
    assert_eq!(secret.map(|s| s.key.as_str()), Some("token"));
}

#[test]
fn cluster_analysis_template_round_trips() {
    let template: ClusterAnalysisTemplate = round_trip("cluster-analysis-template.yaml");
    assert!(template.metadata.namespace.is_none());
    let metrics = &template.spec.template.metrics;
    assert!(matches!(metrics[0].provider, MetricProvider::Datadog(_)));
    assert!(matches!(metrics[1].provider, MetricProvider::NewRelic(_)));
    assert!(
        matches!(&metrics[2].provider, MetricProvider::Plugin(p) if p.contains_key("argoproj-labs/sample-prometheus"))
    );
}

#[test]
fn analysis_run_with_status_round_trips() {
    let run: AnalysisRun = round_trip("analysis-run.yaml");
    let status = run.status.expect("status");
    assert_eq!(status.phase, AnalysisPhase::Running);
    assert_eq!(status.metric_results[0].measurements.len(), 2);
    assert_eq!(status.metric_results[1].dry_run, Some(true));
    assert!(!status.phase.is_completed());
}

#[test]
fn rollout_with_argo_status_round_trips() {
    let rollout: Rollout = round_trip("rollout-with-status.yaml");
    let status = rollout.status.as_ref().expect("status");
    assert_eq!(status.observed_generation.as_deref(), Some("4"));
    assert_eq!(status.hpa_replicas, Some(6));
    assert_eq!(status.phase, Some(RolloutPhase::Paused));
    assert_eq!(
        status.pause_conditions[0].reason,
        PauseReason::CanaryPauseStep
    );
    assert_eq!(status.blue_green, Some(BlueGreenStatus::default()));
    let weights = status
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .expect("weights");
    assert_eq!((weights.canary.weight, weights.stable.weight), (20, 80));
    // Argo CD's health check does `tonumber(status.observedGeneration)`: it must stay a string.
    let json = serde_json::to_value(&rollout).expect("serialises");
    assert_eq!(json["status"]["observedGeneration"], Value::from("4"));
    assert_eq!(json["status"]["HPAReplicas"], Value::from(6));
}

#[test]
fn argo_1_9_rollout_fields_round_trip() {
    let rollout: Rollout = round_trip("canary-argo-1.9-fields.yaml");
    let canary = rollout.spec.canary().expect("canary");
    // A step with two actions: the first is the step, the other is kept beside it.
    assert!(matches!(canary.steps[0], CanaryStep::SetCanaryScale(_)));
    let extra: Vec<_> = canary
        .steps
        .extra_actions(0)
        .iter()
        .map(CanaryStep::kind)
        .collect();
    assert_eq!(extra, [StepKind::SetHeaderRoute]);
    assert_eq!(canary.steps[1], CanaryStep::SetWeight(20));
    assert_eq!(canary.steps.extra_actions(1).len(), 1);
    assert_eq!(canary.steps.len(), 5);
    assert!(canary.steps.extra_actions(2).is_empty());
    let CanaryStep::Experiment(experiment) = &canary.steps[2] else {
        panic!("step 2 is an experiment")
    };
    assert_eq!(experiment.scale_down_delay_seconds, Some(60));
    let threshold = canary
        .replica_progress_threshold
        .as_ref()
        .expect("threshold");
    assert_eq!((threshold.type_.as_str(), threshold.value), ("Percent", 80));
    let routing = canary.traffic_routing.as_ref().expect("routing");
    let nginx = routing.nginx.as_ref().expect("nginx");
    assert_eq!(nginx.canary_ingress_annotations.len(), 1);
    let rule = routing
        .istio
        .as_ref()
        .and_then(|i| i.destination_rule.as_ref())
        .expect("destination rule");
    assert_eq!(rule.additional_subset_names, ["legacy", "shadow"]);
    let status = rollout.status.as_ref().expect("status");
    let alb = status.alb.as_ref().expect("alb");
    assert_eq!(alb.ingress.as_deref(), Some("gateway"));
    assert_eq!(status.albs.len(), 1);
    let plugin = &status
        .canary
        .as_ref()
        .expect("canary status")
        .step_plugin_statuses[0];
    assert_eq!(plugin.disabled, Some(true));
    // A step with two actions is written as one map, its actions in the order they were read.
    let yaml = serde_norway::to_string(&canary.steps[..2].to_vec()).expect("serialises");
    assert!(yaml.starts_with("- setCanaryScale:\n"), "{yaml}");
    let written = serde_norway::to_string(&canary.steps).expect("serialises");
    assert!(
        written.contains("  setHeaderRoute:\n") && written.contains("- setWeight: 20\n  pause:\n"),
        "{written}"
    );
}

#[test]
fn argo_1_9_analysis_fields_round_trip() {
    let template: AnalysisTemplate = round_trip("analysis-template-argo-1.9-fields.yaml");
    assert_eq!(template.spec.templates.len(), 2);
    let metrics = &template.spec.metrics;
    assert_eq!(metrics[0].failure_limit, Some(IntOrString::Int(-1)));
    assert_eq!(
        metrics[0].consecutive_success_limit,
        Some(IntOrString::Int(3))
    );
    let MetricProvider::Prometheus(prometheus) = &metrics[0].provider else {
        panic!("metric 0 is prometheus")
    };
    let range = prometheus.range_query.as_ref().expect("range query");
    assert_eq!(range.step.as_deref(), Some("1m"));
    assert!(matches!(&metrics[1].provider, MetricProvider::NewRelic(n) if n.timeout == Some(20)));
    assert!(matches!(&metrics[2].provider, MetricProvider::Kayenta(k) if k.lookback == Some(true)));
    assert_eq!(template.spec.templates[0].template_name, "error-rate");

    let run: AnalysisRun = round_trip("analysis-run-argo-1.9-fields.yaml");
    let ttl = run.spec.ttl_strategy.as_ref().expect("ttl");
    assert_eq!(ttl.seconds_after_success, Some(600));
    let status = run.status.expect("status");
    assert_eq!(status.metric_results[0].consecutive_success, Some(1));
}

#[test]
fn a_step_with_several_actions_is_read_not_refused() {
    // YAML keeps the order of a map's keys as written (serde_json's maps are sorted).
    let yaml =
        "- setCanaryScale:\n    replicas: 1\n  setWeight: 10\n  pause: {}\n- setWeight: 50\n";
    let steps: CanarySteps = serde_norway::from_str(yaml).expect("reads");
    assert_eq!(steps.len(), 2);
    let kinds: Vec<_> = steps.actions(0).iter().map(|a| a.kind()).collect();
    assert_eq!(
        kinds,
        [
            StepKind::SetCanaryScale,
            StepKind::SetWeight,
            StepKind::Pause
        ]
    );
    assert_eq!(serde_norway::to_string(&steps).expect("writes"), yaml);
    let several: Vec<_> = steps
        .with_several_actions()
        .map(|(i, a)| (i, a.len()))
        .collect();
    assert_eq!(several, [(0, 3)]);
    let empty = serde_json::from_value::<CanarySteps>(serde_json::json!([{}]));
    assert!(empty.is_err_and(|e| e.to_string().contains("a canary step is empty")));
    let unknown = serde_json::from_value::<CanarySteps>(serde_json::json!([{ "wait": 1 }]));
    assert!(unknown.is_err_and(|e| e.to_string().contains("unknown variant `wait`")));
}

#[test]
fn defaults_are_not_invented() {
    let status = serde_json::to_value(RolloutStatus::default()).expect("serialises");
    assert_eq!(status, serde_json::json!({}));
    let spec = serde_json::to_value(RolloutSpec::default()).expect("serialises");
    assert_eq!(spec, serde_json::json!({}));
}

#[test]
fn steps_serialise_as_argo_writes_them() {
    let steps = vec![
        CanaryStep::SetWeight(20),
        CanaryStep::Pause(PauseStep {
            duration: Some(Duration::parse("30s").expect("valid")),
        }),
        CanaryStep::Pause(PauseStep::default()),
    ];
    assert_eq!(
        serde_json::to_value(&steps).expect("serialises"),
        serde_json::json!([{ "setWeight": 20 }, { "pause": { "duration": "30s" } }, { "pause": {} }])
    );
    // YAML too: a plain one-key map, never a YAML tag such as `!setWeight 20`.
    let yaml = serde_norway::to_string(&steps).expect("serialises");
    assert_eq!(
        yaml,
        "- setWeight: 20\n- pause:\n    duration: 30s\n- pause: {}\n"
    );
    let from_yaml: Vec<CanaryStep> = serde_norway::from_str(&yaml).expect("parses");
    assert_eq!(from_yaml, steps);
}

#[test]
fn one_key_maps_say_what_is_wrong() {
    let error = |json: Value| match serde_json::from_value::<CanaryStep>(json) {
        Ok(step) => panic!("accepted {step:?}"),
        Err(e) => e.to_string(),
    };
    let two = error(serde_json::json!({ "setWeight": 20, "pause": {} }));
    assert!(two.contains("a canary step has exactly one key"), "{two}");
    let empty = error(serde_json::json!({}));
    assert!(
        empty.contains("a canary step is empty; it needs exactly one of: setWeight, pause"),
        "{empty}"
    );
    let unknown = error(serde_json::json!({ "wait": 1 }));
    assert!(
        unknown.contains("unknown variant `wait`, expected one of `setWeight`"),
        "{unknown}"
    );
    let provider =
        serde_norway::from_str::<MetricProvider>("prometheus: {query: up}\nweb: {url: x}\n");
    assert!(provider.is_err_and(|e| {
        e.to_string()
            .contains("a metric provider has exactly one key")
    }));
}

#[test]
fn constants_match_the_derived_resources() {
    assert_eq!(Rollout::group(&()), GROUP);
    assert_eq!(Rollout::version(&()), VERSION);
    assert_eq!(AnalysisRun::api_version(&()), format!("{GROUP}/{VERSION}"));
    let names: Vec<_> = crds().into_iter().filter_map(|c| c.metadata.name).collect();
    assert_eq!(
        names,
        [
            "rollouts.argoproj.io",
            "analysistemplates.argoproj.io",
            "clusteranalysistemplates.argoproj.io",
            "analysisruns.argoproj.io",
            "experiments.argoproj.io"
        ]
    );
}
