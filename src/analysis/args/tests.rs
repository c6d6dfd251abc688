//! Template merging, argument resolution and placeholder substitution.

use k8s_openapi::ByteString;
use serde_json::json;

use super::*;
use crate::api::{IntOrString, MetricProvider};

fn template(value: serde_json::Value) -> AnalysisTemplateSpec {
    serde_json::from_value(value).expect("a template spec")
}

fn arg(name: &str, value: Option<&str>) -> Argument {
    Argument {
        name: name.to_owned(),
        value: value.map(str::to_owned),
        value_from: None,
    }
}

fn secret_arg(name: &str, secret: &str, key: &str) -> Argument {
    serde_json::from_value(json!({
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
    }))
    .expect("an argument")
}

fn prometheus_metric(name: &str, query: &str) -> serde_json::Value {
    json!({"name": name, "provider": {"prometheus": {"address": "http://p:9090", "query": query}}})
}

#[test]
fn flattening_concatenates_metrics_and_refuses_duplicates() {
    let a = template(json!({"metrics": [prometheus_metric("a", "up")], "args": [{"name": "x"}]}));
    let b = template(json!({
        "metrics": [prometheus_metric("b", "up")],
        "args": [{"name": "x", "value": "1"}, {"name": "y", "value": "2"}],
        "dryRun": [{"metricName": "b"}],
    }));
    let merged = flatten_templates(&[&a, &b]).unwrap();
    let names: Vec<_> = merged.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(merged.args, [arg("x", Some("1")), arg("y", Some("2"))]);
    assert_eq!(merged.dry_run.len(), 1);

    let dup = template(json!({"metrics": [prometheus_metric("a", "down")]}));
    assert_eq!(
        flatten_templates(&[&a, &dup]),
        Err(ArgsError::DuplicateMetric("a".into()))
    );
}

#[test]
fn flattening_refuses_one_argument_with_two_values() {
    let a = template(json!({"metrics": [], "args": [{"name": "x", "value": "1"}]}));
    let b = template(json!({"metrics": [], "args": [{"name": "x", "value": "2"}]}));
    let e = flatten_templates(&[&a, &b]).unwrap_err();
    assert!(e.to_string().contains("different values"), "{e}");
    // The same value twice is fine, and a value is not lost to a later open argument.
    let c = template(json!({"metrics": [], "args": [{"name": "x"}]}));
    let merged = flatten_templates(&[&a, &a, &c]).unwrap();
    assert_eq!(merged.args, [arg("x", Some("1"))]);
}

#[test]
fn missing_templates_are_named() {
    let refs: Vec<AnalysisTemplateRef> = serde_json::from_value(json!([
        {"templateName": "present"},
        {"templateName": "absent", "clusterScope": true},
    ]))
    .unwrap();
    let present = template(json!({"metrics": []}));
    let e = lookup_templates(&refs, |r| {
        (r.template_name == "present").then_some(&present)
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ClusterAnalysisTemplate \"absent\" not found"
    );
}

fn rollout_json() -> serde_json::Value {
    json!({
        "metadata": {
            "name": "web",
            "labels": {"app": "web", "example.com/team": "blue"},
        },
        "spec": {
            "replicas": 3,
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}},
        },
    })
}

