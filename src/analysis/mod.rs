//! The AnalysisRun controller: measurements, their verdicts, and the run's phase.

pub mod args;
pub mod condition;
pub mod pass;
pub mod plan;
pub mod providers;
pub mod rules;
