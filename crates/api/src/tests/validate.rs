//! Table tests of `validate`: one change to a valid spec, and the problem it must produce.

use super::super::{
    ProblemKind::{Invalid, Unsupported},
    *,
};

/// A minimal canary that Sluice runs as written.
fn canary() -> Rollout {
    serde_norway::from_str(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: { name: web }
spec:
  replicas: 3
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web, tier: front } }
    spec: { containers: [{ name: web, image: nginx }] }
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      steps: [{ setWeight: 20 }, { pause: { duration: 1m } }, { setWeight: 60 }, { pause: {} }]
"#,
    )
    .expect("valid canary")
}

/// A minimal blue/green rollout that Sluice runs as written.
fn blue_green() -> Rollout {
    let mut rollout = canary();
    rollout.spec.strategy = Some(RolloutStrategy {
        blue_green: Some(BlueGreenStrategy {
            active_service: "web-active".into(),
            preview_service: Some("web-preview".into()),
            ..Default::default()
        }),
        canary: None,
    });
    rollout
}

/// Mutable access to the canary strategy of a test rollout.
fn canary_mut(r: &mut Rollout) -> &mut CanaryStrategy {
    r.spec
        .strategy
        .as_mut()
        .and_then(|s| s.canary.as_mut())
        .expect("canary")
}

/// Mutable access to the blue/green strategy of a test rollout.
fn blue_green_mut(r: &mut Rollout) -> &mut BlueGreenStrategy {
    r.spec
        .strategy
        .as_mut()
        .and_then(|s| s.blue_green.as_mut())
        .expect("blue/green")
}

/// A JSON value parsed into a typed field, for table entries.
fn parse<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
    serde_json::from_value(json).expect("valid JSON for the type")
}

type Case = (
    &'static str,
    fn() -> Rollout,
    fn(&mut Rollout),
    &'static str,
    ProblemKind,
    &'static str,
);

