//! Fuzzing of what users write: the duration and int-or-string parsers on arbitrary text, and
//! Rollouts, AnalysisTemplates and AnalysisRuns read from arbitrary JSON and from the
//! fixtures with random fields replaced, then validated as the controller and `kubectl sluice
//! lint` would. None may panic.
//!
//! Cases per property: `PROPTEST_CASES`, else [`DEFAULT_CASES`].

use proptest::{prelude::*, strategy::Strategy, test_runner::Config};
use serde_json::{Map, Value};

use sluice_api::{
    AnalysisRun, AnalysisTemplate, Duration, IntOrPercent, IntOrString, Rollout, validate,
};

use crate::rules::{RunRules, validate_template};

/// Numbers at the edges of the API's ranges.
const EDGE_NUMBERS: &[i64] = &[-1, 0, 1, 2, 100, i32::MAX as i64 + 1];

/// Cases per property when `PROPTEST_CASES` does not say.
const DEFAULT_CASES: u32 = 1_000;

/// The configuration of every property (this module's and the condition language's):
/// `PROPTEST_CASES` or `default_cases`, with no regression files written into the source tree.
pub(crate) fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Text that looks like a duration, or nearly: numbers of any size, fractions, units known
/// and not, signs, in any order.
fn duration_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[0-9]{1,30}",
        "[0-9]{0,25}\\.[0-9]{0,40}",
        prop::sample::select(
            &[
                "ns", "us", "µs", "μs", "ms", "s", "m", "h", "d", "", ".", "+", "-", " ", "e", "µ"
            ][..]
        )
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// Any JSON value: scalars of every kind and size, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(EDGE_NUMBERS).prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::String),
        duration_like().prop_map(Value::String),
        prop::sample::select(
            &[
                "25%",
                "-5%",
                "150%",
                "%",
                "4294967296%",
                "{{args.x}}",
                "",
                "result[0] > 1",
                "len(0..200000000) > 0",
                "Latest",
                "Stable",
                "*",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        "[a-zA-Z]{1,12}",
                        prop::sample::select(FIELD_NAMES).prop_map(str::to_owned)
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names of the API, so random objects sometimes hit real fields.
const FIELD_NAMES: &[&str] = &[
    "replicas",
    "steps",
    "setWeight",
    "pause",
    "duration",
    "maxSurge",
    "maxUnavailable",
    "canary",
    "blueGreen",
    "strategy",
    "analysis",
    "templates",
    "templateName",
    "args",
    "metrics",
    "name",
    "interval",
    "count",
    "failureLimit",
    "successCondition",
    "failureCondition",
    "provider",
    "prometheus",
    "web",
    "job",
    "query",
    "url",
    "spec",
    "selector",
    "template",
    "progressDeadlineSeconds",
    "minReadySeconds",
    "scaleDownDelaySeconds",
    "activeService",
    "previewService",
    "setCanaryScale",
    "weight",
    "matchTrafficWeight",
];

/// One change to a document: where (child picks at each level) and what.
#[derive(Clone, Debug)]
struct Mutation {
    /// At each level, which child to step into (modulo their number).
    path: Vec<usize>,
    /// Remove the field instead of replacing it.
    remove: bool,
    /// The replacement.
    value: Value,
}

/// Random mutations.
fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        (
            prop::collection::vec(any::<usize>(), 0..10),
            prop::bool::weighted(0.2),
            json(),
        )
            .prop_map(|(path, remove, value)| Mutation {
                path,
                remove,
                value,
            }),
        1..6,
    )
}

/// Applies a mutation to a document.
fn mutate(document: &mut Value, mutation: &Mutation) {
    mutate_at(document, &mutation.path, mutation);
}

