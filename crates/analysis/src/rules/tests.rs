//! Validation of runs and templates, and the numbers read from them.

use serde_json::{Value, json};

use super::*;

fn spec(value: Value) -> AnalysisRunSpec {
    serde_json::from_value(value).expect("a run spec")
}

fn web(name: &str, extra: Value) -> Value {
    let mut metric = json!({"name": name, "provider": {"web": {"url": "http://x"}}});
    if let (Some(m), Some(e)) = (metric.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    metric
}

fn error(value: Value) -> String {
    match RunRules::new(&spec(value)) {
        Ok(rules) => panic!("should be refused, got {rules:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_follow_argo() {
    let rules = RunRules::new(&spec(json!({"metrics": [
        web("once", json!({})),
        web("forever", json!({"interval": "30s"})),
        web("three", json!({"interval": "1m", "count": 3, "initialDelay": "10s"})),
    ]})))
    .unwrap();
    let once = rules.metric("once").unwrap();
    assert_eq!(once.count, Some(1));
    assert_eq!(
        (
            once.failure_limit,
            once.inconclusive_limit,
            once.consecutive_error_limit
        ),
        (Some(0), 0, 4)
    );
    assert_eq!(once.retention, 10);
    assert!(!once.dry_run);
    assert_eq!(rules.metric("forever").unwrap().count, None);
    let three = rules.metric("three").unwrap();
    assert_eq!(three.count, Some(3));
    assert_eq!(three.interval, Some(StdDuration::from_secs(60)));
    assert_eq!(three.initial_delay, Some(StdDuration::from_secs(10)));
    assert!(!rules.terminate);
}

#[test]
fn counts_and_limits_may_be_arguments() {
    let rules = RunRules::new(&spec(json!({
        "args": [{"name": "n", "value": "5"}, {"name": "limit", "value": "2"}],
        "metrics": [web("m", json!({
            "interval": "10s", "count": "{{args.n}}", "failureLimit": "{{ args.limit }}",
        }))],
    })))
    .unwrap();
    let m = rules.metric("m").unwrap();
    assert_eq!((m.count, m.failure_limit), (Some(5), Some(2)));
}

#[test]
fn invalid_runs_are_refused_with_argo_messages() {
    assert_eq!(error(json!({"metrics": []})), "no metrics specified");
    assert!(
        error(json!({"metrics": [web("a", json!({})), web("a", json!({}))]}))
            .contains("metrics[1]: duplicate name \"a\"")
    );
    assert!(
        error(json!({"metrics": [web("a", json!({"count": 1, "failureLimit": 2}))]}))
            .contains("count (1) must be >= failureLimit + consecutiveSuccessLimit (2 + 0)")
    );
    assert!(
        error(json!({"metrics": [web("a", json!({"count": 1, "inconclusiveLimit": 2}))]}))
            .contains("count must be >= inconclusiveLimit")
    );
    assert!(
        error(json!({"metrics": [web("a", json!({"count": 2}))]}))
            .contains("interval must be specified when count > 1")
    );
    assert!(
        error(json!({"metrics": [web("a", json!({"failureLimit": -1}))]}))
            .contains("failureLimit and consecutiveSuccessLimit cannot both be disabled")
    );
    let e = error(json!({
        "args": [{"name": "n", "value": "many"}],
        "metrics": [web("a", json!({"interval": "1s", "count": "{{args.n}}"}))],
    }));
    assert!(e.contains("count \"many\""), "{e}");
}

#[test]
fn broken_conditions_are_reported_before_measuring() {
    let e = error(json!({"metrics": [web("a", json!({"successCondition": "result >"}))]}));
    assert!(
        e.starts_with("metrics[0] \"a\": condition \"result >\" does not parse"),
        "{e}"
    );
    let e = error(json!({"metrics": [web("a", json!({"failureCondition": "isNan(result)"}))]}));
    assert!(e.contains("unknown function isNan()"), "{e}");
    // A condition with an argument compiles once the argument is substituted.
    RunRules::new(&spec(json!({
        "args": [{"name": "t", "value": "0.9"}],
        "metrics": [web("a", json!({"successCondition": "result[0] > {{args.t}}"}))],
    })))
    .unwrap();
}

#[test]
fn missing_arguments_and_unknown_placeholders_are_errors() {
    let e = error(json!({
        "args": [{"name": "svc"}],
        "metrics": [web("a", json!({}))],
    }));
    assert!(e.contains("args.svc was not resolved"), "{e}");
    let e = error(json!({
        "metrics": [{"name": "a", "provider": {"web": {"url": "http://{{args.host}}"}}}],
    }));
    assert!(
        e.contains("failed to resolve {{args.host}} in metric \"a\""),
        "{e}"
    );
}

#[test]
fn secrets_are_not_needed_to_validate() {
    let rules = RunRules::new(&spec(json!({
        "args": [{"name": "token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "metrics": [{"name": "a", "provider": {"web": {
            "url": "http://x",
            "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
        }}}],
    })))
    .unwrap();
    let sluice_api::MetricProvider::Web(w) = &rules.metrics[0].metric.provider else {
        panic!("web")
    };
    assert_eq!(w.headers[0].value, "Bearer temp-for-secret");
}

#[test]
fn unsupported_providers_are_named() {
    let e = error(json!({"metrics": [
        {"name": "p", "provider": {"plugin": {"argoproj-labs/sample": {}}}},
    ]}));
    assert!(e.contains("the plugin provider is not supported"), "{e}");
    assert!(e.contains("prometheus, web, job, datadog"), "{e}");
}

#[test]
fn dry_run_and_retention_rules_are_regular_expressions() {
    let rules = RunRules::new(&spec(json!({
        "metrics": [
            web("error-rate", json!({})),
            web("latency", json!({})),
            web("http-errors", json!({})),
        ],
        "dryRun": [{"metricName": "error"}],
        "measurementRetention": [{"metricName": "^latency$", "limit": 3}, {"metricName": ".*", "limit": 0}],
    })))
    .unwrap();
    let dry: Vec<_> = rules
        .metrics
        .iter()
        .map(|m| (m.name(), m.dry_run, m.retention))
        .collect();
    assert_eq!(
        dry,
        [
            ("error-rate", true, 10),
            ("latency", false, 3),
            ("http-errors", true, 10),
        ]
    );
    let all = RunRules::new(&spec(json!({
        "metrics": [web("a", json!({})), web("b", json!({}))],
        "dryRun": [{"metricName": "*"}],
    })))
    .unwrap();
    assert!(all.metrics.iter().all(|m| m.dry_run));

    let e = error(json!({
        "metrics": [web("a", json!({}))],
        "dryRun": [{"metricName": "nothing"}],
    }));
    assert_eq!(
        e,
        "dryRun[0]: rule \"nothing\" didn't match any metric name(s)"
    );
    let e = error(json!({
        "metrics": [web("a", json!({}))],
        "measurementRetention": [{"metricName": "(", "limit": 1}],
    }));
    assert!(
        e.starts_with("measurementRetention[0]: \"(\" is not a regular expression"),
        "{e}"
    );
}

#[test]
fn rule_matching_is_unanchored_like_go() {
    assert_eq!(rule_matches("rate", "error-rate"), Ok(true));
    assert_eq!(rule_matches("^rate", "error-rate"), Ok(false));
    assert_eq!(rule_matches(".*", "x"), Ok(true));
    assert_eq!(rule_matches("*", "x"), Ok(true));
    assert!(rule_matches("[", "x").is_err());
}

#[test]
fn templates_validate_with_open_arguments() {
    let template: AnalysisTemplateSpec = serde_json::from_value(json!({
        "args": [{"name": "service"}, {"name": "threshold"}],
        "metrics": [{
            "name": "error-rate",
            "successCondition": "result[0] < {{args.threshold}}",
            "provider": {"prometheus": {"query": "rate(x{svc=\"{{args.service}}\"}[1m])"}},
        }],
    }))
    .unwrap();
    validate_template(&template).unwrap();
    let broken: AnalysisTemplateSpec = serde_json::from_value(json!({
        "metrics": [web("a", json!({"successCondition": "result >= "}))],
    }))
    .unwrap();
    assert!(matches!(
        validate_template(&broken),
        Err(SpecError::Condition { .. })
    ));
}

#[test]
fn an_interval_below_the_floor_is_raised_and_said_so() {
    let rules = RunRules::new(&spec(json!({"metrics": [
        web("zero", json!({"interval": "0s"})),
        web("bare-zero", json!({"interval": 0, "count": 3})),
        web("fast", json!({"interval": "10ms"})),
        web("fine", json!({"interval": "5s"})),
    ]})))
    .unwrap();
    for name in ["zero", "bare-zero", "fast"] {
        let m = rules.metric(name).unwrap();
        assert_eq!(m.interval, Some(StdDuration::from_secs(1)), "{name}");
        assert_eq!(m.adjusted.len(), 1, "{name}: {:?}", m.adjusted);
        assert!(
            m.adjusted[0].starts_with("interval ") && m.adjusted[0].contains("raised to 1s"),
            "{name}: {:?}",
            m.adjusted
        );
    }
    assert_eq!(rules.metric("zero").unwrap().count, None);
    assert_eq!(rules.metric("bare-zero").unwrap().count, Some(3));
    let fine = rules.metric("fine").unwrap();
    assert_eq!(fine.interval, Some(StdDuration::from_secs(5)));
    assert!(fine.adjusted.is_empty());

    // A stricter controller raises further; a zero floor is still one second.
    let strict = AnalysisLimits {
        min_interval: StdDuration::from_millis(2500),
        ..AnalysisLimits::default()
    };
    let rules = RunRules::within(
        &spec(json!({"metrics": [web("m", json!({"interval": "2s"}))]})),
        &strict,
    )
    .unwrap();
    assert_eq!(rules.metrics[0].interval, Some(StdDuration::from_secs(3)));
    let none = AnalysisLimits {
        min_interval: StdDuration::ZERO,
        ..AnalysisLimits::default()
    };
    let rules = RunRules::within(
        &spec(json!({"metrics": [web("m", json!({"interval": "0s"}))]})),
        &none,
    )
    .unwrap();
    assert_eq!(rules.metrics[0].interval, Some(StdDuration::from_secs(1)));
}

#[test]
fn timeouts_above_the_ceiling_are_lowered() {
    let limits = AnalysisLimits::default();
    let ceiling = i64::try_from(limits.max_timeout.as_secs()).unwrap();
    let mut metric: Metric = serde_json::from_value(json!({
        "name": "slow",
        "provider": {"web": {"url": "http://x", "timeoutSeconds": 86_400}},
    }))
    .unwrap();
    let notes = bound_metric(&mut metric, &limits);
    let MetricProvider::Web(web_metric) = &metric.provider else {
        panic!("a web metric");
    };
    assert_eq!(web_metric.timeout_seconds, Some(ceiling));
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].contains("timeoutSeconds 86400 lowered to 60"),
        "{notes:?}"
    );

    let mut metric: Metric = serde_json::from_value(json!({
        "name": "q",
        "provider": {"prometheus": {"address": "http://p", "query": "up", "timeout": 3600}},
    }))
    .unwrap();
    bound_metric(&mut metric, &limits);
    let MetricProvider::Prometheus(p) = &metric.provider else {
        panic!("a prometheus metric");
    };
    assert_eq!(p.timeout, Some(ceiling));

    // Within the bounds: untouched.
    let mut metric: Metric = serde_json::from_value(json!({
        "name": "ok", "interval": "30s",
        "provider": {"web": {"url": "http://x", "timeoutSeconds": 5}},
    }))
    .unwrap();
    let before = metric.clone();
    assert!(bound_metric(&mut metric, &limits).is_empty());
    assert_eq!(metric, before);

    // The run's rules carry the lowered timeout too.
    let rules = RunRules::new(&spec(json!({"metrics": [
        {"name": "slow", "provider": {"web": {"url": "http://x", "timeoutSeconds": 999}}},
    ]})))
    .unwrap();
    assert_eq!(rules.metrics[0].adjusted.len(), 1);
}

