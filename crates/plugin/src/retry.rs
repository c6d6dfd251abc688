//! `retry rollout NAME`: `{"status":{"abort":false}}` on the status subresource, as
//! `kubectl argo rollouts retry rollout` writes it; the controller runs the steps again. A
//! rollout that is not aborted is left alone, as Argo CD's `retry` action leaves it.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Context, Error, print};

/// What to retry.
#[derive(Debug, Subcommand)]
pub enum Retry {
    /// An aborted rollout: its update starts over from the first step.
    #[command(
        visible_aliases = ["ro", "rollouts"],
        after_help = "Example:\n  kubectl sluice retry rollout shop"
    )]
    Rollout(RetryRollout),
    /// An Experiment: its status is cleared and the controller starts it over.
    #[command(
        visible_aliases = ["exp", "experiments"],
        after_help = "Example:\n  kubectl sluice retry experiment shop-6f9c7d-2-0"
    )]
    Experiment(super::experiment::ExperimentName),
}

/// `retry rollout`.
#[derive(Debug, Args)]
pub struct RetryRollout {
    /// The rollout's name.
    pub name: String,
}

/// Runs `retry rollout` (and `retry experiment`, in `experiment.rs`).
pub async fn run(ctx: &Context, retry: Retry) -> Result<ExitCode, Error> {
    let args = match retry {
        Retry::Rollout(args) => args,
        Retry::Experiment(args) => return super::experiment::retry(ctx, args).await,
    };
    print(&format!("{}\n", retry_rollout(ctx, &args.name).await?));
    Ok(ExitCode::SUCCESS)
}

/// Retries the rollout `name` if it is aborted, and says what was done: the command and the
/// dashboard share it.
pub(crate) async fn retry_rollout(ctx: &Context, name: &str) -> Result<String, Error> {
    let rollout = ctx.rollout(name).await?;
    if rollout.status.and_then(|s| s.abort) != Some(true) {
        return Ok(format!(
            "rollout \"{name}\" is not aborted; nothing to retry"
        ));
    }
    ctx.patch_status(name, json!({ "status": { "abort": false } }))
        .await?;
    Ok(format!(
        "rollout \"{name}\" retried: the update starts over"
    ))
}
