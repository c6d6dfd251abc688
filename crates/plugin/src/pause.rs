//! `pause NAME`: `{"spec":{"paused":true}}`, as Argo CD's `pause` action and
//! `kubectl argo rollouts pause` write it; `promote` resumes.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{Context, Error, print};

/// `pause`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  # Hold the rollout where it is until promoted\n  \
                        kubectl sluice pause shop"
)]
pub struct PauseArgs {
    /// The rollout's name.
    pub name: String,
}

/// Runs `pause`.
pub async fn run(ctx: &Context, args: PauseArgs) -> Result<ExitCode, Error> {
    ctx.patch_spec(&args.name, json!({ "spec": { "paused": true } }))
        .await?;
    print(&format!(
        "rollout \"{}\" paused (spec.paused); `kubectl sluice promote {}` resumes it\n",
        args.name, args.name
    ));
    Ok(ExitCode::SUCCESS)
}
