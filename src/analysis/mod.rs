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
//! # For the controller
//!
//! ```text
//! // Once, at start-up: the providers share HTTP connections across runs.
//! let providers = Providers::new(Some(client.clone()))?;
//!
//! // Reconciling one AnalysisRun (watch AnalysisRuns, and Jobs labelled
//! // `analysisrun.argoproj.io/uid`, mapped to their owner run):
//! let secrets: BTreeMap<String, Secret> = fetch(args::secret_names(&run.spec.args)).await?;
//! let pass = pass::run_pass(&run, &providers, &secrets, rollout_json.as_ref()).await;
//! if Some(&pass.status) != run.status.as_ref() {
//!     patch_status(&run, &pass.status).await?; // one field manager, status subresource
//! }
//! if pass.completed_now {
//!     event(&run, format!("AnalysisRun{:?}", pass.status.phase)); // Warning for Failed/Error
//! }
//! Ok(match pass.requeue_at {
//!     Some(at) => Action::requeue(at.duration_since(Timestamp::now()).try_into().unwrap_or_default()),
//!     None => Action::await_change(),
//! })
//! ```
//!
//! # For the rollout wiring
//!
//! ```text
//! let templates = args::lookup_templates(&analysis.templates, |r| find(r))?; // TemplateNotFound
//! let merged = args::flatten_templates(&templates)?; // DuplicateMetric, ConflictingArg
//! rules::validate_template(&merged)?; // broken conditions, counts, providers
//! let values = args::RolloutValues { rollout: &rollout_json, stable_hash, latest_hash };
//! let spec = args::run_spec(&merged, &analysis, values)?; // MissingArg, fieldRef errors
//! // create the AnalysisRun with `spec`; terminate it with `spec.terminate: true`
//! ```
//!
//! Every error above is a `thiserror` type whose message names the metric, argument or
//! template; none is transient except [`args::ArgsError::SecretUnavailable`].

pub mod controller;
pub mod evaluator;
pub mod pass;
pub mod providers;
