//! Where conditions are evaluated: off the async workers, within the time and memory budget of
//! [`ConditionBudget`], so that one AnalysisTemplate cannot exhaust the controller.
//!
//! STUB (interface only): evaluates on the blocking pool; the bounded implementation replaces
//! the inside of [`Evaluator::assess`] without changing its signature.

use std::sync::Arc;

use crate::{
    analysis::{
        condition::{self, ConditionError, MetricValue},
        limits::ConditionBudget,
    },
    api::{AnalysisPhase, Metric},
};

/// Evaluates metric conditions within a budget; shared by every provider of the process.
#[derive(Debug)]
pub struct Evaluator {
    budget: ConditionBudget,
}

impl Evaluator {
    /// An evaluator with this budget.
    pub fn new(budget: ConditionBudget) -> Arc<Self> {
        Arc::new(Self { budget })
    }

    /// The budget this evaluator enforces.
    pub fn budget(&self) -> &ConditionBudget {
        &self.budget
    }

    /// The phase of a measurement of `metric` with this value, by Argo's rules; an error (a
    /// budget exceeded included) is returned for an Error measurement.
    pub async fn assess(
        &self,
        metric: &Metric,
        value: &MetricValue,
    ) -> Result<AnalysisPhase, ConditionError> {
        let (metric, value) = (metric.clone(), value.clone());
        tokio::task::spawn_blocking(move || condition::assess(&metric, &value))
            .await
            .unwrap_or_else(|e| {
                Err(ConditionError::Evaluate {
                    condition: String::new(),
                    result: String::new(),
                    message: format!("the evaluation stopped: {e}"),
                })
            })
    }
}

/// The first argument that makes the `sluice` binary an evaluation worker instead of a
/// controller (see [`worker_main`]).
pub const WORKER_ARG: &str = "__condition-worker";

/// The entry point of an evaluation worker process. STUB: the bounded implementation serves
/// evaluation requests on standard input.
pub fn worker_main() -> std::process::ExitCode {
    std::process::ExitCode::FAILURE
}
