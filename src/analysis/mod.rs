//! The AnalysisRun controller: measurements, their verdicts, and the run's phase.
//!
//! What a run means (conditions, arguments, rules, the measurement plan) is decided purely in
//! [`sluice_analysis`]; this module is the edge around it:
//!
//! - [`evaluator`]: conditions evaluated in bounded worker processes.
//! - [`providers`]: the [`providers::Provider`] trait and the registry
//!   ([`providers::Providers`]): prometheus, web, job.
//! - [`pass`]: one reconcile of a run's measurements, all of the above put together.
//! - [`controller`]: the watch loop around [`pass::run_pass`]: status writes, exact requeues,
//!   events and the `analysis_run_*` metrics; a completed run costs nothing.
//!
//! The Rollout controller creates runs from templates with [`sluice_analysis::args`] and
//! [`sluice_analysis::rules::validate_template`]; this controller only measures them.

pub mod controller;
pub mod evaluator;
pub mod pass;
pub mod providers;
pub mod templates;
