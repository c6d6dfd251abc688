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
    ctx.patch_status(&args.name, json!({ "status": { "abort": true } }))
        .await?;
    print(&format!(
        "rollout \"{}\" aborted: traffic and replicas go back to the stable version\n",
        args.name
    ));
    Ok(ExitCode::SUCCESS)
}
