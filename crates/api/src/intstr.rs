//! Int-or-string values: [`IntOrPercent`] for pod counts (`maxSurge: 25%`) and
//! [`IntOrString`] for analysis counts that may hold an `{{args.*}}` placeholder.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The int-or-string schema shared by every type of this module.
fn int_or_string_schema() -> Schema {
    json_schema!({ "x-kubernetes-int-or-string": true })
}

/// A number of pods, absolute (`1`) or a percentage of the desired replicas (`"25%"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntOrPercent {
    /// An absolute number of pods.
    Int(u32),
    /// A percentage of the desired replicas; may exceed 100 where that makes sense (maxSurge).
    Percent(u32),
}

/// Why an int-or-percent value could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntOrPercentError {
    /// A string of digits without `%`: ambiguous, and Kubernetes rejects it too.
    #[error(
        "{0:?} is a string without '%': write {0} (a number) for pods or \"{0}%\" for a percentage"
    )]
    MissingPercent(String),
    /// A minus sign.
    #[error("{0:?} is negative; a number of pods must be zero or more")]
    Negative(String),
    /// Neither a whole number nor a whole percentage.
    #[error("{0:?} is neither a whole number nor a whole percentage such as \"25%\"")]
    Invalid(String),
    /// Beyond what an `i32` replica count can hold.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl IntOrPercent {
    /// Parses the string form: `"25%"` (a percentage); bare digits are refused as ambiguous.
    pub fn parse(input: &str) -> Result<Self, IntOrPercentError> {
        let owned = || input.to_owned();
        if input.starts_with('-') {
            return Err(IntOrPercentError::Negative(owned()));
        }
        if !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IntOrPercentError::MissingPercent(owned()));
        }
        let digits = input
            .strip_suffix('%')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| IntOrPercentError::Invalid(owned()))?;
        let percent = digits
            .parse::<u32>()
            .ok()
            .filter(|p| i32::try_from(*p).is_ok())
            .ok_or_else(|| IntOrPercentError::TooLarge(owned()))?;
        Ok(Self::Percent(percent))
    }

    /// Pods for `total` desired replicas: percentages round up when `round_up`, down otherwise.
    ///
    /// Kubernetes rounds maxSurge up and maxUnavailable down; the caller says which this is.
    pub fn resolve(&self, total: i32, round_up: bool) -> i32 {
        match *self {
            Self::Int(n) => i32::try_from(n).unwrap_or(i32::MAX),
            Self::Percent(p) => {
                let scaled = i64::from(total.max(0)) * i64::from(p);
                let pods = if round_up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                };
                i32::try_from(pods).unwrap_or(i32::MAX)
            }
        }
    }

    /// True for `0` and `"0%"`, which resolve to no pods whatever the replica count.
    pub fn is_zero(&self) -> bool {
        matches!(self, Self::Int(0) | Self::Percent(0))
    }
}

impl FromStr for IntOrPercent {
    type Err = IntOrPercentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for IntOrPercent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(n) => serializer.serialize_u32(*n),
            Self::Percent(_) => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntOrPercentVisitor)
    }
}

/// Reads a pod count or a percentage string.
struct IntOrPercentVisitor;

impl de::Visitor<'_> for IntOrPercentVisitor {
    type Value = IntOrPercent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of pods (1) or a percentage string (\"25%\")")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<IntOrPercent, E> {
        u32::try_from(n)
            .ok()
            .filter(|n| i32::try_from(*n).is_ok())
            .map(IntOrPercent::Int)
            .ok_or_else(|| E::custom(IntOrPercentError::TooLarge(n.to_string())))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<IntOrPercent, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom(IntOrPercentError::Negative(n.to_string()))),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<IntOrPercent, E> {
        IntOrPercent::parse(text).map_err(E::custom)
    }
}

impl JsonSchema for IntOrPercent {
    fn schema_name() -> Cow<'static, str> {
        "IntOrPercent".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_or_string_schema()
    }
}

