//! `successCondition` / `failureCondition`: expressions over `result` in the expr language
//! Argo Rollouts users write, evaluated with the `expr-lang` crate.
//!
//! The environment matches Argo's: `result` is the measured value (a Prometheus instant vector
//! is an array of numbers, a scalar a number, a web metric the JSON value at `jsonPath`), and
//! the helpers `isNaN`, `isInf`, `isNil`, `default`, `asInt` and `asFloat` are defined next to
//! expr's builtins (`len`, `all`, `any`, `filter`, …). A condition is compiled when the
//! template or run is validated ([`validate_metric`]), so a typo is reported before the first
//! measurement rather than as ten Error measurements.
//!
//! No condition may exhaust the controller: [`compile_within`] refuses, from the text alone, a
//! condition longer, deeper or larger than its [`ConditionBudget`] allows and a literal range
//! too large to build (`caps`), and evaluation is bounded in time and memory by
//! [`Evaluator`](crate::evaluator::Evaluator).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::LazyLock,
    time::Duration,
};

use expr::{Context, Environment, Program, Value};
use serde::{Deserialize, Serialize};
use sluice_api::{AnalysisPhase, Metric};

use crate::limits::ConditionBudget;

mod caps;
#[cfg(test)]
mod fuzz;
mod shorthand;

/// The value a condition sees as `result`.
///
/// A type of its own rather than `serde_json::Value` because Prometheus answers NaN and ±Inf,
/// which JSON cannot hold. It serialises in a tagged form (`{"Float":"NaN"}`) that keeps them:
/// the form the controller sends to its evaluation workers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum MetricValue {
    /// JSON `null`.
    #[default]
    Nil,
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A floating-point number, NaN and infinities included.
    Float(#[serde(with = "wire_float")] f64),
    /// A string.
    String(String),
    /// An array (a Prometheus vector is an array of `Float`).
    Array(Vec<MetricValue>),
    /// A JSON object.
    Map(BTreeMap<String, MetricValue>),
}

/// Floats on the wire: finite ones as JSON numbers, NaN and infinities as Prometheus writes them.
mod wire_float {
    use serde::{Deserialize, Deserializer, Serializer, de};

    /// Writes a float, non-finite ones as a string.
    pub(super) fn serialize<S: Serializer>(f: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if f.is_finite() {
            serializer.serialize_f64(*f)
        } else {
            serializer.serialize_str(&super::format_float(*f))
        }
    }

    /// A float as a number or as one of the strings `NaN`, `+Inf`, `-Inf`.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        /// A finite float.
        Number(f64),
        /// NaN or an infinity.
        Text(String),
    }

    /// Reads a float written by [`serialize`].
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        match Wire::deserialize(deserializer)? {
            Wire::Number(f) => Ok(f),
            Wire::Text(text) => match text.as_str() {
                "NaN" => Ok(f64::NAN),
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                _ => Err(de::Error::custom(format!("{text:?} is not a float"))),
            },
        }
    }
}

impl From<f64> for MetricValue {
    fn from(value: f64) -> Self {
        Self::Float(value)
    }
}

impl From<Vec<f64>> for MetricValue {
    fn from(values: Vec<f64>) -> Self {
        Self::Array(values.into_iter().map(Self::Float).collect())
    }
}

impl From<&serde_json::Value> for MetricValue {
    fn from(value: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match value {
            J::Null => Self::Nil,
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Self::String(s.clone()),
            J::Array(items) => Self::Array(items.iter().map(Self::from).collect()),
            J::Object(map) => Self::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Self::from(v)))
                    .collect(),
            ),
        }
    }
}

impl MetricValue {
    /// The expr value the condition evaluates against.
    fn to_expr(&self) -> Value {
        match self {
            Self::Nil => Value::Nil,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::Integer(*i),
            Self::Float(f) => Value::Float(*f),
            Self::String(s) => Value::String(s.clone()),
            Self::Array(items) => Value::Array(items.iter().map(Self::to_expr).collect()),
            Self::Map(map) => map.iter().map(|(k, v)| (k.clone(), v.to_expr())).collect(),
        }
    }
}

