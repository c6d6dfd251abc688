//! [`Duration`]: the one duration type of the API, parsed once when a manifest is read.
//!
//! Argo Rollouts writes durations in two ways: a pause's `duration` is int-or-string (a bare
//! number means seconds), and a metric's `interval` is a Go duration string such as `1h30m`.
//! Sluice accepts both forms everywhere, keeps the form the user wrote so that a manifest
//! serialises back unchanged, and rejects negative, empty and unit-less input with a message
//! that names the problem.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration as StdDuration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A non-negative span of time as written in a manifest (`30`, `"30"`, `"30s"`, `"1h30m"`).
///
/// Equality, ordering and hashing look at the length of time only, so `30` equals `"30s"`.
#[derive(Clone, Debug)]
pub struct Duration {
    value: StdDuration,
    written: Written,
}

/// The form the user wrote, kept so that serialising gives back the same manifest.
#[derive(Clone, Debug)]
enum Written {
    /// A JSON/YAML number: whole seconds.
    Seconds(u64),
    /// A string: digits alone (seconds) or a Go-style duration.
    Text(String),
}

/// Why a duration could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("duration is empty: write seconds (30) or a number with a unit (30s, 5m, 1h30m)")]
    Empty,
    /// A minus sign: a wait cannot run backwards.
    #[error("duration {0:?} is negative; durations must be zero or more")]
    Negative(String),
    /// A number with no unit after it inside a compound duration (`1h30`).
    #[error("duration {0:?} has a number without a unit; use ns, us, ms, s, m or h")]
    MissingUnit(String),
    /// A unit Sluice does not know (`5d`, `3w`).
    #[error("duration {input:?} has unknown unit {unit:?}; use ns, us, ms, s, m or h")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit that was not recognised.
        unit: String,
    },
    /// Something that is not a number where a number must be.
    #[error("duration {0:?} is not a number followed by a unit (for example 30s, 5m, 1h30m)")]
    Invalid(String),
    /// More than about 584 years.
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

impl Duration {
    /// A duration of whole seconds, written back as a bare number.
    pub fn from_secs(secs: u64) -> Self {
        Self {
            value: StdDuration::from_secs(secs),
            written: Written::Seconds(secs),
        }
    }

    /// Parses the string form: digits alone mean seconds, otherwise Go duration syntax.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        Ok(Self {
            value: parse_text(input)?,
            written: Written::Text(input.to_owned()),
        })
    }

    /// The length of time, for timers and arithmetic.
    pub fn as_std(&self) -> StdDuration {
        self.value
    }

    /// Whole seconds, rounded down (what Argo's `DurationSeconds` reports).
    pub fn as_secs(&self) -> u64 {
        self.value.as_secs()
    }
}

/// Parses a string duration into its length.
fn parse_text(input: &str) -> Result<StdDuration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input.starts_with('-') {
        return Err(DurationError::Negative(input.to_owned()));
    }
    let body = input.strip_prefix('+').unwrap_or(input);
    if body.is_empty() {
        return Err(DurationError::Invalid(input.to_owned()));
    }
    // Argo's pause step treats digits alone as seconds.
    if body.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = body
            .parse()
            .map_err(|_| DurationError::TooLarge(input.to_owned()))?;
        return Ok(StdDuration::from_secs(secs));
    }
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let (whole, frac, after_number) = split_number(rest, input)?;
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_owned()));
        }
        let nanos_per_unit = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            input: input.to_owned(),
            unit: unit.to_owned(),
        })?;
        total = total
            .checked_add(component_nanos(whole, frac, nanos_per_unit, input)?)
            .ok_or_else(|| DurationError::TooLarge(input.to_owned()))?;
        rest = after_unit;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::TooLarge(input.to_owned()))?;
    // The remainder of a division by 1e9 always fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(StdDuration::new(secs, nanos))
}

/// Splits `12.5h…` into `("12", "5", "h…")`; at least one digit is required.
fn split_number<'a>(s: &'a str, input: &str) -> Result<(&'a str, &'a str, &'a str), DurationError> {
    let whole_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (whole, rest) = s.split_at(whole_len);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(after_dot) => {
            let frac_len = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            after_dot.split_at(frac_len)
        }
        None => ("", rest),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err(DurationError::Invalid(input.to_owned()));
    }
    Ok((whole, frac, rest))
}