#[rustfmt::skip]
const CASES: &[Case] = &[
    ("no strategy", canary, |r| r.spec.strategy = None,
        "spec.strategy", Invalid, "one of canary or blueGreen is required"),
    ("both strategies", canary, |r| {
        let bg = blue_green().spec.strategy.and_then(|s| s.blue_green);
        r.spec.strategy.as_mut().expect("strategy").blue_green = bg;
    }, "spec.strategy", Invalid, "mutually exclusive"),
    ("selector missing", canary, |r| r.spec.selector = None,
        "spec.selector", Invalid, "is required"),
    ("selector empty", canary, |r| r.spec.selector = Some(Default::default()),
        "spec.selector", Invalid, "every pod"),
    ("selector does not match", canary, |r| r.spec.selector = parse(serde_json::json!({"matchLabels": {"app": "api"}})),
        "spec.selector", Invalid, "does not match"),
    ("selector expression does not match", canary, |r| r.spec.selector = parse(serde_json::json!(
        {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]})),
        "spec.selector", Invalid, "does not match"),
    ("selector bad operator", canary, |r| r.spec.selector = parse(serde_json::json!(
        {"matchExpressions": [{"key": "tier", "operator": "Equals"}]})),
        "spec.selector.matchExpressions[0].operator", Invalid, "not one of In"),
    ("setWeight above 100", canary, |r| canary_mut(r).steps[2] = CanaryStep::SetWeight(150),
        "spec.strategy.canary.steps[2].setWeight", Invalid, "between 0 and 100 (got 150)"),
    ("setWeight negative", canary, |r| canary_mut(r).steps[0] = CanaryStep::SetWeight(-1),
        "spec.strategy.canary.steps[0].setWeight", Invalid, "between 0 and 100 (got -1)"),
    ("maxSurge and maxUnavailable zero", canary, |r| {
        let c = canary_mut(r);
        c.max_surge = Some(IntOrPercent::Percent(0));
        c.max_unavailable = Some(IntOrPercent::Int(0));
    }, "spec.strategy.canary.maxSurge", Invalid, "cannot both be zero"),
    ("maxUnavailable above 100%", canary, |r| canary_mut(r).max_unavailable = Some(IntOrPercent::Percent(150)),
        "spec.strategy.canary.maxUnavailable", Invalid, "cannot exceed 100% (got 150%)"),
    ("negative replicas", canary, |r| r.spec.replicas = Some(-2),
        "spec.replicas", Invalid, "must not be negative (got -2)"),
    ("negative minReadySeconds", canary, |r| r.spec.min_ready_seconds = Some(-5),
        "spec.minReadySeconds", Invalid, "must not be negative"),
    ("negative scaleDownDelaySeconds", canary, |r| canary_mut(r).scale_down_delay_seconds = Some(-30),
        "spec.strategy.canary.scaleDownDelaySeconds", Invalid, "must not be negative"),
    ("negative autoPromotionSeconds", blue_green, |r| blue_green_mut(r).auto_promotion_seconds = Some(-1),
        "spec.strategy.blueGreen.autoPromotionSeconds", Invalid, "must not be negative"),
    ("deadline not above minReadySeconds", canary, |r| {
        r.spec.min_ready_seconds = Some(60);
        r.spec.progress_deadline_seconds = Some(60);
    }, "spec.progressDeadlineSeconds", Invalid, "greater than minReadySeconds"),
    ("canaryService equals stableService", canary, |r| canary_mut(r).stable_service = Some("web-canary".into()),
        "spec.strategy.canary.stableService", Invalid, "must differ from canaryService"),
    ("activeService empty", blue_green, |r| blue_green_mut(r).active_service.clear(),
        "spec.strategy.blueGreen.activeService", Invalid, "is required"),
    ("previewService equals activeService", blue_green, |r| blue_green_mut(r).preview_service = Some("web-active".into()),
        "spec.strategy.blueGreen.previewService", Invalid, "must differ from activeService"),
    ("workloadRef with template", canary, |r| r.spec.workload_ref = Some(Default::default()),
        "spec.template", Invalid, "must be empty when spec.workloadRef is set"),
    ("neither template nor workloadRef", canary, |r| r.spec.template = None,
        "spec.template", Invalid, "is required unless spec.workloadRef is set"),
    ("appMesh", canary, |r| canary_mut(r).traffic_routing = parse(serde_json::json!({"appMesh": {"virtualService": {"name": "web"}}})),
        "spec.strategy.canary.trafficRouting.appMesh", Unsupported, "not supported"),
    ("router plugin", canary, |r| canary_mut(r).traffic_routing = parse(serde_json::json!({"plugins": {"x/y": {}}})),
        "spec.strategy.canary.trafficRouting.plugins", Unsupported, "not supported"),
    ("experiment step without templates", canary, |r| canary_mut(r).steps[1] = CanaryStep::Experiment(Default::default()),
        "spec.strategy.canary.steps[1].experiment.templates", Invalid, "at least one template"),
    ("experiment templates sharing a name", canary, |r| canary_mut(r).steps[1] = parse(serde_json::json!(
        {"experiment": {"templates": [{"name": "a", "specRef": "stable"}, {"name": "a", "specRef": "canary"}]}})),
        "spec.strategy.canary.steps[1].experiment.templates[1].name", Invalid, "used twice"),
    ("experiment analyses sharing a name", canary, |r| canary_mut(r).steps[1] = parse(serde_json::json!(
        {"experiment": {"templates": [{"name": "a", "specRef": "stable"}],
                        "analyses": [{"name": "x", "templateName": "t"}, {"name": "x", "templateName": "u"}]}})),
        "spec.strategy.canary.steps[1].experiment.analyses[1].name", Invalid, "used twice"),
    ("experiment template name no ReplicaSet can carry", canary, |r| canary_mut(r).steps[1] = parse(serde_json::json!(
        {"experiment": {"templates": [{"name": "Base_Line", "specRef": "stable"}]}})),
        "spec.strategy.canary.steps[1].experiment.templates[0].name", Invalid, "invalid ReplicaSet name"),
    ("experiment template name too long", canary, |r| canary_mut(r).steps[1] = parse(serde_json::json!(
        {"experiment": {"templates": [{"name": "a".repeat(64), "specRef": "stable"}]}})),
        "spec.strategy.canary.steps[1].experiment.templates[0].name", Invalid, "longer than 63"),
    ("experiment template weight with a router", canary, |r| { canary_mut(r).traffic_routing = gateway(); canary_mut(r).steps[1] = parse(serde_json::json!(
        {"experiment": {"templates": [{"name": "a", "specRef": "canary", "weight": 5}]}})); },
        "spec.strategy.canary.steps[1].experiment.templates[0].weight", Unsupported, "traffic to an experiment"),
    ("analysis step", canary, |r| canary_mut(r).steps[3] = CanaryStep::Analysis(Default::default()),
        "spec.strategy.canary.steps[3].analysis.templates", Invalid, "at least one"),
    ("header route step without a router", canary, |r| canary_mut(r).steps[1] = CanaryStep::SetHeaderRoute(Default::default()),
        "spec.strategy.canary.steps[1].setHeaderRoute", Invalid, "needs spec.strategy.canary.trafficRouting"),
    ("router without a canary Service", canary, |r| { canary_mut(r).canary_service = None; canary_mut(r).traffic_routing = gateway(); },
        "spec.strategy.canary.canaryService", Invalid, "is required with trafficRouting"),
    ("setWeight above maxTrafficWeight", canary, |r| { let t = gateway().map(|mut t| { t.max_traffic_weight = Some(10); t }); canary_mut(r).traffic_routing = t; },
        "spec.strategy.canary.steps[0].setWeight", Invalid, "must not exceed maxTrafficWeight 10"),
    ("header route not managed", canary, |r| { canary_mut(r).traffic_routing = gateway(); canary_mut(r).steps[1] = CanaryStep::SetHeaderRoute(crate::SetHeaderRoute { name: Some("h".into()), matches: Vec::new() }); },
        "spec.strategy.canary.steps[1].setHeaderRoute.name", Invalid, "is not in spec.strategy.canary.trafficRouting.managedRoutes"),
    ("gateway plugin without a route", canary, |r| canary_mut(r).traffic_routing = parse(serde_json::json!({"plugins": {"argoproj-labs/gatewayAPI": {"namespace": "x"}}})),
        "spec.strategy.canary.trafficRouting.plugins[\"argoproj-labs/gatewayAPI\"]", Invalid, "names no route"),
    ("plugin step", canary, |r| canary_mut(r).steps[1] = CanaryStep::Plugin(Default::default()),
        "spec.strategy.canary.steps[1].plugin", Unsupported, "not supported"),
    ("background analysis", canary, |r| canary_mut(r).analysis = Some(Default::default()),
        "spec.strategy.canary.analysis.templates", Invalid, "at least one"),
    ("pingPong without a router", canary, |r| canary_mut(r).ping_pong = Some(Default::default()),
        "spec.strategy.canary.pingPong", Invalid, "needs spec.strategy.canary.trafficRouting"),
    ("dynamicStableScale without a router", canary, |r| canary_mut(r).dynamic_stable_scale = Some(true),
        "spec.strategy.canary.dynamicStableScale", Invalid, "needs spec.strategy.canary.trafficRouting"),
    ("dynamicStableScale with scaleDownDelaySeconds", canary, |r| { canary_mut(r).traffic_routing = gateway(); canary_mut(r).dynamic_stable_scale = Some(true); canary_mut(r).scale_down_delay_seconds = Some(30); },
        "spec.strategy.canary.scaleDownDelaySeconds", Invalid, "cannot be set with dynamicStableScale"),
    ("prePromotionAnalysis", blue_green, |r| blue_green_mut(r).pre_promotion_analysis = Some(Default::default()),
        "spec.strategy.blueGreen.prePromotionAnalysis.templates", Invalid, "at least one"),
    ("postPromotionAnalysis", blue_green, |r| blue_green_mut(r).post_promotion_analysis = Some(Default::default()),
        "spec.strategy.blueGreen.postPromotionAnalysis.templates", Invalid, "at least one"),
    ("replicaProgressThreshold of no type", canary, |r| canary_mut(r).replica_progress_threshold = Some(ReplicaProgressThreshold { type_: "Share".into(), value: 50 }),
        "spec.strategy.canary.replicaProgressThreshold.type", Invalid, "Percent or Pods"),
    ("replicaProgressThreshold over 100%", canary, |r| canary_mut(r).replica_progress_threshold = Some(ReplicaProgressThreshold { type_: "Percent".into(), value: 150 }),
        "spec.strategy.canary.replicaProgressThreshold.value", Invalid, "between 1 and 100"),
    ("replicaProgressThreshold of no pod", canary, |r| canary_mut(r).replica_progress_threshold = Some(ReplicaProgressThreshold { type_: "Pods".into(), value: 0 }),
        "spec.strategy.canary.replicaProgressThreshold.value", Invalid, "greater than 0"),
    ("a second action checked as a first", canary, |r| canary_mut(r).steps = parse(serde_json::json!(
        [{"pause": {}, "setWeight": 120}])),
        "spec.strategy.canary.steps[0].setWeight", Invalid, "between 0 and 100"),
    ("an unsupported second action", canary, |r| canary_mut(r).steps = parse(serde_json::json!(
        [{"setCanaryScale": {"weight": 20}, "plugin": {"name": "x/y"}}])),
        "spec.strategy.canary.steps[0].plugin", Unsupported, "not supported"),
];

