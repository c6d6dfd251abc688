//! `promote NAME [--full]`: the writes of `kubectl argo rollouts promote` (v1.9), decided from
//! the rollout alone, so a script that promotes with either plugin moves the rollout the same way.
//!
//! - promote, paused by the controller (a pause step, blue/green's preview, an analysis):
//!   `{"status":{"pauseConditions":null}}` on the status subresource; the controller reads
//!   `status.controllerPause: true` without a pause condition as "promoted".
//! - promote, paused by an *inconclusive step analysis*: the pause goes, the step passes and the
//!   controller's pause marker is reset, `{"status":{"pauseConditions":null,
//!   "controllerPause":false,"currentStepIndex":N+1}}`, so a pause step right after it holds.
//! - promote, a canary with a step left and no pause condition (mid-`setWeight`, mid-analysis,
//!   or paused by `spec.paused` only): it moves on to the next step,
//!   `{"status":{"pauseConditions":null,"currentStepIndex":N+1}}`.
//! - promote of a rollout paused by `spec.paused`: `{"spec":{"paused":false}}` as well.
//! - promote --full: `{"status":{"promoteFull":true}}` unless the current version is already the
//!   stable one, and `{"spec":{"paused":false}}` when `spec.paused` is set (Argo's fix #4265:
//!   a manually paused rollout finishes too).
//!
//! Where Sluice differs: a step skip also clears `controllerPause` when it is set, as `skip-step`
//! does: Sluice reads a marker left behind as a promote of the next pause, which would skip that
//! pause too. When nothing would change (a rollout not paused with no step left), Argo writes a
//! patch that changes nothing and says "promoted"; Sluice writes nothing and says so. Both exit 0.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};
use sluice_api::{AnalysisPhase, Rollout};

use super::{Context, Error, info::pause_reasons, print};

/// `promote`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Let a rollout paused at a step (or by spec.paused) continue; a canary that is not\n  \
                        # paused moves on to its next step\n  \
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
    /// Patches to write, and what to say once written.
    Write {
        /// Merge patch of the status subresource.
        status: Option<Value>,
        /// Merge patch of the spec (the main resource).
        spec: Option<Value>,
        /// The line printed once both are written.
        said: String,
    },
    /// Nothing to write; the reason.
    Nothing(String),
}

/// Whether the canary's current step analysis is Inconclusive.
fn step_analysis_inconclusive(rollout: &Rollout) -> bool {
    rollout
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.current_step_analysis_run_status.as_ref())
        .is_some_and(|r| r.status == Some(AnalysisPhase::Inconclusive))
}

/// What promoting `rollout` (fully with `full`) writes. Pure.
pub fn promotion(rollout: &Rollout, full: bool) -> Promotion {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let status = rollout.status.clone().unwrap_or_default();
    let unpause = rollout
        .spec
        .is_paused()
        .then(|| json!({ "spec": { "paused": false } }));
    if full {
        let promote = (status.current_pod_hash != status.stable_rs)
            .then(|| json!({ "status": { "promoteFull": true } }));
        return match (promote, unpause) {
            (None, None) => Promotion::Nothing(format!(
                "rollout \"{name}\" is already fully promoted; nothing to do"
            )),
            (None, spec @ Some(_)) => Promotion::Write {
                status: None,
                spec,
                said: format!("rollout \"{name}\" is already fully promoted; spec.paused lifted"),
            },
            (status @ Some(_), spec) => {
                let lifted = if spec.is_some() {
                    "; spec.paused lifted"
                } else {
                    ""
                };
                Promotion::Write {
                    status,
                    spec,
                    said: format!(
                        "rollout \"{name}\" fully promoted: remaining steps, pauses and analyses skipped{lifted}"
                    ),
                }
            }
        };
    }
    let steps = rollout.spec.canary().map_or(0, |c| c.steps.len());
    let steps = i32::try_from(steps).unwrap_or(i32::MAX);
    let index = status.current_step_index.unwrap_or(0);
    let next = (index < steps).then_some(index + 1);
    let reasons = pause_reasons(rollout);
    let paused_by = if reasons.is_empty() {
        String::new()
    } else {
        format!(" (was paused by {})", reasons.join(", "))
    };
    let by_controller = !status.pause_conditions.is_empty();
    let (status_patch, said) = if by_controller
        && steps > 0
        && step_analysis_inconclusive(rollout)
        && status.controller_pause == Some(true)
    {
        let to = next.unwrap_or(steps);
        (
            Some(json!({ "status": {
                "pauseConditions": null, "controllerPause": false, "currentStepIndex": to
            } })),
            format!(
                "rollout \"{name}\" promoted{paused_by}: the inconclusive analysis step passes, now at step {to}/{steps}"
            ),
        )
    } else if by_controller {
        (
            Some(json!({ "status": { "pauseConditions": null } })),
            format!("rollout \"{name}\" promoted{paused_by}"),
        )
    } else if let Some(to) = next {
        let mut patch = json!({ "status": { "pauseConditions": null, "currentStepIndex": to } });
        if status.controller_pause.is_some() {
            patch["status"]["controllerPause"] = Value::Null;
        }
        let said = if paused_by.is_empty() {
            format!("rollout \"{name}\" promoted: step {index} skipped, now at step {to}/{steps}")
        } else {
            format!("rollout \"{name}\" promoted{paused_by}: now at step {to}/{steps}")
        };
        (Some(patch), said)
    } else {
        (None, format!("rollout \"{name}\" promoted{paused_by}"))
    };
    if status_patch.is_none() && unpause.is_none() {
        return Promotion::Nothing(format!(
            "rollout \"{name}\" is not paused and has no step left to move to; nothing to promote"
        ));
    }
    Promotion::Write {
        status: status_patch,
        spec: unpause,
        said,
    }
}

/// Runs `promote`.
pub async fn run(ctx: &Context, args: PromoteArgs) -> Result<ExitCode, Error> {
    print(&format!("{}\n", promote(ctx, &args.name, args.full).await?));
    Ok(ExitCode::SUCCESS)
}

/// Promotes the rollout `name` (fully with `full`) and says what was done: the command and the
/// dashboard's promote buttons share it.
pub(crate) async fn promote(ctx: &Context, name: &str, full: bool) -> Result<String, Error> {
    let rollout = ctx.rollout(name).await?;
    Ok(match promotion(&rollout, full) {
        Promotion::Nothing(why) => why,
        Promotion::Write { status, spec, said } => {
            // The status first, as Argo's plugin: a failure there leaves the spec untouched.
            if let Some(patch) = status {
                ctx.patch_status(name, patch).await?;
            }
            if let Some(patch) = spec {
                ctx.patch_spec(name, patch).await?;
            }
            said
        }
    })
}
