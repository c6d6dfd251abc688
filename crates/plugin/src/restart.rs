//! `restart NAME [--in D]`: `{"spec":{"restartAt":"<RFC 3339>"}}`, as Argo CD's `restart`
//! action and `kubectl argo rollouts restart` write it. The controller replaces every pod
//! created before that time, a few at a time, once the time has come.

use std::{process::ExitCode, time::Duration};

use clap::Args;
use jiff::{RoundMode, Timestamp, TimestampRound, Unit};
use serde_json::json;

use super::{Context, Error, print, status::parse_duration};

/// `restart`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Restart every pod now\n  kubectl sluice restart shop\n\n  \
                        # Restart every pod in ten minutes\n  kubectl sluice restart shop --in 10m"
)]
pub struct RestartArgs {
    /// The rollout's name.
    pub name: String,
    /// Restart after this long instead of now, e.g. 30s, 10m, 1h.
    #[arg(short, long = "in", value_name = "DURATION", value_parser = parse_duration)]
    pub in_: Option<Duration>,
}

/// The `spec.restartAt` for `now` plus `delay`: whole seconds (as Argo CD writes it), rounded up
/// so that every pod running now is older than it.
pub fn restart_at(now: Timestamp, delay: Duration) -> Result<Timestamp, Error> {
    let delay = jiff::SignedDuration::try_from(delay)
        .map_err(|e| Error::Refused(format!("--in is too long: {e}")))?;
    now.checked_add(delay)
        .and_then(|t| {
            t.round(
                TimestampRound::new()
                    .smallest(Unit::Second)
                    .mode(RoundMode::Ceil),
            )
        })
        .map_err(|e| Error::Refused(format!("--in is too long: {e}")))
}

/// Runs `restart`.
pub async fn run(ctx: &Context, args: RestartArgs) -> Result<ExitCode, Error> {
    let message = restart(ctx, &args.name, args.in_.unwrap_or_default()).await?;
    print(&format!("{message}\n"));
    Ok(ExitCode::SUCCESS)
}

/// Restarts the pods of the rollout `name` after `delay` and says when: the command and the
/// dashboard share it.
pub(crate) async fn restart(ctx: &Context, name: &str, delay: Duration) -> Result<String, Error> {
    let at = restart_at(Timestamp::now(), delay)?;
    let at = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    ctx.patch_spec(name, json!({ "spec": { "restartAt": at } }))
        .await?;
    Ok(format!("rollout \"{name}\" restarts its pods at {at}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_at_is_whole_seconds_rounded_up() {
        let now: Timestamp = "2025-03-01T10:00:00.250Z".parse().expect("a time");
        let at = restart_at(now, Duration::from_secs(600)).expect("a time");
        assert_eq!(at.to_string(), "2025-03-01T10:10:01Z");
        let exact: Timestamp = "2025-03-01T10:00:00Z".parse().expect("a time");
        assert_eq!(
            restart_at(exact, Duration::ZERO)
                .expect("a time")
                .to_string(),
            "2025-03-01T10:00:00Z"
        );
    }
}
