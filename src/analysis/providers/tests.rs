//! The registry, JSONPath handling and the measurement of a value, without servers (the
//! providers against real servers are in `tests/analysis_providers.rs`).

use serde_json::json;
use sluice_analysis::limits::AnalysisLimits;
use sluice_api::vocab::RESOLVED_QUERY_KEY;

use super::{web::*, *};
use crate::analysis::evaluator::Evaluator;

fn metric(value: serde_json::Value) -> Metric {
    serde_json::from_value(value).expect("a metric")
}

#[test]
fn the_registry_picks_by_provider_key() {
    let providers = Providers::new(
        None,
        &AnalysisLimits::default(),
        Evaluator::new(Default::default()),
    )
    .expect("providers");
    let prom = metric(json!({"name": "p", "provider": {"prometheus": {"query": "up"}}}));
    let web = metric(json!({"name": "w", "provider": {"web": {"url": "http://x"}}}));
    let job = metric(json!({"name": "j", "provider": {"job": {"spec": {"template": {}}}}}));
    let plugin = metric(json!({"name": "d", "provider": {"plugin": {"argoproj-labs/sample": {}}}}));
    assert_eq!(providers.for_metric(&prom).unwrap().kind(), "prometheus");
    assert_eq!(providers.for_metric(&web).unwrap().kind(), "web");
    assert!(matches!(
        providers.for_metric(&job),
        Err(ProviderError::NoClient)
    ));
    let e = providers.for_metric(&plugin).err().expect("unsupported");
    assert!(
        e.to_string().contains("plugin provider is not supported"),
        "{e}"
    );
    assert_eq!(
        sluice_analysis::rules::unsupported(&plugin.provider),
        Some("plugin")
    );
    assert_eq!(sluice_analysis::rules::unsupported(&prom.provider), None);
    assert_eq!(
        providers.metadata_of(&prom),
        BTreeMap::from([(RESOLVED_QUERY_KEY.to_owned(), "up".to_owned())])
    );
}

#[tokio::test]
async fn an_unsupported_provider_measures_as_an_error() {
    let providers = Providers::new(
        None,
        &AnalysisLimits::default(),
        Evaluator::new(Default::default()),
    )
    .expect("providers");
    let plugin = metric(json!({"name": "d", "provider": {"plugin": {"argoproj-labs/sample": {}}}}));
    let m = providers.measure(&RunRef::default(), &plugin, 1).await;
    assert_eq!(m.phase, AnalysisPhase::Error);
    assert!(m.finished_at.is_some());
}

#[test]
fn json_paths_are_accepted_as_argo_users_write_them() {
    let body = br#"{"data": {"ok": true, "items": [{"v": 1}, {"v": 2}]}}"#;
    for written in [
        "{$.data.ok}",
        "{.data.ok}",
        "$.data.ok",
        ".data.ok",
        " { $.data.ok } ",
    ] {
        let path = parse_json_path(Some(written)).expect(written);
        let (value, text) = select(body, &path).expect(written);
        assert_eq!(value, MetricValue::Bool(true), "{written}");
        assert_eq!(text, "true");
    }
    let whole = parse_json_path(None).unwrap();
    assert!(matches!(
        select(body, &whole).unwrap().0,
        MetricValue::Map(_)
    ));
    let first = parse_json_path(Some("{$.data.items[*].v}")).unwrap();
    assert_eq!(select(body, &first).unwrap().0, MetricValue::Int(1));
    let none = parse_json_path(Some("{$.data.missing}")).unwrap();
    assert_eq!(
        select(body, &none).unwrap_err(),
        "result of web metric produced no value"
    );
    assert!(parse_json_path(Some("{$.data[}")).is_err());
}

#[test]
fn a_body_that_is_not_json_is_a_string_result() {
    let path = parse_json_path(None).unwrap();
    let (value, text) = select(b"healthy", &path).unwrap();
    assert_eq!(value, MetricValue::String("healthy".into()));
    assert_eq!(text, "healthy");
}

#[tokio::test]
async fn a_value_is_measured_with_the_conditions() {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let evaluator = Evaluator::new(Default::default());
    let m = metric(json!({
        "name": "m", "successCondition": "result[0] < 0.1",
        "provider": {"prometheus": {"query": "x"}},
    }));
    let ok = measured(&evaluator, &m, &vec![0.05].into(), "[0.05]".into(), now).await;
    assert_eq!(ok.phase, AnalysisPhase::Successful);
    assert_eq!(ok.value.as_deref(), Some("[0.05]"));
    let bad = measured(&evaluator, &m, &vec![0.5].into(), "[0.5]".into(), now).await;
    assert_eq!(bad.phase, AnalysisPhase::Failed);
    let empty = measured(&evaluator, &m, &Vec::<f64>::new().into(), "[]".into(), now).await;
    assert_eq!(
        empty.phase,
        AnalysisPhase::Error,
        "no data is never a success"
    );
    assert!(empty.message.unwrap().contains("result[0] < 0.1"));
    assert_eq!(empty.value.as_deref(), Some("[]"));
}