/// Why a condition could not be compiled or evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// The text is not an expression.
    #[error("condition {} does not parse: {message}", quote(.condition))]
    Parse {
        /// The condition as written.
        condition: String,
        /// The parser's explanation.
        message: String,
    },
    /// The expression calls a function that does not exist.
    #[error(
        "condition {} calls unknown function {function}(); available besides expr's builtins: isNaN, isInf, isNil, default, asInt, asFloat", quote(.condition)
    )]
    UnknownFunction {
        /// The condition as written.
        condition: String,
        /// The function's name.
        function: String,
    },
    /// Evaluation failed (a type mismatch, an index out of range, …).
    #[error("condition {} failed on result {result}: {message}", quote(.condition))]
    Evaluate {
        /// The condition as written.
        condition: String,
        /// The result it was evaluated on, as text.
        result: String,
        /// The evaluator's explanation.
        message: String,
    },
    /// The expression gave something other than true or false.
    #[error("condition {} must be true or false, but gave {value} on result {result}", quote(.condition))]
    NotBoolean {
        /// The condition as written.
        condition: String,
        /// What it gave.
        value: String,
        /// The result it was evaluated on, as text.
        result: String,
    },
    /// The text is longer than [`ConditionBudget::max_source_bytes`].
    #[error("condition is {bytes} bytes; the limit is {limit} (it starts {preview:?})")]
    TooLong {
        /// The first characters of the condition.
        preview: String,
        /// Its length in bytes.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Brackets (or ternaries, `??`, `if`) nest deeper than [`ConditionBudget::max_nesting`].
    #[error("condition {} nests {depth} levels deep; the limit is {limit}", quote(.condition))]
    TooDeep {
        /// The condition as written.
        condition: String,
        /// Its deepest nesting.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// More syntax nodes than [`ConditionBudget::max_nodes`].
    #[error(
        "condition {} has {nodes} syntax nodes (identifiers, literals, operators, brackets); the limit is {limit}", quote(.condition)
    )]
    TooManyNodes {
        /// The condition as written.
        condition: String,
        /// Its nodes.
        nodes: usize,
        /// The limit.
        limit: usize,
    },
    /// A range between two literals holds more numbers than [`ConditionBudget::max_range_len`].
    #[error(
        "condition {} builds the range {start}..{end} of {len} numbers; the limit is {limit}", quote(.condition)
    )]
    RangeTooLarge {
        /// The condition as written.
        condition: String,
        /// The first number.
        start: i64,
        /// The last number.
        end: i64,
        /// How many numbers that is.
        len: u128,
        /// The limit.
        limit: u64,
    },
    /// The evaluation ran longer than [`ConditionBudget::max_time`] and was stopped.
    #[error("condition {} exceeded its time budget of {}", quote(.condition), human_duration(.limit))]
    TimeBudget {
        /// The condition as written.
        condition: String,
        /// The budget.
        limit: Duration,
    },
    /// The evaluation needed more than [`ConditionBudget::max_memory_bytes`] and was stopped.
    #[error("condition {} exceeded its memory budget of {}", quote(.condition), human_bytes(*.limit))]
    MemoryBudget {
        /// The condition as written.
        condition: String,
        /// The budget, in bytes.
        limit: u64,
    },
    /// The evaluation could not be carried out (a worker that would not start or stopped for
    /// another reason than a budget, a result too large to hand over).
    #[error("condition {} could not be evaluated: {message}", quote(.condition))]
    Unavailable {
        /// The condition as written.
        condition: String,
        /// What went wrong.
        message: String,
    },
}

/// A time budget as people write it: `500ms`, `2s`.
pub(crate) fn human_duration(d: &Duration) -> String {
    if d.subsec_nanos() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{d:?}")
    }
}

/// A condition as messages quote it: whole when short, else its first 120 bytes and `…`, so a
/// message about a 4 KiB condition stays readable (and an event note stays within its limit).
fn quote(condition: &str) -> String {
    const MAX: usize = 120;
    if condition.len() <= MAX {
        return format!("{condition:?}");
    }
    let mut end = MAX;
    while !condition.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}", format!("{}…", &condition[..end]))
}