#[test]
fn run_spec_merges_rollout_arguments_into_the_template() {
    let template = template(json!({
        "metrics": [prometheus_metric("m", "up")],
        "args": [
            {"name": "service"},
            {"name": "threshold", "value": "0.9"},
            {"name": "app"},
            {"name": "hash"},
            {"name": "token", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "dryRun": [{"metricName": "m"}],
    }));
    let analysis: RolloutAnalysis = serde_json::from_value(json!({
        "args": [
            {"name": "service", "value": "web-canary"},
            {"name": "threshold", "value": "0.95"},
            {"name": "app", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": "undeclared", "value": "ignored"},
        ],
        "measurementRetention": [{"metricName": "m", "limit": 20}],
    }))
    .unwrap();
    let rollout = rollout_json();
    let values = RolloutValues {
        rollout: &rollout,
        stable_hash: Some("aaa"),
        latest_hash: Some("bbb"),
    };
    let spec = run_spec(&template, &analysis, values).unwrap();
    let got: Vec<_> = spec
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("service", Some("web-canary")),
            ("threshold", Some("0.95")),
            ("app", Some("web")),
            ("hash", Some("bbb")),
            ("token", None),
        ]
    );
    assert!(
        spec.args[4].value_from.is_some(),
        "the Secret is read when measuring"
    );
    assert_eq!(spec.dry_run.len(), 1);
    assert_eq!(spec.measurement_retention[0].limit, 20);
}

#[test]
fn a_required_argument_without_value_is_an_error() {
    let template = template(json!({"metrics": [], "args": [{"name": "service"}]}));
    let rollout = rollout_json();
    let values = RolloutValues {
        rollout: &rollout,
        stable_hash: None,
        latest_hash: None,
    };
    let e = run_spec(&template, &RolloutAnalysis::default(), values).unwrap_err();
    assert_eq!(e, ArgsError::MissingArg("service".into()));
    assert!(
        e.to_string().contains("args.service was not resolved"),
        "{e}"
    );

    let analysis: RolloutAnalysis = serde_json::from_value(json!({
        "args": [{"name": "service", "valueFrom": {"podTemplateHashValue": "Stable"}}],
    }))
    .unwrap();
    let e = run_spec(&template, &analysis, values).unwrap_err();
    assert!(matches!(e, ArgsError::PodTemplateHashUnknown { .. }), "{e}");
}

#[test]
fn field_paths() {
    let r = rollout_json();
    assert_eq!(field_value(&r, "metadata.name").unwrap(), "web");
    assert_eq!(field_value(&r, "metadata.labels['app']").unwrap(), "web");
    assert_eq!(
        field_value(&r, "metadata.labels[\"example.com/team\"]").unwrap(),
        "blue"
    );
    assert_eq!(
        field_value(&r, "spec.template.spec.containers[0].image").unwrap(),
        "nginx:1.27"
    );
    assert_eq!(field_value(&r, ".spec.replicas").unwrap(), "3");
    assert!(
        field_value(&r, "metadata.labels['missing']")
            .unwrap_err()
            .contains("missing")
    );
    assert!(field_value(&r, "spec.template.spec.containers[3]").is_err());
    let e = field_value(&r, "metadata.labels").unwrap_err();
    assert!(e.contains("single value"), "{e}");
    for bad in [
        "",
        "metadata.",
        "metadata..name",
        "metadata.labels[app]",
        "a[0",
    ] {
        assert!(field_value(&r, bad).is_err(), "{bad:?} should be refused");
    }
}

fn secret(data: &[(&str, &str)]) -> Secret {
    Secret {
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

#[test]
fn secrets_are_read_and_redacted() {
    let secrets: BTreeMap<String, Secret> =
        [("creds".to_owned(), secret(&[("token", "s3cr3t")]))].into();
    let args = [
        arg("service", Some("web")),
        secret_arg("token", "creds", "token"),
    ];
    assert_eq!(secret_names(&args), ["creds"]);
    let resolved = resolve_args(&args, &secrets, None).unwrap();
    assert_eq!(resolved.get("token"), Some("s3cr3t"));
    assert_eq!(
        resolved.redact("401 for Bearer s3cr3t"),
        "401 for Bearer *****"
    );

    let e = resolve_args(&[secret_arg("t", "nope", "token")], &secrets, None).unwrap_err();
    assert_eq!(e.to_string(), "args.t: Secret \"nope\" not found");
    let e = resolve_args(&[secret_arg("t", "creds", "nokey")], &secrets, None).unwrap_err();
    assert!(
        e.to_string().contains("key \"nokey\" does not exist"),
        "{e}"
    );
    assert!(!e.is_transient());

    let failing = |_: &str| -> Result<Option<Secret>, String> { Err("connection refused".into()) };
    let e = resolve_args(&[secret_arg("t", "creds", "token")], &failing, None).unwrap_err();
    assert!(e.is_transient(), "{e}");

    let validated = resolve_args_without_secrets(&args).unwrap();
    assert_eq!(validated.get("token"), Some(SECRET_PLACEHOLDER));
}

#[test]
fn field_refs_left_in_a_run_are_read_from_the_rollout() {
    let args: Vec<Argument> = serde_json::from_value(json!([
        {"name": "app", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
    ]))
    .unwrap();
    let r = rollout_json();
    let resolved = resolve_args(&args, &NoSecrets, Some(&r)).unwrap();
    assert_eq!(resolved.get("app"), Some("web"));
    assert!(resolve_args(&args, &NoSecrets, None).is_err());
    assert_eq!(
        resolve_args(&[arg("x", None)], &NoSecrets, None),
        Err(ArgsError::MissingArg("x".into()))
    );
}

fn resolved(pairs: &[(&str, &str)]) -> ResolvedArgs {
    let args: Vec<_> = pairs.iter().map(|(n, v)| arg(n, Some(v))).collect();
    resolve_args(&args, &NoSecrets, None).unwrap()
}

#[test]
fn substitution_accepts_spaces_and_refuses_unknown_placeholders() {
    let args = resolved(&[("service", "web"), ("n", "3")]);
    assert_eq!(
        substitute("rate{svc=\"{{args.service}}\"}[{{ args.n }}m]", &args).unwrap(),
        "rate{svc=\"web\"}[3m]"
    );
    assert_eq!(
        substitute("no placeholders {x}", &args).unwrap(),
        "no placeholders {x}"
    );
    let e = substitute("{{args.missing}}", &args).unwrap_err();
    assert_eq!(e.to_string(), "failed to resolve {{args.missing}}");
    assert!(substitute("{{workflow.name}}", &args).is_err());
    assert!(matches!(
        substitute("{{args.service", &args),
        Err(ArgsError::Unterminated { .. })
    ));
}

#[test]
fn every_field_of_a_metric_is_substituted() {
    let metric: Metric = serde_json::from_value(json!({
        "name": "m",
        "count": "{{args.count}}",
        "successCondition": "result[0] < {{args.threshold}}",
        "provider": {"web": {
            "url": "http://{{args.host}}/q",
            "headers": [{"key": "Authorization", "value": "Bearer {{ args.token }}"}],
        }},
    }))
    .unwrap();
    let args = resolved(&[
        ("count", "5"),
        ("threshold", "0.1"),
        ("host", "svc"),
        ("token", "t"),
    ]);
    let out = substitute_metric(&metric, &args).unwrap();
    assert_eq!(out.count, Some(IntOrString::String("5".into())));
    assert_eq!(out.count.as_ref().and_then(IntOrString::as_int), Some(5));
    assert_eq!(out.success_condition.as_deref(), Some("result[0] < 0.1"));
    let MetricProvider::Web(web) = &out.provider else {
        panic!("a web metric")
    };
    assert_eq!(web.url, "http://svc/q");
    assert_eq!(web.headers[0].value, "Bearer t");

    let e = substitute_metric(&metric, &resolved(&[])).unwrap_err();
    assert!(e.to_string().contains("in metric \"m\""), "{e}");
}
