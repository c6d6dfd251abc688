//! Triggers: which events send, and what.
//!
//! Argo Rollouts sends on the events its controller records on a Rollout: the event's reason,
//! turned from CamelCase into kebab case after `on-`, names the trigger (`RolloutCompleted` →
//! `on-rollout-completed`, `ScalingReplicaSet` → `on-scaling-replica-set`). Sluice maps every
//! reason the same way, so a reason added later needs no change here.
//!
//! A trigger is a list of conditions; each sends its templates when its `when` (an expr
//! expression over `rollout`, as in Argo) is true or absent.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Deserialize;
use serde_json::Value;

/// The trigger an event's reason fires: `on-` and the reason in kebab case.
pub fn trigger_name(reason: &str) -> String {
    let mut name = String::from("on");
    let mut previous_lower = false;
    for c in reason.chars() {
        if c.is_ascii_uppercase() {
            if previous_lower || name == "on" {
                name.push('-');
            }
            name.push(c.to_ascii_lowercase());
            previous_lower = false;
        } else {
            name.push(c);
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    name
}

/// The longest `when` read: a condition is one line in practice.
const MAX_WHEN_BYTES: usize = 4096;

/// One condition of a trigger.
#[derive(Clone, Debug)]
pub struct Condition {
    /// The templates sent when the condition holds.
    pub send: Vec<String>,
    /// The expression, as written.
    pub when: Option<String>,
    /// Argo's `oncePer`: read and shown, without effect (each event is sent once).
    pub once_per: Option<String>,
    /// What the condition is for.
    pub description: Option<String>,
    program: Option<expr::Program>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCondition {
    #[serde(default)]
    send: Vec<String>,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    once_per: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

impl Condition {
    /// Parses a trigger's YAML list of conditions, compiling each `when`.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let raw: Vec<RawCondition> = serde_norway::from_str(text)
            .map_err(|e| format!("a trigger is a YAML list of conditions (- send: [...]): {e}"))?;
        raw.into_iter()
            .map(|raw| {
                if raw.send.is_empty() {
                    return Err("a condition sends no template (send: [template])".to_owned());
                }
                let when = raw.when.filter(|w| !w.trim().is_empty());
                let program = when.as_deref().map(compile).transpose()?;
                Ok(Self {
                    send: raw.send,
                    when,
                    once_per: raw.once_per,
                    description: raw.description,
                    program,
                })
            })
            .collect()
    }

    /// Whether the condition holds for `rollout`: its `when` is absent or true.
    pub fn holds(&self, rollout: &Value) -> Result<bool, String> {
        let (Some(program), Some(when)) = (&self.program, &self.when) else {
            return Ok(true);
        };
        let mut ctx = expr::Context::default();
        ctx.insert("rollout", to_expr(rollout));
        let outcome = catch_unwind(AssertUnwindSafe(|| expr::run(program, &ctx)))
            .unwrap_or_else(|_| Err(expr::Error::ExprError("the evaluator failed".into())));
        match outcome {
            Ok(expr::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition {when:?} gave {other}, not true or false"
            )),
            Err(e) => Err(format!("condition {when:?} could not be evaluated: {e}")),
        }
    }
}

fn compile(when: &str) -> Result<expr::Program, String> {
    if when.len() > MAX_WHEN_BYTES {
        return Err(format!("condition longer than {MAX_WHEN_BYTES} bytes"));
    }
    catch_unwind(|| expr::compile(when))
        .unwrap_or_else(|_| Err(expr::Error::ExprError("the parser failed".into())))
        .map_err(|e| format!("condition {when:?} does not parse: {e}"))
}

/// A JSON value as expr reads it.
fn to_expr(value: &Value) -> expr::Value {
    match value {
        Value::Null => expr::Value::Nil,
        Value::Bool(b) => expr::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => expr::Value::Integer(i),
            None => expr::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => expr::Value::String(s.clone()),
        Value::Array(items) => expr::Value::Array(items.iter().map(to_expr).collect()),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), to_expr(v))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_reason_argo_sends_on_maps_to_its_trigger() {
        for (reason, trigger) in [
            ("RolloutCompleted", "on-rollout-completed"),
            ("RolloutStepCompleted", "on-rollout-step-completed"),
            ("RolloutUpdated", "on-rollout-updated"),
            ("RolloutAborted", "on-rollout-aborted"),
            ("RolloutPaused", "on-rollout-paused"),
            ("AnalysisRunRunning", "on-analysis-run-running"),
            ("AnalysisRunError", "on-analysis-run-error"),
            ("AnalysisRunFailed", "on-analysis-run-failed"),
            ("ScalingReplicaSet", "on-scaling-replica-set"),
        ] {
            assert_eq!(trigger_name(reason), trigger, "{reason}");
        }
    }

    #[test]
    fn when_is_evaluated_over_the_rollout_and_a_bad_one_is_an_error() {
        let conditions = Condition::parse_list(
            "- send: [purple]\n  when: rollout.spec.template.spec.containers[0].image == 'argoproj/rollouts-demo:purple'\n- send: [always]\n- send: [broken]\n  when: rollout.spec.replicas + 'x'",
        )
        .expect("parses");
        let rollout = |image: &str| json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": image}]}}}});
        assert_eq!(
            conditions[0].holds(&rollout("argoproj/rollouts-demo:purple")),
            Ok(true)
        );
        assert_eq!(
            conditions[0].holds(&rollout("argoproj/rollouts-demo:blue")),
            Ok(false)
        );
        assert_eq!(conditions[1].holds(&rollout("x")), Ok(true));
        assert!(conditions[2].holds(&rollout("x")).is_err());
        assert!(
            Condition::parse_list("- when: 'true'").is_err(),
            "sends nothing"
        );
    }
}