/// Applies a mutation below `node`, following `path`.
fn mutate_at(node: &mut Value, path: &[usize], mutation: &Mutation) {
    let Some((pick, rest)) = path.split_first() else {
        *node = mutation.value.clone();
        return;
    };
    match node {
        Value::Object(map) if !map.is_empty() => {
            let Some(key) = map.keys().nth(pick % map.len()).cloned() else {
                return;
            };
            if rest.is_empty() && mutation.remove {
                map.remove(&key);
            } else if let Some(child) = map.get_mut(&key) {
                mutate_at(child, rest, mutation);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let at = pick % items.len();
            if rest.is_empty() && mutation.remove {
                items.remove(at);
            } else {
                mutate_at(&mut items[at], rest, mutation);
            }
        }
        _ => *node = mutation.value.clone(),
    }
}

/// A fixture as JSON.
fn fixture_json(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/api/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Reads a Rollout and checks it as the controller does; it must not panic.
fn check_rollout(document: Value) {
    if let Ok(rollout) = serde_json::from_value::<Rollout>(document) {
        let problems = validate(&rollout);
        for problem in &problems {
            assert!(!problem.to_string().is_empty());
        }
        let written = serde_json::to_value(&rollout).expect("a Rollout serialises");
        // What was read and written back reads again.
        serde_json::from_value::<Rollout>(written).expect("a written Rollout reads back");
    }
}

/// Reads an AnalysisTemplate and validates it as the Rollout wiring and lint do.
fn check_template(document: Value) {
    if let Ok(template) = serde_json::from_value::<AnalysisTemplate>(document) {
        if let Err(e) = validate_template(&template.spec) {
            assert!(!e.to_string().is_empty());
        }
        serde_json::to_value(&template).expect("a template serialises");
    }
}

/// Reads an AnalysisRun and reads its rules as the run controller does.
fn check_run(document: Value) {
    if let Ok(run) = serde_json::from_value::<AnalysisRun>(document) {
        if let Err(e) = RunRules::new(&run.spec) {
            assert!(!e.to_string().is_empty());
        }
        serde_json::to_value(&run).expect("a run serialises");
    }
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn durations_never_panic(text in prop_oneof!["\\PC{0,40}", duration_like()]) {
        if let Ok(duration) = Duration::parse(&text) {
            // What parses prints back as written, and parses to the same length.
            prop_assert_eq!(duration.to_string(), text.clone());
            prop_assert_eq!(Duration::parse(&duration.to_string()).ok(), Some(duration.clone()));
            let _ = duration.as_secs();
        }
        let _ = serde_json::from_value::<Duration>(Value::String(text));
    }

    #[test]
    fn int_or_strings_never_panic(
        text in prop_oneof!["\\PC{0,20}", "-?[0-9]{0,12}%?", "[0-9]{10,30}%"],
        total in any::<i32>(),
        round_up in any::<bool>(),
    ) {
        if let Ok(value) = IntOrPercent::parse(&text) {
            let pods = value.resolve(total, round_up);
            prop_assert!(pods >= 0, "{value} of {total} gave {pods}");
            prop_assert_eq!(IntOrPercent::parse(&value.to_string()), Ok(value));
        }
        let _ = IntOrString::String(text.clone()).as_int();
        let _ = serde_json::from_value::<IntOrPercent>(Value::String(text));
    }

    #[test]
    fn scalars_never_panic(value in json()) {
        let _ = serde_json::from_value::<Duration>(value.clone());
        if let Ok(v) = serde_json::from_value::<IntOrPercent>(value.clone()) {
            let _ = v.resolve(i32::MAX, true);
        }
        let _ = serde_json::from_value::<IntOrString>(value);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json()) {
        check_rollout(value.clone());
        check_template(value.clone());
        check_run(value);
    }

    #[test]
    fn mutated_rollouts_never_panic(
        fixture in prop::sample::select(&[
            "canary-analysis.yaml",
            "canary-nginx.yaml",
            "bluegreen-analysis.yaml",
            "rollout-with-status.yaml",
        ][..]),
        changes in mutations(),
    ) {
        let mut document = fixture_json(fixture);
        for change in &changes {
            mutate(&mut document, change);
        }
        check_rollout(document);
    }

    #[test]
    fn mutated_analysis_never_panics(
        fixture in prop::sample::select(&[
            "analysis-template.yaml",
            "cluster-analysis-template.yaml",
            "analysis-run.yaml",
        ][..]),
        changes in mutations(),
    ) {
        let mut document = fixture_json(fixture);
        for change in &changes {
            mutate(&mut document, change);
        }
        check_template(document.clone());
        check_run(document);
    }
}