/// A memory budget as people write it: `64 MiB`, `512 KiB`, `1000 bytes`.
pub fn human_bytes(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    match bytes {
        0 => "0 bytes".to_owned(),
        b if b.is_multiple_of(GIB) => format!("{} GiB", b / GIB),
        b if b.is_multiple_of(MIB) => format!("{} MiB", b / MIB),
        b if b.is_multiple_of(KIB) => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// The stack an evaluation needs: expr-lang evaluates by recursion, one level (several KiB in
/// a debug build) per level of the syntax tree, which the node cap keeps below about 300.
/// [`Evaluator`](crate::evaluator::Evaluator) evaluates on threads this large.
pub const EVALUATION_STACK_BYTES: usize = 64 << 20;

/// A parsed condition, ready to evaluate against many results.
#[derive(Clone, Debug)]
pub struct Condition {
    source: String,
    program: Program,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The functions Argo Rollouts adds to expr's builtins.
const ARGO_FUNCTIONS: [&str; 6] = ["isNaN", "isInf", "isNil", "default", "asInt", "asFloat"];

/// expr's environment with Argo's helpers, built once.
static ENVIRONMENT: LazyLock<Environment<'static>> =
    LazyLock::new(|| {
        let mut env = Environment::new();
        env.add_function("isNaN", |c| {
            Ok(Value::Bool(number_arg("isNaN", &c.args)?.is_nan()))
        });
        env.add_function("isInf", |c| {
            Ok(Value::Bool(number_arg("isInf", &c.args)?.is_infinite()))
        });
        env.add_function("isNil", |c| match c.args.as_slice() {
            [value] => Ok(Value::Bool(value.is_nil())),
            _ => Err(arity("isNil", 1, c.args.len())),
        });
        // Argo's `default(result, fallback)`: the fallback when the value is nil.
        env.add_function("default", |c| match c.args.as_slice() {
            [Value::Nil, fallback] => Ok(fallback.clone()),
            [value, _] => Ok(value.clone()),
            _ => Err(arity("default", 2, c.args.len())),
        });
        env.add_function("asInt", |c| match c.args.as_slice() {
            [Value::Integer(i)] => Ok(Value::Integer(*i)),
            // Go's int64(f): truncation toward zero.
            [Value::Float(f)] if f.is_finite() => Ok(Value::Integer(f.trunc() as i64)),
            [Value::String(s)] => s.trim().parse::<i64>().map(Value::Integer).map_err(|e| {
                expr::Error::ExprError(format!("asInt({s:?}): not a whole number: {e}"))
            }),
            [other] => Err(expr::Error::ExprError(format!(
                "asInt() takes a number or a string, got {}",
                describe(other)
            ))),
            _ => Err(arity("asInt", 1, c.args.len())),
        });
        env.add_function("asFloat", |c| match c.args.as_slice() {
            [Value::Integer(i)] => Ok(Value::Float(*i as f64)),
            [Value::Float(f)] => Ok(Value::Float(*f)),
            [Value::String(s)] => parse_go_float(s)
                .map(Value::Float)
                .ok_or_else(|| expr::Error::ExprError(format!("asFloat({s:?}): not a number"))),
            [other] => Err(expr::Error::ExprError(format!(
                "asFloat() takes a number or a string, got {}",
                describe(other)
            ))),
            _ => Err(arity("asFloat", 1, c.args.len())),
        });
        env
    });

/// The one numeric argument of `isNaN` / `isInf`.
fn number_arg(name: &str, args: &[Value]) -> expr::Result<f64> {
    match args {
        [Value::Float(f)] => Ok(*f),
        [Value::Integer(i)] => Ok(*i as f64),
        [Value::Array(_)] => Err(expr::Error::ExprError(format!(
            "{name}() takes a number, got an array; a Prometheus vector is an array, use {name}(result[0])"
        ))),
        [other] => Err(expr::Error::ExprError(format!(
            "{name}() takes a number, got {}",
            describe(other)
        ))),
        _ => Err(arity(name, 1, args.len())),
    }
}

/// Parses a float as Go's `strconv.ParseFloat` would, NaN and infinities included.
fn parse_go_float(text: &str) -> Option<f64> {
    let text = text.trim();
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// The error for a call with the wrong number of arguments.
fn arity(name: &str, wanted: usize, got: usize) -> expr::Error {
    expr::Error::ExprError(format!("{name}() takes {wanted} argument(s), got {got}"))
}

/// A short description of a value's type for messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Bool(_) => "a boolean",
        Value::Integer(_) | Value::Float(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) | Value::Bytes(_) => "an array",
        Value::Map(_) | Value::KeyedMap(_) => "a map",
        _ => "a date or duration",
    }
}

/// Compiles a condition within the default [`ConditionBudget`] (see [`compile_within`]).
pub fn compile(source: &str) -> Result<Condition, ConditionError> {
    compile_within(source, &ConditionBudget::default())
}

/// Compiles a condition, rejecting text beyond the static caps of `budget` (size, nesting,
/// nodes, literal ranges), text that does not parse and calls of unknown functions.
///
/// The size, nesting and nodes are checked on the text before it is parsed, so no input can
/// make the parser recurse deeper than the budget allows.
pub fn compile_within(source: &str, budget: &ConditionBudget) -> Result<Condition, ConditionError> {
    caps::check_text(source, budget)?;
    let parse_error = |message: String| ConditionError::Parse {
        condition: source.to_owned(),
        message,
    };
    // expr-lang's parser must not panic; should it, the condition is refused, not the process.
    let expanded = shorthand::expand(source);
    let program = catch_unwind(|| expr::compile(&expanded))
        .map_err(|panic| {
            parse_error(format!(
                "the parser failed (a defect of expr-lang, which cannot build this expression): {}",
                panic_message(&*panic)
            ))
        })?
        .map_err(|e| parse_error(e.to_string().trim().to_owned()))?;
    // expr-lang keeps its syntax tree private: what is checked after parsing is read from the
    // program's `Debug` form, made once.
    let tree = format!("{program:?}");
    caps::check_ranges(source, &tree, budget)?;
    if let Some(function) = called_functions(&tree)
        .into_iter()
        .find(|name| !ENVIRONMENT_FUNCTIONS.contains(name.as_str()))
    {
        return Err(ConditionError::UnknownFunction {
            condition: source.to_owned(),
            function,
        });
    }
    Ok(Condition {
        source: source.to_owned(),
        program,
    })
}

/// The names of every function the environment defines (expr's builtins and Argo's helpers).
static ENVIRONMENT_FUNCTIONS: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    let mut names: BTreeSet<String> = BUILTINS.iter().map(|s| (*s).to_owned()).collect();
    names.extend(ARGO_FUNCTIONS.iter().map(|s| (*s).to_owned()));
    names
});

