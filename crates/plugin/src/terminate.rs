//! `terminate analysisrun NAME`: `{"spec":{"terminate":true}}` on the AnalysisRun, as
//! `kubectl argo rollouts terminate analysisrun` writes it. The AnalysisRun controller stops its
//! measurements and ends the run; a run already completed is left alone and said so.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use sluice_api::AnalysisRun;

use super::{Context, Error, print};

/// What to terminate.
#[derive(Debug, Subcommand)]
pub enum Terminate {
    /// A running AnalysisRun: its measurements stop and the run ends.
    #[command(
        name = "analysisrun",
        visible_aliases = ["ar", "analysisruns"],
        after_help = "Example:\n  kubectl sluice terminate analysisrun shop-6f9c7d-2-1"
    )]
    AnalysisRun(TerminateAnalysisRun),
    /// A running Experiment: `spec.terminate`; it ends, judged by what its analyses said so far.
    #[command(
        visible_aliases = ["exp", "experiments"],
        after_help = "Example:\n  kubectl sluice terminate experiment shop-6f9c7d-2-0"
    )]
    Experiment(super::experiment::ExperimentName),
}

/// `terminate analysisrun`.
#[derive(Debug, Args)]
pub struct TerminateAnalysisRun {
    /// The AnalysisRun's name.
    pub name: String,
}

/// Runs `terminate`.
pub async fn run(ctx: &Context, terminate: Terminate) -> Result<ExitCode, Error> {
    let args = match terminate {
        Terminate::AnalysisRun(args) => args,
        Terminate::Experiment(args) => return super::experiment::terminate(ctx, args).await,
    };
    print(&format!("{}\n", terminate_run(ctx, &args.name).await?));
    Ok(ExitCode::SUCCESS)
}

/// Asks the AnalysisRun `name` to end, unless it already has, and says what was done.
async fn terminate_run(ctx: &Context, name: &str) -> Result<String, Error> {
    let runs = ctx.api::<AnalysisRun>();
    let describe = |verb| ctx.request(verb, "analysisruns", "AnalysisRun", Some(name));
    let run = runs.get(name).await.map_err(|e| describe("get").error(e))?;
    if let Some(phase) = run
        .status
        .as_ref()
        .map(|s| s.phase)
        .filter(|p| p.is_completed())
    {
        return Ok(format!(
            "analysisrun \"{name}\" already completed ({phase:?}): nothing to terminate"
        ));
    }
    runs.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&json!({ "spec": { "terminate": true } })),
    )
    .await
    .map_err(|e| describe("patch").error(e))?;
    Ok(format!("analysisrun \"{name}\" terminated"))
}