/// Nanoseconds in one of the units Go's `time.ParseDuration` accepts.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// The nanoseconds of one `number unit` component, fraction included.
fn component_nanos(
    whole: &str,
    frac: &str,
    per_unit: u128,
    input: &str,
) -> Result<u128, DurationError> {
    let too_large = || DurationError::TooLarge(input.to_owned());
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut nanos = whole.checked_mul(per_unit).ok_or_else(too_large)?;
    // Digits past the 18th cannot change a nanosecond count of a unit at most an hour long.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| too_large())?;
        let scale = 10u128.pow(u32::try_from(frac.len()).unwrap_or(18));
        nanos = nanos
            .checked_add(digits * per_unit / scale)
            .ok_or_else(too_large)?;
    }
    Ok(nanos)
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.written {
            Written::Seconds(secs) => write!(f, "{secs}"),
            Written::Text(text) => f.write_str(text),
        }
    }
}

impl PartialEq for Duration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for Duration {}

impl PartialOrd for Duration {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Duration {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl std::hash::Hash for Duration {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.written {
            Written::Seconds(secs) => serializer.serialize_u64(*secs),
            Written::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Reads a number of seconds or a duration string.
struct DurationVisitor;

impl de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration: whole seconds (30) or a string such as \"30s\", \"5m\", \"1h30m\"")
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(DurationError::Negative(secs.to_string())))
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "duration {secs} is not whole seconds; write a string such as \"1500ms\" instead"
        )))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        Duration::parse(text).map_err(E::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "x-kubernetes-int-or-string": true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(input: &str) -> f64 {
        match Duration::parse(input) {
            Ok(d) => d.as_std().as_secs_f64(),
            Err(e) => panic!("{input:?} should parse: {e}"),
        }
    }

    fn error(input: &str) -> String {
        match Duration::parse(input) {
            Ok(d) => panic!("{input:?} should be rejected, got {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_go_and_argo_forms() {
        assert_eq!(secs("30s"), 30.0);
        assert_eq!(secs("5m"), 300.0);
        assert_eq!(secs("1h"), 3600.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs("500ms"), 0.5);
        assert_eq!(secs("1.5h"), 5400.0);
        assert_eq!(secs("30"), 30.0);
        assert_eq!(secs("0"), 0.0);
        assert_eq!(secs("+10s"), 10.0);
        assert_eq!(secs("2m3s4ms"), 123.004);
    }

    #[test]
    fn rejects_bad_input_with_clear_messages() {
        assert!(error("").contains("empty"));
        assert!(error("-5s").contains("negative"));
        assert!(error("-5").contains("negative"));
        let unknown = error("5d");
        assert!(unknown.contains("unknown unit \"d\""), "{unknown}");
        assert!(unknown.contains("ms, s, m or h"), "{unknown}");
        assert!(error("1h30").contains("without a unit"));
        assert!(error("abc").contains("not a number"));
        assert!(error("s").contains("not a number"));
        assert!(error("99999999999999999999h").contains("too large"));
    }

    #[test]
    fn numbers_and_strings_deserialise() {
        let d: Duration = serde_json::from_value(serde_json::json!(30)).unwrap();
        assert_eq!(d.as_secs(), 30);
        let d: Duration = serde_json::from_value(serde_json::json!("1m")).unwrap();
        assert_eq!(d.as_secs(), 60);
        let err = serde_json::from_value::<Duration>(serde_json::json!(-3)).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        let err = serde_json::from_value::<Duration>(serde_json::json!(1.5)).unwrap_err();
        assert!(err.to_string().contains("not whole seconds"), "{err}");
        let err = serde_json::from_value::<Duration>(serde_json::json!("10x")).unwrap_err();
        assert!(err.to_string().contains("unknown unit \"x\""), "{err}");
    }

    #[test]
    fn serialises_back_to_the_written_form() {
        for written in [
            serde_json::json!(30),
            serde_json::json!("30"),
            serde_json::json!("1h30m"),
        ] {
            let d: Duration = serde_json::from_value(written.clone()).unwrap();
            assert_eq!(serde_json::to_value(&d).unwrap(), written);
        }
        assert_eq!(Duration::parse("1h30m").unwrap().to_string(), "1h30m");
    }

    #[test]
    fn equality_is_by_length() {
        assert_eq!(Duration::from_secs(60), Duration::parse("1m").unwrap());
        assert!(Duration::parse("1m").unwrap() < Duration::parse("61s").unwrap());
    }
}
