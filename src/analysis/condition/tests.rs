//! Every expression form Argo Rollouts users write, on scalars, vectors, NaN, empty results and
//! JSON values.

use serde_json::json;

use super::*;

fn eval(condition: &str, value: impl Into<MetricValue>) -> bool {
    let value = value.into();
    compile(condition)
        .unwrap_or_else(|e| panic!("{condition} should compile: {e}"))
        .evaluate(&value)
        .unwrap_or_else(|e| panic!("{condition} on {value:?}: {e}"))
}

fn eval_err(condition: &str, value: impl Into<MetricValue>) -> ConditionError {
    let value = value.into();
    match compile(condition).and_then(|c| c.evaluate(&value)) {
        Ok(b) => panic!("{condition} on {value:?} should fail, gave {b}"),
        Err(e) => e,
    }
}

fn web(value: serde_json::Value) -> MetricValue {
    MetricValue::from(&value)
}

#[test]
fn indexes_a_vector() {
    assert!(eval("result[0] >= 0.95", vec![0.97]));
    assert!(!eval("result[0] >= 0.95", vec![0.5]));
    assert!(eval("result[1] < 10", vec![0.5, 3.0]));
}

#[test]
fn compares_a_scalar_with_and_or() {
    assert!(eval("result > 0.9 && result < 1.1", 1.0));
    assert!(!eval("result > 0.9 && result < 1.1", 1.2));
    assert!(eval("result < 0.1 || result > 0.9", 0.95));
    assert!(eval("result == 1", 1.0), "a float equals the same integer");
    assert!(eval("not (result > 2)", 1.0));
}

#[test]
fn empty_results() {
    assert!(eval("len(result) == 0", Vec::<f64>::new()));
    assert!(!eval("len(result) == 0", vec![1.0]));
    assert!(eval(
        "len(result) == 0 || result[0] < 0.05",
        Vec::<f64>::new()
    ));
    let e = eval_err("result[0] >= 0.95", Vec::<f64>::new());
    assert!(matches!(e, ConditionError::Evaluate { .. }), "{e}");
}

#[test]
fn nan_and_infinity() {
    assert!(eval("isNaN(result)", f64::NAN));
    assert!(!eval("isNaN(result)", 0.5));
    assert!(eval("isNaN(result[0])", vec![f64::NAN]));
    assert!(eval("isInf(result)", f64::INFINITY));
    assert!(eval("isInf(result)", f64::NEG_INFINITY));
    assert!(!eval("isInf(result)", 1.0));
    // NaN compares false with everything, as in Go.
    assert!(!eval("result[0] >= 0.95", vec![f64::NAN]));
    assert!(!eval("result[0] < 0.95", vec![f64::NAN]));
    let e = eval_err("isNaN(result)", vec![f64::NAN]);
    assert!(e.to_string().contains("isNaN(result[0])"), "{e}");
}

#[test]
fn predicates_over_vectors() {
    assert!(eval("all(result, {# < 100})", vec![1.0, 99.0]));
    assert!(!eval("all(result, {# < 100})", vec![1.0, 100.0]));
    assert!(eval("any(result, {# > 5})", vec![1.0, 6.0]));
    assert!(eval("all(result, {# < 100})", Vec::<f64>::new()));
    assert!(eval(
        "len(filter(result, {# > 1})) == 2",
        vec![1.0, 2.0, 3.0]
    ));
}

#[test]
fn default_replaces_nil() {
    assert!(eval("default(result, 0) < 5", web(json!(null))));
    assert!(!eval("default(result, 10) < 5", web(json!(null))));
    assert!(eval("default(result, 10) < 5", web(json!(3))));
    assert!(eval("isNil(result)", web(json!(null))));
    assert!(!eval("isNil(result)", 1.0));
}

#[test]
fn conversions() {
    assert!(eval("asInt(result) == 42", web(json!("42"))));
    assert!(eval("asFloat(result) > 0.5", web(json!("0.75"))));
    assert!(eval("asInt(result) == 2", 2.9));
    assert!(eval("asFloat(result) == 3", web(json!(3))));
    assert!(eval("isNaN(asFloat(result))", web(json!("NaN"))));
    let e = eval_err("asInt(result) == 1", web(json!("one")));
    assert!(e.to_string().contains("not a whole number"), "{e}");
}

