//! The bounds every analysis works within, so that no AnalysisTemplate from any tenant can
//! crash, wedge or starve the controller: answer sizes, stored value sizes, intervals,
//! timeouts, the hosts web metrics may reach, and the budgets of a condition's evaluation.
//!
//! One value of [`AnalysisLimits`] is built from the controller's flags at start-up and shared
//! by the providers, the condition evaluator and the run rules; tests build their own.

use std::time::Duration;

/// The bounds of analysis, set once per controller process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalysisLimits {
    /// The most bytes read of a metric server's answer (web, Prometheus); a larger answer is
    /// an Error measurement and is never held in memory whole.
    pub max_response_bytes: usize,
    /// The most bytes of a measurement's `value` stored in the run's status (longer values
    /// are cut, marked as cut), so a status write stays far below what etcd accepts.
    pub max_value_bytes: usize,
    /// The shortest `interval` a metric may measure at; shorter ones are raised to it.
    pub min_interval: Duration,
    /// The longest timeout a provider may wait for an answer, whatever the template says.
    pub max_timeout: Duration,
    /// The hosts web metrics may reach (exact names, or `*.suffix`); `None`: any host, as in
    /// Argo Rollouts.
    pub web_allowed_hosts: Option<Vec<String>>,
    /// The budgets of one condition's compilation and evaluation.
    pub condition: ConditionBudget,
}

/// What one `successCondition`/`failureCondition` may cost.
///
/// The first four are checked when a condition is compiled, from its text alone; the last two
/// bound its evaluation, which runs in a worker process (see
/// [`Evaluator`](crate::evaluator::Evaluator)). Serialisable because the controller
/// hands it to its workers on their command line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConditionBudget {
    /// The longest condition, in bytes of source.
    pub max_source_bytes: usize,
    /// The deepest nesting of brackets and parentheses (and of the ternaries, `??` and `if`
    /// that nest without brackets), counted in the text before it is parsed.
    pub max_nesting: usize,
    /// The most syntax nodes a condition may have, counted in the text before it is parsed
    /// (identifiers, literals, operators and opening brackets: never fewer than the nodes).
    pub max_nodes: usize,
    /// The most numbers a range between two literals (`0..100`) may hold.
    pub max_range_len: u64,
    /// The most memory one evaluation may use, above what an idle worker holds.
    pub max_memory_bytes: u64,
    /// The longest one evaluation may run.
    pub max_time: Duration,
}

impl Default for ConditionBudget {
    fn default() -> Self {
        Self {
            max_source_bytes: 4 * 1024,
            max_nesting: 32,
            max_nodes: 512,
            max_range_len: 100_000,
            max_memory_bytes: 64 * 1024 * 1024,
            max_time: Duration::from_millis(500),
        }
    }
}

impl Default for AnalysisLimits {
    fn default() -> Self {
        Self {
            max_response_bytes: 1024 * 1024,
            max_value_bytes: 16 * 1024,
            min_interval: Duration::from_secs(1),
            max_timeout: Duration::from_secs(60),
            web_allowed_hosts: None,
            condition: ConditionBudget::default(),
        }
    }
}