/// expr-lang's builtins (2.1, default features).
const BUILTINS: &[&str] = &[
    "max",
    "min",
    "abs",
    "ceil",
    "floor",
    "round",
    "mean",
    "median",
    "count",
    "sum",
    "reduce",
    "all",
    "any",
    "one",
    "none",
    "map",
    "filter",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "groupBy",
    "sort",
    "sortBy",
    "now",
    "duration",
    "timezone",
    "date",
    "type",
    "get",
    "toBase64",
    "fromBase64",
    "toPairs",
    "fromPairs",
    "join",
    "first",
    "last",
    "take",
    "reverse",
    "uniq",
    "concat",
    "flatten",
    "fromJSON",
    "toJSON",
    "keys",
    "values",
    "len",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "upper",
    "lower",
    "split",
    "splitAfter",
    "replace",
    "repeat",
    "indexOf",
    "lastIndexOf",
    "hasPrefix",
    "hasSuffix",
    "bitand",
    "bitor",
    "bitxor",
    "bitnand",
    "bitnot",
    "bitshl",
    "bitshr",
    "bitushr",
    "int",
    "float",
    "string",
];

/// The functions a program calls, read from its `Debug` form (`tree`).
///
/// expr-lang keeps its syntax tree private, so the names are read from the program's `Debug`
/// form (`Func { ident: "name", … }`). Should that form ever change, this finds nothing and
/// an unknown function is reported at evaluation instead: the check only adds earlier errors.
fn called_functions(tree: &str) -> BTreeSet<String> {
    const MARKER: &str = "Func { ident: \"";
    let mut names = BTreeSet::new();
    let mut rest = tree;
    while let Some(start) = rest.find(MARKER) {
        rest = &rest[start + MARKER.len()..];
        if let Some(end) = rest.find('"') {
            names.insert(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    names
}

impl Condition {
    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition with `result` bound to `value`; it must give true or false.
    ///
    /// In this thread, without a time or memory bound beyond the static caps of its
    /// compilation, and recursing as deep as its syntax tree: the controller evaluates through
    /// [`Evaluator`](crate::evaluator::Evaluator) instead, on a thread of
    /// [`EVALUATION_STACK_BYTES`].
    pub fn evaluate(&self, value: &MetricValue) -> Result<bool, ConditionError> {
        let mut ctx = Context::default();
        ctx.insert("result", value.to_expr());
        // expr-lang must not panic; should it, this measurement is an Error, not the process.
        let outcome = catch_unwind(AssertUnwindSafe(|| ENVIRONMENT.run(&self.program, &ctx)))
            .unwrap_or_else(|panic| {
                Err(expr::Error::ExprError(format!(
                    "the evaluator failed: {}",
                    panic_message(&*panic)
                )))
            });
        match outcome {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBoolean {
                condition: self.source.clone(),
                value: other.to_string(),
                result: display(value),
            }),
            Err(e) => Err(ConditionError::Evaluate {
                condition: self.source.clone(),
                result: display(value),
                message: e.to_string(),
            }),
        }
    }
}

/// A metric's two conditions, compiled.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// `successCondition`.
    pub success: Option<Condition>,
    /// `failureCondition`.
    pub failure: Option<Condition>,
}

impl Conditions {
    /// Compiles both conditions of a metric within the default [`ConditionBudget`]; empty
    /// strings count as absent, as in Argo.
    pub fn of(metric: &Metric) -> Result<Self, ConditionError> {
        Self::of_within(metric, &ConditionBudget::default())
    }

    /// Compiles both conditions of a metric within `budget`; empty strings count as absent.
    pub fn of_within(metric: &Metric, budget: &ConditionBudget) -> Result<Self, ConditionError> {
        let compile_some = |c: &Option<String>| {
            c.as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|source| compile_within(source, budget))
                .transpose()
        };
        Ok(Self {
            success: compile_some(&metric.success_condition)?,
            failure: compile_some(&metric.failure_condition)?,
        })
    }

    /// The phase of a measurement with this value, by Argo's rules.
    ///
    /// - neither condition: Successful;
    /// - only a success condition: Successful when true, Failed otherwise;
    /// - only a failure condition: Failed when true, Successful otherwise;
    /// - both: Failed when the failure condition holds, Successful when only the success
    ///   condition holds, Inconclusive when neither does.
    ///
    /// An evaluation error is returned as such; the caller records an Error measurement.
    pub fn assess(&self, value: &MetricValue) -> Result<AnalysisPhase, ConditionError> {
        let success = self
            .success
            .as_ref()
            .map(|c| c.evaluate(value))
            .transpose()?;
        let failure = self
            .failure
            .as_ref()
            .map(|c| c.evaluate(value))
            .transpose()?;
        Ok(verdict(success, failure))
    }
}