#[test]
fn json_values_from_web_metrics() {
    let body = web(json!({"ok": true, "successPercent": 0.95, "items": [1, 2]}));
    assert!(eval(
        "result.ok && result.successPercent >= 0.90",
        body.clone()
    ));
    assert!(eval("len(result.items) == 2", body.clone()));
    assert!(eval("result == true", web(json!(true))));
    assert!(eval("result == \"healthy\"", web(json!("healthy"))));
}

#[test]
fn parse_errors_are_reported_at_compile_time() {
    for bad in ["result >=", "result[0 >= 1", "&& result", ""] {
        match compile(bad) {
            Err(ConditionError::Parse { condition, .. }) => assert_eq!(condition, bad),
            other => panic!("{bad:?} should not parse, got {other:?}"),
        }
    }
}

#[test]
fn unknown_functions_are_reported_at_compile_time() {
    match compile("isNan(result)") {
        Err(e @ ConditionError::UnknownFunction { .. }) => {
            assert!(e.to_string().contains("isNan()"), "{e}");
        }
        other => panic!("should be refused, got {other:?}"),
    }
    compile("all(result, {isNaN(#)}) || len(result) == 0").expect("known functions");
}

#[test]
fn non_boolean_results_are_errors() {
    let e = eval_err("result[0] + 1", vec![1.0]);
    assert!(matches!(e, ConditionError::NotBoolean { .. }), "{e}");
    assert!(e.to_string().contains("true or false"), "{e}");
}

#[test]
fn unknown_variables_are_evaluation_errors() {
    let e = eval_err("results[0] > 1", vec![1.0]);
    assert!(e.to_string().contains("results"), "{e}");
}

fn metric(success: Option<&str>, failure: Option<&str>) -> Metric {
    serde_json::from_value(json!({
        "name": "m",
        "successCondition": success,
        "failureCondition": failure,
        "provider": {"web": {"url": "http://x"}},
    }))
    .expect("a metric")
}

#[test]
fn measurement_phase_follows_argo() {
    use AnalysisPhase::*;
    let v = |f: f64| MetricValue::from(f);
    let cases = [
        // (success, failure, value, phase)
        (None, None, 1.0, Successful),
        (Some("result > 0.5"), None, 1.0, Successful),
        (Some("result > 0.5"), None, 0.1, Failed),
        (None, Some("result > 0.5"), 1.0, Failed),
        (None, Some("result > 0.5"), 0.1, Successful),
        (Some("result > 0.5"), Some("result < 0.2"), 1.0, Successful),
        (Some("result > 0.5"), Some("result < 0.2"), 0.1, Failed),
        (
            Some("result > 0.5"),
            Some("result < 0.2"),
            0.3,
            Inconclusive,
        ),
        // Both true: failure wins.
        (Some("result > 0"), Some("result > 0"), 1.0, Failed),
    ];
    for (success, failure, value, phase) in cases {
        assert_eq!(
            assess(&metric(success, failure), &v(value)).unwrap(),
            phase,
            "success={success:?} failure={failure:?} value={value}"
        );
    }
    // Empty strings count as absent.
    assert_eq!(
        assess(&metric(Some(""), Some("  ")), &v(0.0)).unwrap(),
        Successful
    );
    // An evaluation error is an error, not a verdict.
    assert!(assess(&metric(Some("result[0] > 1"), None), &v(1.0)).is_err());
}

#[test]
fn validation_catches_either_condition() {
    assert!(validate_metric(&metric(Some("result > 1"), Some("result < 0"))).is_ok());
    assert!(validate_metric(&metric(Some("result >"), None)).is_err());
    assert!(validate_metric(&metric(None, Some("bogus(result)"))).is_err());
}

#[test]
fn values_display_like_argo() {
    assert_eq!(display(&vec![0.5, f64::NAN].into()), "[0.5,NaN]");
    assert_eq!(display(&f64::INFINITY.into()), "+Inf");
    assert_eq!(display(&web(json!({"a": [1, "x"]}))), "{\"a\":[1,\"x\"]}");
    assert_eq!(format_float(1e21), "1000000000000000000000");
}