/// An integer, or a string that becomes one once `{{args.*}}` placeholders are substituted.
///
/// Argo types an analysis metric's `count` and limits this way so templates can take them as
/// arguments; the string is kept verbatim and read when the run is created.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A literal number.
    Int(i32),
    /// A string: digits, or a placeholder such as `"{{args.count}}"`.
    String(String),
}

impl IntOrString {
    /// The number, when this is one or a string of digits; `None` for an unresolved placeholder.
    pub fn as_int(&self) -> Option<i32> {
        match self {
            Self::Int(n) => Some(*n),
            Self::String(s) => s.trim().parse().ok(),
        }
    }
}

impl JsonSchema for IntOrString {
    fn schema_name() -> Cow<'static, str> {
        "IntOrString".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        int_or_string_schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(value: serde_json::Value) -> String {
        match serde_json::from_value::<IntOrPercent>(value.clone()) {
            Ok(v) => panic!("{value} should be rejected, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_numbers_and_percentages() {
        let v: IntOrPercent = serde_json::from_value(serde_json::json!(1)).unwrap();
        assert_eq!(v, IntOrPercent::Int(1));
        let v: IntOrPercent = serde_json::from_value(serde_json::json!("25%")).unwrap();
        assert_eq!(v, IntOrPercent::Percent(25));
        // Above 100% is a valid maxSurge; validate() refuses it for maxUnavailable.
        assert_eq!(IntOrPercent::parse("150%"), Ok(IntOrPercent::Percent(150)));
    }

    #[test]
    fn rejects_bad_input_with_clear_messages() {
        let e = parse_err(serde_json::json!("25"));
        assert!(e.contains("without '%'") && e.contains("\"25%\""), "{e}");
        let e = parse_err(serde_json::json!("abc"));
        assert!(
            e.contains("neither a whole number nor a whole percentage"),
            "{e}"
        );
        assert!(parse_err(serde_json::json!("-5%")).contains("negative"));
        assert!(parse_err(serde_json::json!(-1)).contains("negative"));
        assert!(parse_err(serde_json::json!("12.5%")).contains("neither"));
        assert!(parse_err(serde_json::json!("%")).contains("neither"));
        assert!(parse_err(serde_json::json!("")).contains("neither"));
        assert!(parse_err(serde_json::json!(4_000_000_000u64)).contains("too large"));
        assert!(parse_err(serde_json::json!(true)).contains("percentage string"));
    }

    #[test]
    fn resolves_against_the_replica_count() {
        let pct = IntOrPercent::Percent(25);
        assert_eq!(pct.resolve(10, true), 3);
        assert_eq!(pct.resolve(10, false), 2);
        assert_eq!(pct.resolve(4, true), 1);
        assert_eq!(pct.resolve(0, true), 0);
        assert_eq!(IntOrPercent::Int(2).resolve(10, false), 2);
        assert_eq!(IntOrPercent::Percent(150).resolve(10, true), 15);
    }

    #[test]
    fn serialises_back_to_the_written_form() {
        for written in [serde_json::json!(3), serde_json::json!("40%")] {
            let v: IntOrPercent = serde_json::from_value(written.clone()).unwrap();
            assert_eq!(serde_json::to_value(v).unwrap(), written);
        }
    }

    #[test]
    fn int_or_string_keeps_placeholders() {
        let v: IntOrString = serde_json::from_value(serde_json::json!("{{args.count}}")).unwrap();
        assert_eq!(v.as_int(), None);
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!("{{args.count}}")
        );
        let v: IntOrString = serde_json::from_value(serde_json::json!("5")).unwrap();
        assert_eq!(v.as_int(), Some(5));
        let v: IntOrString = serde_json::from_value(serde_json::json!(7)).unwrap();
        assert_eq!(v, IntOrString::Int(7));
    }
}