#[test]
fn valid_specs_have_no_problems() {
    assert_eq!(validate(&canary()), []);
    assert_eq!(validate(&blue_green()), []);
}

#[test]
fn each_rule_reports_its_field() {
    for (name, base, change, field, kind, message) in CASES {
        let mut rollout = base();
        change(&mut rollout);
        let problems = validate(&rollout);
        let found = problems
            .iter()
            .any(|p| p.field == *field && p.kind == *kind && p.message.contains(message));
        assert!(
            found,
            "{name}: expected {kind:?} {field}: …{message}…, got {problems:#?}"
        );
    }
}

#[test]
fn false_flags_are_not_reported() {
    let mut rollout = canary();
    canary_mut(&mut rollout).dynamic_stable_scale = Some(false);
    rollout.spec.progress_deadline_abort = Some(false);
    assert_eq!(validate(&rollout), []);
}

/// A Gateway API router as Argo users configure the plugin.
fn gateway() -> Option<crate::TrafficRouting> {
    parse(serde_json::json!({"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}}))
}

#[test]
fn a_gateway_api_canary_with_header_routes_is_valid() {
    let mut rollout = canary();
    canary_mut(&mut rollout).traffic_routing = parse(serde_json::json!({
        "plugins": {"argoproj-labs/gatewayAPI": {"httpRoutes": [{"name": "web", "useHeaderRoutes": true}]}},
        "managedRoutes": [{"name": "h"}],
        "maxTrafficWeight": 1000
    }));
    canary_mut(&mut rollout).steps[0] = CanaryStep::SetWeight(500);
    canary_mut(&mut rollout).steps[1] = CanaryStep::SetHeaderRoute(crate::SetHeaderRoute {
        name: Some("h".into()),
        matches: Vec::new(),
    });
    assert_eq!(validate(&rollout), []);
}

#[test]
fn istio_subset_routing_needs_no_services() {
    let mut rollout = canary();
    canary_mut(&mut rollout).canary_service = None;
    canary_mut(&mut rollout).stable_service = None;
    canary_mut(&mut rollout).traffic_routing = parse(serde_json::json!({"istio": {
        "virtualService": {"name": "web", "routes": ["primary"]},
        "destinationRule": {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"}
    }}));
    assert_eq!(validate(&rollout), []);
    canary_mut(&mut rollout).traffic_routing = parse(serde_json::json!({"istio": {
        "virtualService": {"name": "web", "routes": ["primary"]}
    }}));
    let fields: Vec<_> = validate(&rollout).into_iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [
            "spec.strategy.canary.canaryService",
            "spec.strategy.canary.stableService"
        ],
        "host-level routing splits between the Services"
    );
}

#[test]
fn the_argo_1_9_fixture_reports_what_sluice_does_not_run() {
    let rollout: Rollout =
        serde_norway::from_str(&super::fixture("canary-argo-1.9-fields.yaml")).expect("parses");
    let problems = validate(&rollout);
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert!(
        fields.is_empty(),
        "the steps of several actions, the experiment and replicaProgressThreshold run; {problems:#?}"
    );
}

#[test]
fn the_nginx_fixture_runs_as_written() {
    let rollout: Rollout =
        serde_norway::from_str(&super::fixture("canary-nginx.yaml")).expect("parses");
    assert_eq!(validate(&rollout), []);
}

#[test]
fn an_experiment_step_runs_and_its_weight_is_ignored_without_a_router() {
    let mut rollout = canary();
    canary_mut(&mut rollout).steps[1] = parse(serde_json::json!({"experiment": {
        "duration": "5m",
        "templates": [{"name": "baseline", "specRef": "stable"},
                      {"name": "canary", "specRef": "canary", "weight": 5}],
        "analyses": [{"name": "compare", "templateName": "compare", "requiredForCompletion": true}]
    }}));
    assert_eq!(validate(&rollout), []);
}
