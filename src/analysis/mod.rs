//! The AnalysisRun controller: measurements, their verdicts, and the run's phase.

pub mod args;
pub mod condition;
