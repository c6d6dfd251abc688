//! The registry, JSONPath handling and the measurement of a value, without servers (the
//! providers against real servers are in `tests/analysis_providers.rs`).

use serde_json::json;

use super::{web::*, *};
use crate::analysis::{evaluator::Evaluator, limits::AnalysisLimits};

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
    let dd = metric(json!({"name": "d", "provider": {"datadog": {"query": "x"}}}));
    assert_eq!(providers.for_metric(&prom).unwrap().kind(), "prometheus");
    assert_eq!(providers.for_metric(&web).unwrap().kind(), "web");
    assert!(matches!(
        providers.for_metric(&job),
        Err(ProviderError::NoClient)
    ));
    let e = providers.for_metric(&dd).err().expect("unsupported");
    assert!(
        e.to_string().contains("datadog provider is not supported"),
        "{e}"
    );
    assert_eq!(unsupported(&dd.provider), Some("datadog"));
    assert_eq!(unsupported(&prom.provider), None);
    assert_eq!(
        providers.metadata_of(&prom),
        BTreeMap::from([(prometheus::RESOLVED_QUERY_KEY.to_owned(), "up".to_owned())])
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
    let dd = metric(json!({"name": "d", "provider": {"datadog": {"query": "x"}}}));
    let m = providers.measure(&RunRef::default(), &dd, 1).await;
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
