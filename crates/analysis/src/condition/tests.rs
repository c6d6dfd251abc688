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
fn the_member_shorthand_reads_the_predicates_element() {
    let values = web(json!([{ "value": "9950" }, { "value": "9990" }]));
    assert!(eval(
        "all(result, {asFloat(.value) >= 9900})",
        values.clone()
    ));
    assert!(!eval(
        "all(result, {asFloat(.value) >= 9960})",
        values.clone()
    ));
    assert!(eval("any(result, {.value == \"9990\"})", values));
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
    assert!(Conditions::of(&metric(Some("result > 1"), Some("result < 0"))).is_ok());
    assert!(Conditions::of(&metric(Some("result >"), None)).is_err());
    assert!(Conditions::of(&metric(None, Some("bogus(result)"))).is_err());
}

#[test]
fn values_display_like_argo() {
    assert_eq!(display(&vec![0.5, f64::NAN].into()), "[0.5,NaN]");
    assert_eq!(display(&f64::INFINITY.into()), "+Inf");
    assert_eq!(display(&web(json!({"a": [1, "x"]}))), "{\"a\":[1,\"x\"]}");
    assert_eq!(format_float(1e21), "1000000000000000000000");
}

#[test]
fn oversized_conditions_are_refused_naming_the_limit() {
    let long = format!("result == \"{}\"", "x".repeat(8988));
    assert_eq!(long.len(), 9000);
    let e = compile(&long).expect_err("9000 bytes is past the 4 KiB cap");
    assert!(matches!(e, ConditionError::TooLong { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(
            "condition is 9000 bytes; the limit is 4096 (it starts \"result == \\\"xxx"
        ),
        "{e}"
    );
    // The same condition within a larger budget compiles.
    let roomy = ConditionBudget {
        max_source_bytes: 10_000,
        ..ConditionBudget::default()
    };
    assert!(compile_within(&long, &roomy).is_ok());
    // Argo's budget errors reach validation, hence lint and InvalidSpec.
    assert!(Conditions::of(&metric(Some(&long), None)).is_err());
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let nested = |depth: usize| format!("{}result{} > 0", "(".repeat(depth), ")".repeat(depth));
    compile(&nested(32)).expect("32 levels are allowed");
    let e = compile(&nested(33)).expect_err("33 levels are not");
    assert_eq!(
        e.to_string(),
        format!(
            "condition {:?} nests 33 levels deep; the limit is 32",
            nested(33)
        )
    );
    // Far deeper than pest could recurse: refused from the text, without parsing.
    let huge = ConditionBudget {
        max_source_bytes: usize::MAX,
        max_nodes: usize::MAX,
        ..ConditionBudget::default()
    };
    for deep in [
        nested(200_000),
        format!("{}1", "result ? 1 : ".repeat(50_000)),
        format!("{}1", "result ?? ".repeat(50_000)),
        format!("{}{{1}}", "if true {1} else ".repeat(50_000)),
        format!("{}1", "[".repeat(200_000)),
    ] {
        match compile_within(&deep, &huge) {
            Err(ConditionError::TooDeep { depth, limit, .. }) => {
                assert!(depth >= 50_000, "{depth}");
                assert_eq!(limit, 32);
            }
            other => panic!("should be refused as too deep, got {other:?}"),
        }
    }
    // Brackets, ternaries and `??` that follow each other rather than nest are fine.
    compile(&vec!["(result > 1)"; 40].join(" || ")).expect("sequential brackets");
    compile("(result ? 1 : 2) > 0 && (result ?? 0) > 0").expect("two ternaries");
}

#[test]
fn node_count_is_capped() {
    let sum = |terms: usize| format!("{} > 0", vec!["result"; terms].join(" + "));
    compile(&sum(255)).expect("509 nodes are allowed");
    let e = compile(&sum(300)).expect_err("601 nodes are not");
    assert!(
        matches!(
            e,
            ConditionError::TooManyNodes {
                nodes: 601,
                limit: 512,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().ends_with(
            "has 601 syntax nodes (identifiers, literals, operators, brackets); the limit is 512"
        ),
        "{e}"
    );
    // Comments and strings count once, whatever they hold.
    compile(&format!("/* {} */ result > 0", "a + ".repeat(600))).expect("a comment");
    compile(&format!("result == \"{}\"", "a + ".repeat(600))).expect("a string");
}

#[test]
fn huge_literal_ranges_are_refused() {
    let e = compile("len(0..200000000) > 0").expect_err("200 million numbers");
    assert_eq!(
        e.to_string(),
        "condition \"len(0..200000000) > 0\" builds the range 0..200000000 of 200000001 numbers; the limit is 100000"
    );
    for refused in [
        "len((-200000000)..0) > 0",
        "len(-1 .. 99999) > 0",
        "all(result, {len(0..400000000) > #})",
        "len(-9223372036854775807..9223372036854775807) > 0",
    ] {
        assert!(
            matches!(compile(refused), Err(ConditionError::RangeTooLarge { .. })),
            "{refused}"
        );
    }
    for allowed in [
        "len(1..100000) == 100000",
        "len(-5..5) == 11",
        "len(9..0) == 0",
    ] {
        assert!(eval(allowed, 0.0), "{allowed}");
    }
    // A range that depends on the result is bounded at evaluation, by the worker's budgets.
    compile("len(0..result) > 0").expect("data-dependent ranges compile");
}

#[test]
fn the_debug_form_of_ranges_is_read() {
    let ranges = |source: &str| {
        let program = expr::compile(source).expect("parses");
        caps::literal_ranges(&format!("{program:?}"))
    };
    assert_eq!(ranges("0..9"), vec![(0, 9)]);
    assert_eq!(ranges("-3..+4"), vec![(-3, 4)]);
    assert_eq!(ranges("(1)..(2) == [1, 2]"), vec![(1, 2)]);
    assert_eq!(ranges("0..result"), vec![]);
    assert_eq!(ranges("result[0:9]"), vec![], "slices are not ranges");
    assert_eq!(
        ranges("\"Range(Value(Integer(0)), Value(Integer(99999999)))\" == result"),
        vec![],
        "strings are not code"
    );
}

#[test]
fn the_deepest_trees_the_caps_allow_evaluate_on_the_evaluation_stack() {
    let shapes = [
        format!("result{} == nil", ".a".repeat(250)),
        format!("result{} == nil", "[0]".repeat(250)),
        vec!["true"; 255].join(" && "),
        format!("{} > 0", vec!["1"; 255].join(" + ")),
        format!("{} > 0", vec!["1"; 255].join(" ** ")),
        format!("{} == 1", vec!["1"; 30].join(" ?? ")),
        format!("{}1{} < 0", "-(".repeat(32), ")".repeat(32)),
        format!("{}result{} >= 0", "len([".repeat(16), "])".repeat(16)),
        format!("{}true{}", "all(result, {".repeat(16), "})".repeat(16)),
        format!(
            "{}result{}{} == nil",
            "(".repeat(32),
            ")".repeat(32),
            ".a".repeat(220)
        ),
        format!(
            "{}result{}",
            "(result.a ?? ".repeat(16),
            ")".repeat(16) + &" + 1".repeat(200)
        ),
    ];
    // Compiling happens where validation runs: on async workers, with 2 MiB of stack.
    let compiled = shapes.clone();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for source in compiled {
                compile(&source).unwrap_or_else(|e| panic!("{source}: {e}"));
            }
        })
        .expect("a thread")
        .join()
        .expect("no stack overflow compiling");
    // The stack every evaluator gives an evaluation.
    let outcomes = std::thread::Builder::new()
        .stack_size(EVALUATION_STACK_BYTES)
        .spawn(move || {
            shapes
                .iter()
                .map(|source| {
                    let value = web(json!({"a": null}));
                    (
                        source.clone(),
                        compile(source).and_then(|c| c.evaluate(&value)),
                    )
                })
                .collect::<Vec<_>>()
        })
        .expect("a thread")
        .join()
        .expect("no stack overflow");
    for (source, outcome) in outcomes {
        match outcome {
            Ok(_) | Err(ConditionError::Evaluate { .. } | ConditionError::NotBoolean { .. }) => {}
            Err(e) => panic!("{source}: {e}"),
        }
    }
}

#[test]
fn budgets_are_named_as_people_write_them() {
    let time = ConditionError::TimeBudget {
        condition: "c".into(),
        limit: std::time::Duration::from_millis(500),
    };
    assert_eq!(
        time.to_string(),
        "condition \"c\" exceeded its time budget of 500ms"
    );
    let memory = ConditionError::MemoryBudget {
        condition: "c".into(),
        limit: 64 << 20,
    };
    assert_eq!(
        memory.to_string(),
        "condition \"c\" exceeded its memory budget of 64 MiB"
    );
    assert_eq!(human_duration(&std::time::Duration::from_secs(2)), "2s");
    assert_eq!(human_bytes(1000), "1000 bytes");
}

#[test]
fn text_at_the_caps_compiles_quickly() {
    // PEG parsers backtrack: text that almost parses, as deep as the caps allow, must still
    // be answered at once.
    let shapes = [
        format!("{}result", "f(".repeat(32)),
        format!("{}result", "len(".repeat(32)),
        format!("{}result", "[".repeat(32)),
        format!("{}result", "{".repeat(32)),
        format!("{}result", "(".repeat(32)),
        format!("{}result", "all(result, {".repeat(16)),
        format!("{}result ?", "result ? ".repeat(32)),
        "if result { ".repeat(16),
        format!("{}1)", "[1, ".repeat(32)),
        format!("{}1,", "{a: ".repeat(32)),
        format!("{}x.y(", "a.b(".repeat(32)),
    ];
    for source in shapes {
        let started = std::time::Instant::now();
        let outcome = compile(&source);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "{source:?} took {took:?} to compile ({outcome:?})"
        );
    }
}

#[test]
fn caps_reach_template_validation_and_runs() {
    use crate::rules::{RunRules, validate_template};
    use sluice_api::{AnalysisRunSpec, AnalysisTemplateSpec};
    let spec = json!({"metrics": [{
        "name": "huge",
        "successCondition": "len(0..200000000) > 0",
        "provider": {"web": {"url": "http://x"}},
    }]});
    let template: AnalysisTemplateSpec = serde_json::from_value(spec.clone()).expect("a spec");
    let refused = validate_template(&template).expect_err("refused as lint and the Rollout do");
    assert!(
        refused
            .to_string()
            .contains("builds the range 0..200000000"),
        "{refused}"
    );
    let run: AnalysisRunSpec = serde_json::from_value(spec).expect("a run spec");
    let refused = RunRules::new(&run).expect_err("an Error run");
    assert!(
        refused.to_string().contains("the limit is 100000"),
        "{refused}"
    );
}

#[test]
fn messages_quote_a_long_condition_by_its_start() {
    let deep = format!("{}1{} == 1", "(".repeat(1500), ")".repeat(1500));
    let message = compile(&deep).expect_err("too deep").to_string();
    assert!(message.len() < 300, "{} bytes: {message}", message.len());
    assert!(message.contains("((((…\""), "{message}");
    assert!(
        message.ends_with("nests 1500 levels deep; the limit is 32"),
        "{message}"
    );
    // A short one is quoted whole.
    let short = compile("result >").expect_err("does not parse").to_string();
    assert!(
        short.starts_with("condition \"result >\" does not parse"),
        "{short}"
    );
}
