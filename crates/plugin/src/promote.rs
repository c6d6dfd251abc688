//! `promote NAME [--full]`: the patches of Argo CD's `resume`/`promote-full` actions and of
//! `kubectl argo rollouts promote`, so the three never disagree.
//!
//! - promote: `{"status":{"pauseConditions":null}}` on the status subresource when the
//!   controller paused the rollout, and `{"spec":{"paused":false}}` when a person did. The
//!   controller reads `status.controllerPause: true` without a pause condition as "promoted".
//! - promote --full: `{"status":{"promoteFull":true}}`, unless the current version is already the
//!   stable one.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use sluice_api::Rollout;

use super::{Context, Error, info::pause_reasons, print};

/// `promote`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Let a rollout paused at a step (or by spec.paused) continue\n  \
                        kubectl sluice promote shop\n\n  \
                        # Skip the remaining steps, pauses and analyses and promote at once\n  \
                        kubectl sluice promote shop --full"
)]
pub struct PromoteArgs {
    /// The rollout's name.
    pub name: String,
    /// Skip all remaining steps, pauses and analyses: the current version becomes stable.
    #[arg(long)]
    pub full: bool,
}

/// The writes a promotion makes, decided from the rollout alone.
#[derive(Clone, Debug, PartialEq)]
pub enum Promotion {
    /// Resume: a status patch, a spec patch, or both.
    Resume {
        /// Patch of the status subresource, when the controller paused the rollout.
        status: Option<serde_json::Value>,
        /// Patch of the spec, when `spec.paused` is set.
        spec: Option<serde_json::Value>,
    },
    /// Promote fully (status patch).
    Full(serde_json::Value),
    /// Nothing to write; the reason.
    Nothing(String),
}

/// What promoting `rollout` writes. Pure. A rollout that is not paused is an error: promoting it
/// would do nothing now and could skip a pause later.
pub fn promotion(rollout: &Rollout, full: bool) -> Result<Promotion, Error> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let status = rollout.status.clone().unwrap_or_default();
    if full {
        if status.current_pod_hash.is_some() && status.current_pod_hash == status.stable_rs {
            return Ok(Promotion::Nothing(format!(
                "rollout \"{name}\" is already fully promoted; nothing to do"
            )));
        }
        return Ok(Promotion::Full(
            json!({ "status": { "promoteFull": true } }),
        ));
    }
    let by_controller = !status.pause_conditions.is_empty();
    let by_spec = rollout.spec.is_paused();
    if !by_controller && !by_spec {
        return Err(Error::NotPaused { name });
    }
    Ok(Promotion::Resume {
        status: by_controller.then(|| json!({ "status": { "pauseConditions": null } })),
        spec: by_spec.then(|| json!({ "spec": { "paused": false } })),
    })
}

/// Runs `promote`.
pub async fn run(ctx: &Context, args: PromoteArgs) -> Result<ExitCode, Error> {
    let rollout = ctx.rollout(&args.name).await?;
    match promotion(&rollout, args.full)? {
        Promotion::Nothing(why) => print(&format!("{why}\n")),
        Promotion::Full(patch) => {
            ctx.patch_status(&args.name, patch).await?;
            print(&format!(
                "rollout \"{}\" fully promoted: remaining steps, pauses and analyses skipped\n",
                args.name
            ));
        }
        Promotion::Resume { status, spec } => {
            let reasons = pause_reasons(&rollout).join(", ");
            if let Some(patch) = status {
                ctx.patch_status(&args.name, patch).await?;
            }
            if let Some(patch) = spec {
                ctx.patch_spec(&args.name, patch).await?;
            }
            print(&format!(
                "rollout \"{}\" promoted (was paused by {reasons})\n",
                args.name
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
