//! `skip-step NAME`: the patch of Argo CD's `skip-current-step` action, on the status
//! subresource: `status.currentStepIndex` plus one, and the pause conditions cleared when there
//! are any. Only a canary with a step left to skip can skip one.
//!
//! The controller's own pause marker (`controllerPause`) goes too: with it left behind, a pause
//! step the rollout lands on would read as already promoted and be skipped as well.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};
use sluice_api::Rollout;

use super::{Context, Error, print};

/// `skip-step`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  # Move past the step the canary stands at (a pause, an analysis, …)\n  \
                        kubectl sluice skip-step shop"
)]
pub struct SkipStepArgs {
    /// The rollout's name.
    pub name: String,
}

/// The status patch skipping the current step, and the index it moves to. Pure.
pub fn skip_patch(rollout: &Rollout) -> Result<(Value, i32), Error> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let steps = rollout
        .spec
        .canary()
        .map(|c| c.steps.len())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Error::Refused(format!(
                "rollout \"{name}\" is not a canary with steps: no step to skip"
            ))
        })?;
    let status = rollout.status.clone().unwrap_or_default();
    let index = status.current_step_index.unwrap_or(0);
    if usize::try_from(index).is_ok_and(|i| i >= steps) {
        return Err(Error::Refused(format!(
            "rollout \"{name}\" has run all {steps} steps: no step to skip"
        )));
    }
    let mut patch = json!({ "status": { "currentStepIndex": index + 1 } });
    if !status.pause_conditions.is_empty() {
        patch["status"]["pauseConditions"] = Value::Null;
    }
    if status.controller_pause.is_some() {
        patch["status"]["controllerPause"] = Value::Null;
    }
    Ok((patch, index + 1))
}

/// Runs `skip-step`.
pub async fn run(ctx: &Context, args: SkipStepArgs) -> Result<ExitCode, Error> {
    let rollout = ctx.rollout(&args.name).await?;
    let (patch, next) = skip_patch(&rollout)?;
    ctx.patch_status(&args.name, patch).await?;
    let total = rollout.spec.canary().map_or(0, |c| c.steps.len());
    print(&format!(
        "rollout \"{}\" skipped step {}: now at step {next}/{total}\n",
        args.name,
        next - 1
    ));
    Ok(ExitCode::SUCCESS)
}
