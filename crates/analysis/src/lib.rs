//! What an analysis means, purely: no client, no clock, no I/O.
//!
//! - [`condition`]: `successCondition` / `failureCondition` in the expr language (expr-lang),
//!   with Argo's helpers and static caps; compiled when a template or run is validated.
//! - [`limits`]: the bounds on evaluation and on what is read from outside.
//! - [`args`]: templates merged into a run, arguments resolved (`value`, `secretKeyRef`,
//!   `fieldRef`, `podTemplateHashValue`), `{{args.x}}` substituted.
//! - [`rules`]: a run's spec read and checked once ([`rules::RunRules`]); also
//!   [`rules::validate_template`], which `kubectl sluice lint` runs too.
//! - [`plan`]: which measurements are due, folding a measurement into the status, the metric
//!   and run phases, and the exact time to look again.
//!
//! The AnalysisRun controller (providers, evaluation workers, the watch loop) is in the `sluice`
//! crate; this one is shared by it, the Rollout planner and the plugin.
#![forbid(unsafe_code)]

pub mod args;
pub mod condition;
pub mod limits;
pub mod plan;
pub mod rules;

#[cfg(test)]
pub(crate) mod fuzz;
