//! Template merging, argument resolution and placeholder substitution.

use k8s_openapi::ByteString;
use serde_json::json;
use sluice_api::{IntOrString, MetricProvider};

use super::*;

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

/// Resolved arguments with one Secret value, `token`.
fn with_secret(value: &str) -> ResolvedArgs {
    let secrets: BTreeMap<String, Secret> =
        [("creds".to_owned(), secret(&[("token", value)]))].into();
    resolve_args(&[secret_arg("token", "creds", "token")], &secrets, None).unwrap()
}

#[test]
fn a_secret_is_redacted_when_base64_encoded() {
    let value = "s3cr3t-p@ss";
    let resolved = with_secret(value);
    // Alone, in both alphabets, with and without padding.
    let alone = redact::base64(value.as_bytes());
    assert_eq!(resolved.redact(&format!("token {alone}")), "token *****");
    let bare = alone.trim_end_matches('=');
    assert!(!resolved.redact(&format!("token {bare}.")).contains(bare));
    // Inside Basic credentials, at each alignment a user name may give it.
    for user in ["a", "ab", "abc"] {
        let basic = redact::base64(format!("{user}:{value}").as_bytes());
        let line = resolved.redact(&format!("401 for Authorization: Basic {basic}"));
        let masked = line.split_whitespace().last().unwrap_or_default();
        let (before, after) = masked
            .split_once("*****")
            .unwrap_or_else(|| panic!("{user}: nothing masked in {line}"));
        // Left: the characters of the user name (one of them sharing bits with the secret),
        // and at most two sharing bits with the secret's end.
        assert!(
            before.len() <= (8 * (user.len() + 1)).div_ceil(6),
            "{user}: {line}"
        );
        assert!(after.trim_end_matches('=').len() <= 2, "{user}: {line}");
    }
    // A value outside ASCII, in the URL-safe alphabet.
    let odd = "ü?>ü?>s3cr3t";
    let encoded = redact::base64_url(odd.as_bytes());
    assert!(encoded.contains('_'), "{encoded}");
    assert_eq!(with_secret(odd).redact(&format!("k={encoded}")), "k=*****");
}

#[test]
fn a_secret_is_redacted_when_percent_encoded() {
    let resolved = with_secret("p@ss w/rd&=ключ");
    for line in [
        "GET https://x/?key=p%40ss%20w%2Frd%26%3D%D0%BA%D0%BB%D1%8E%D1%87 failed",
        "GET https://x/?key=p%40ss+w%2frd%26%3d%d0%ba%d0%bb%d1%8e%d1%87 failed",
        // Encoded in part, as a URL parser leaves `@` and `/` in a query.
        "GET https://x/?key=p@ss%20w/rd%26%3D%D0%BA%D0%BB%D1%8E%D1%87 failed",
    ] {
        assert_eq!(
            resolved.redact(line),
            "GET https://x/?key=***** failed",
            "{line}"
        );
    }
}

#[test]
fn a_secret_is_redacted_when_json_escaped() {
    let value = "tok\"en\\with/\n\u{1}ключ😀";
    let resolved = with_secret(value);
    // serde_json's escaping, inside a body quoted in a message.
    let json = serde_json::to_string(&json!({ "token": value })).unwrap();
    assert_eq!(
        resolved.redact(&format!("received {json}")),
        "received {\"token\":\"*****\"}"
    );
    // Escaping everything outside ASCII, with `/` escaped, as other encoders do.
    let ascii = "tok\\\"en\\\\with\\/\\n\\u0001\\u043a\\u043b\\u044e\\u0447\\ud83d\\ude00";
    assert_eq!(resolved.redact(&format!("[{ascii}]")), "[*****]");
    let upper = ascii
        .replace("\\u043a", "\\u043A")
        .replace("\\ud83d", "\\uD83D");
    assert_eq!(resolved.redact(&format!("[{upper}]")), "[*****]");
    // Rust's Debug formatting of the value, as `{:?}` in a message writes it.
    assert_eq!(
        resolved.redact(&format!("value {value:?}")),
        "value \"*****\""
    );
}

#[test]
fn redaction_leaves_text_without_the_secret_alone() {
    let resolved = with_secret("s3cr3t");
    let text = "no secret here: s3cr3 and 3cr3t, %73%33%63, czNjcjN";
    assert_eq!(resolved.redact(text), text);
    assert_eq!(resolved.redact("s3cr3ts3cr3t"), "**********");
    assert!(!resolved.redact("ключ s3cr3t ключ").contains("s3cr3t"));
    let none = resolve_args(&[arg("a", Some("s3cr3t"))], &NoSecrets, None).unwrap();
    assert!(!none.has_secrets());
    assert_eq!(none.redact("s3cr3t"), "s3cr3t");
}

#[test]
fn composed_templates_bring_the_metrics_they_include_once_and_within_a_bound() {
    let templates: BTreeMap<&str, AnalysisTemplateSpec> = BTreeMap::from([
        (
            "top",
            template(json!({
                "templates": [{"templateName": "errors"}, {"templateName": "latency", "clusterScope": true}],
                "metrics": [{"name": "top", "provider": {"web": {"url": "http://x"}}}],
            })),
        ),
        // Both include `base`: it is read once.
        (
            "errors",
            template(json!({
                "templates": [{"templateName": "base"}],
                "metrics": [{"name": "errors", "provider": {"web": {"url": "http://x"}}}],
            })),
        ),
        (
            "latency",
            template(json!({
                "templates": [{"templateName": "base"}, {"templateName": "top"}],
                "metrics": [{"name": "latency", "provider": {"web": {"url": "http://x"}}}],
            })),
        ),
        (
            "base",
            template(json!({
                "args": [{"name": "service"}],
                "metrics": [{"name": "base", "provider": {"web": {"url": "http://x/{{args.service}}"}}}],
            })),
        ),
    ]);
    let refs: Vec<AnalysisTemplateRef> =
        serde_json::from_value(json!([{"templateName": "top"}])).unwrap();
    let found = lookup_templates(&refs, |r| templates.get(r.template_name.as_str())).unwrap();
    let merged = flatten_templates(&found).unwrap();
    let names: Vec<&str> = merged.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["top", "errors", "base", "latency"]);
    assert_eq!(merged.args, [arg("service", None)]);

    // An included template that does not exist is named.
    let e = lookup_templates(&refs, |r| {
        (r.template_name != "base")
            .then(|| templates.get(r.template_name.as_str()))
            .flatten()
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "AnalysisTemplate \"base\" not found");

    // A chain longer than the bound is refused, not followed.
    let chain: Vec<AnalysisTemplateSpec> = (0..=MAX_TEMPLATES)
        .map(|i| {
            template(json!({
                "templates": [{"templateName": format!("t{}", i + 1)}],
                "metrics": [{"name": format!("m{i}"), "provider": {"web": {"url": "http://x"}}}],
            }))
        })
        .collect();
    let start: Vec<AnalysisTemplateRef> =
        serde_json::from_value(json!([{"templateName": "t0"}])).unwrap();
    let e = lookup_templates(&start, |r| {
        r.template_name[1..]
            .parse::<usize>()
            .ok()
            .and_then(|i| chain.get(i))
    })
    .unwrap_err();
    assert_eq!(e, ArgsError::TooManyTemplates);
}