#[test]
fn a_placeholder_in_a_metric_name_is_an_error_naming_it() {
    let message = error(json!({
        "args": [{"name": "service", "value": "web"}],
        "metrics": [web("rate-{{ args.service }}", json!({}))],
    }));
    assert!(message.contains("{{ args.service }}"), "{message}");
    assert!(message.starts_with("metrics[0]: name"), "{message}");
    // Unresolvable and unterminated ones too.
    let message = error(json!({"metrics": [web("rate-{{args.nope}}", json!({}))]}));
    assert!(message.contains("{{args.nope}}"), "{message}");
    let message = error(json!({"metrics": [web("rate-{{args", json!({}))]}));
    assert!(message.contains("{{args"), "{message}");
    // A template is refused the same way.
    let template: AnalysisTemplateSpec = serde_json::from_value(json!({
        "args": [{"name": "service"}],
        "metrics": [web("{{args.service}}", json!({}))],
    }))
    .unwrap();
    assert!(matches!(
        validate_template(&template),
        Err(SpecError::PlaceholderInName { .. })
    ));
}

#[test]
fn a_failure_limit_of_minus_one_is_disabled_as_argo_validates_it() {
    let rules = RunRules::new(&spec(json!({"metrics": [web("m", json!({
        "interval": "10s", "count": 4, "failureLimit": -1, "consecutiveSuccessLimit": "3",
    }))]})))
    .expect("-1 with consecutiveSuccessLimit is valid");
    let m = rules.metric("m").unwrap();
    assert_eq!((m.failure_limit, m.consecutive_success_limit), (None, 3));
    // Argo's `ValidateMetric` messages.
    let both = error(json!({"metrics": [web("m", json!({"failureLimit": -1}))]}));
    assert!(
        both.contains("failureLimit and consecutiveSuccessLimit cannot both be disabled"),
        "{both}"
    );
    let below = error(
        json!({"metrics": [web("m", json!({"failureLimit": -2, "consecutiveSuccessLimit": 1}))]}),
    );
    assert!(
        below.contains("failureLimit \"-2\" must be a whole number"),
        "{below}"
    );
    let short = error(json!({"metrics": [web("m", json!({
        "interval": "10s", "count": 2, "failureLimit": -1, "consecutiveSuccessLimit": 3,
    }))]}));
    assert!(
        short.contains("count must be >= consecutiveSuccessLimit"),
        "{short}"
    );
    let sum = error(json!({"metrics": [web("m", json!({
        "interval": "10s", "count": 3, "failureLimit": 2, "consecutiveSuccessLimit": 2,
    }))]}));
    assert!(
        sum.contains("count (3) must be >= failureLimit + consecutiveSuccessLimit (2 + 2)"),
        "{sum}"
    );
}

#[test]
fn range_queries_and_composed_templates_are_accepted() {
    // rangeQuery is acted on (the prometheus provider asks /api/v1/query_range).
    let range = spec(
        json!({"metrics": [{"name": "m", "provider": {"prometheus": {
            "query": "up", "rangeQuery": {"start": "now() - duration(\"5m\")", "end": "now()", "step": "1m"},
        }}}]}),
    );
    assert!(RunRules::new(&range).is_ok(), "rangeQuery is supported");
    // A template that includes others, with or without metrics of its own.
    for metrics in [json!([web("m", json!({}))]), json!([])] {
        let template: AnalysisTemplateSpec = serde_json::from_value(json!({
            "templates": [{"templateName": "base"}],
            "metrics": metrics,
        }))
        .expect("a template");
        validate_template(&template).expect("composition is accepted");
    }
}
