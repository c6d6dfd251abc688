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
}

/// `retry rollout`.
#[derive(Debug, Args)]
pub struct RetryRollout {
    /// The rollout's name.
    pub name: String,
}

/// Runs `retry rollout`.
pub async fn run(ctx: &Context, retry: Retry) -> Result<ExitCode, Error> {
    let Retry::Rollout(args) = retry;
    let rollout = ctx.rollout(&args.name).await?;
    if rollout.status.and_then(|s| s.abort) != Some(true) {
        print(&format!(
            "rollout \"{}\" is not aborted; nothing to retry\n",
            args.name
        ));
        return Ok(ExitCode::SUCCESS);
    }
    ctx.patch_status(&args.name, json!({ "status": { "abort": false } }))
        .await?;
    print(&format!(
        "rollout \"{}\" retried: the update starts over\n",
        args.name
    ));
    Ok(ExitCode::SUCCESS)
}
