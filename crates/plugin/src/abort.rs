//! `abort NAME`: `{"status":{"abort":true}}` on the status subresource, as Argo CD's `abort`
//! action and `kubectl argo rollouts abort` write it. Traffic and replicas go back to the stable
//! version; `retry rollout` starts the update again.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{Context, Error, print};

/// `abort`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  # Send traffic and replicas back to the stable version\n  \
                        kubectl sluice abort shop"
)]
pub struct AbortArgs {
    /// The rollout's name.
    pub name: String,
}

/// Runs `abort`.
pub async fn run(ctx: &Context, args: AbortArgs) -> Result<ExitCode, Error> {
    print(&format!("{}\n", abort(ctx, &args.name).await?));
    Ok(ExitCode::SUCCESS)
}

/// Aborts the rollout `name` and says so: the command and the dashboard share it.
pub(crate) async fn abort(ctx: &Context, name: &str) -> Result<String, Error> {
    ctx.patch_status(name, json!({ "status": { "abort": true } }))
        .await?;
    Ok(format!(
        "rollout \"{name}\" aborted: traffic and replicas go back to the stable version"
    ))
}