/// The phase of a measurement from what its success and failure conditions gave (`None`: the
/// metric has no such condition), by Argo's rules (see [`Conditions::assess`]).
pub fn verdict(success: Option<bool>, failure: Option<bool>) -> AnalysisPhase {
    match (success, failure) {
        (_, Some(true)) | (Some(false), None) => AnalysisPhase::Failed,
        (Some(false), Some(false)) => AnalysisPhase::Inconclusive,
        _ => AnalysisPhase::Successful,
    }
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Compiles a metric's conditions and assesses `value` with them.
pub fn assess(metric: &Metric, value: &MetricValue) -> Result<AnalysisPhase, ConditionError> {
    Conditions::of(metric)?.assess(value)
}

/// A value as text for messages (JSON-like; NaN and infinities as Prometheus writes them).
pub fn display(value: &MetricValue) -> String {
    match value {
        MetricValue::Nil => "null".to_owned(),
        MetricValue::Bool(b) => b.to_string(),
        MetricValue::Int(i) => i.to_string(),
        MetricValue::Float(f) => format_float(*f),
        MetricValue::String(s) => format!("{s:?}"),
        MetricValue::Array(items) => format!(
            "[{}]",
            items.iter().map(display).collect::<Vec<_>>().join(",")
        ),
        MetricValue::Map(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k:?}:{}", display(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// A float as Prometheus (and Go's `FormatFloat(f, 'f', -1, 64)`) writes it.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f == f64::INFINITY {
        "+Inf".to_owned()
    } else if f == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests;