#[test]
fn termination_finishes_successfully() {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let m = terminated(
        Measurement {
            phase: AnalysisPhase::Running,
            resume_at: Some(Time(now)),
            ..Measurement::default()
        },
        now,
    );
    assert_eq!(m.phase, AnalysisPhase::Successful);
    assert_eq!(m.message.as_deref(), Some("Metric Terminated"));
    assert_eq!((m.finished_at, m.resume_at), (Some(Time(now)), None));
}

#[test]
fn stored_values_and_messages_are_cut_at_a_char_boundary_and_marked() {
    // 'é' is two bytes: a cut at an odd byte count falls inside one and moves back.
    let long = "é".repeat(20_000);
    let cut = body::truncate(long.clone(), 16_385);
    assert!(
        cut.ends_with("…(cut at 16385 bytes)"),
        "{}",
        &cut[cut.len() - 40..]
    );
    let kept = cut.strip_suffix("…(cut at 16385 bytes)").unwrap();
    assert_eq!(kept.len(), 16_384);
    assert!(long.starts_with(kept));
    assert_eq!(body::truncate("short".into(), 16), "short");

    let limits = AnalysisLimits::default();
    let m = bounded(
        Measurement {
            value: Some("x".repeat(5 * 1024 * 1024)),
            message: Some("y".repeat(2 * 1024 * 1024)),
            ..Measurement::default()
        },
        limits.max_value_bytes,
    );
    let value = m.value.unwrap();
    assert!(value.len() < limits.max_value_bytes + 64, "{}", value.len());
    assert!(value.ends_with("…(cut at 16384 bytes)"));
    assert!(m.message.unwrap().len() < limits.max_value_bytes + 64);
}

#[test]
fn allowed_hosts_are_exact_names_or_subdomains_of_a_suffix() {
    let list = vec![
        "metrics.example.com".to_owned(),
        "*.corp.internal".to_owned(),
    ];
    let allowed = Some(list.as_slice());
    for host in [
        "metrics.example.com",
        "METRICS.example.com.",
        "a.corp.internal",
        "a.b.corp.internal",
    ] {
        assert!(body::host_allowed(allowed, host), "{host}");
    }
    for host in [
        "example.com",
        "evil-metrics.example.com",
        "metrics.example.com.evil.io",
        "corp.internal",
        "evilcorp.internal",
        "a.corp.internal.evil.io",
        "127.0.0.1",
        "",
    ] {
        assert!(!body::host_allowed(allowed, host), "{host}");
    }
    assert!(body::host_allowed(None, "anything.at.all"));
    assert!(!body::host_allowed(Some(&[]), "metrics.example.com"));
    let url = reqwest::Url::parse("http://127.0.0.1:9090/x").unwrap();
    assert_eq!(
        body::check_host(allowed, &url).unwrap_err(),
        "host 127.0.0.1 is not in the controller's allowed hosts for web metrics"
    );
}

#[test]
fn redirects_stay_on_the_same_host_port_and_never_leave_https() {
    let url = |u: &str| reqwest::Url::parse(u).unwrap();
    let from = url("https://metrics.example.com/api?x=1");
    assert_eq!(
        body::redirect_refusal(&from, &url("https://METRICS.example.com:443/v2/api")),
        None
    );
    for to in [
        "http://metrics.example.com/api",
        "https://other.example.com/api",
        "https://metrics.example.com:8443/api",
    ] {
        let refusal = body::redirect_refusal(&from, &url(to));
        assert!(
            refusal.as_deref().is_some_and(|r| r.contains("refused")),
            "{to}: {refusal:?}"
        );
    }
    let plain = url("http://127.0.0.1:8080/a");
    assert_eq!(
        body::redirect_refusal(&plain, &url("http://127.0.0.1:8080/b")),
        None
    );
    assert!(body::redirect_refusal(&plain, &url("http://127.0.0.2:8080/b")).is_some());
    assert!(body::redirect_refusal(&plain, &url("http://127.0.0.1:8081/b")).is_some());
}

#[test]
fn timeouts_never_exceed_the_controllers_cap() {
    use std::time::Duration;
    let max = Duration::from_secs(60);
    let default = Duration::from_secs(10);
    assert_eq!(body::capped_timeout(None, default, max), default);
    assert_eq!(body::capped_timeout(Some(0), default, max), default);
    assert_eq!(body::capped_timeout(Some(-5), default, max), default);
    assert_eq!(
        body::capped_timeout(Some(30), default, max),
        Duration::from_secs(30)
    );
    assert_eq!(body::capped_timeout(Some(86_400), default, max), max);
    assert_eq!(body::capped_timeout(Some(i64::MAX), default, max), max);
    assert_eq!(body::show_duration(Duration::from_secs(3)), "3s");
    assert_eq!(body::show_duration(Duration::from_millis(1500)), "1500ms");
}
