//! `status NAME [--watch=false] [-t D]`: waits until the rollout is Healthy or Degraded, printing
//! each change, with an exit code per outcome a CI pipeline can gate on (as Argo's `status`
//! does, a rollout waiting at a pause is still in progress); `--watch=false` looks once.

use std::{pin::pin, process::ExitCode, time::Duration};

use clap::Args;
use futures::StreamExt as _;
use kube::runtime::{WatchStreamExt as _, watcher};
use sluice_api::Rollout;

use super::{
    Context, Error,
    info::{Health, health, pause_reasons},
    print,
    style::{Style, look, truncate},
};

const HELP: &str = "\
Exit codes:
  0  Healthy: the update is done and every pod available
  1  Degraded: an invalid spec, or the progress deadline exceeded
  2  wrong usage
  3  --timeout passed first (the last status is printed): still Progressing, or Paused
     (a pause step, a blue/green preview, an inconclusive analysis, spec.paused)
  4  the rollout could not be watched: not found, forbidden, no cluster reachable, or
     deleted while watched
  5  aborted (Degraded): by a failed analysis or a person; traffic is back on stable
  130  interrupted (Ctrl-C)
With --watch=false the status is printed once: 1 or 5 when Degraded, 0 otherwise.

Examples:
  # Wait until the rollout is Healthy (exit 0) or Degraded (exit 1, or 5 if aborted),
  # at most 10 minutes
  kubectl sluice status shop --timeout 10m

  # Print the status once
  kubectl sluice status shop --watch=false";

/// Exit code: `--timeout` passed before the rollout was Healthy or Degraded.
pub const TIMED_OUT: u8 = 3;
/// Exit code: the rollout could not be read or watched.
pub const UNWATCHABLE: u8 = 4;
/// Exit code: the update was aborted (Degraded, by a failed analysis or a person).
pub const ABORTED: u8 = 5;

/// `status`.
#[derive(Debug, Args)]
#[command(after_help = HELP)]
pub struct StatusArgs {
    /// The rollout's name.
    pub name: String,
    /// Print each change and wait until the rollout is Healthy or Degraded (the default);
    /// `--watch=false` prints the status once.
    #[arg(
        short,
        long,
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub watch: bool,
    /// Give up (exit 3) after this long, e.g. 90s, 5m, 1h; `0` or absent waits for ever.
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// A duration as `5m`, `90s` or `1h30m` (Go syntax, as Argo Rollouts' flags take).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    sluice_api::Duration::parse(text)
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

/// The status line: `Health - message`, the pause reason when paused, with symbol and colour
/// on a terminal, cut to the width.
pub fn status_line(rollout: &Rollout, style: &Style) -> String {
    let (health, mut message) = health(rollout);
    if health == Health::Paused && message.is_empty() {
        message = pause_reasons(rollout).join(", ");
    }
    let word = health.as_str();
    let (icon, paint) = look(word);
    let icon = style.icon(icon);
    let room = style.width.saturating_sub(icon.chars().count());
    let plain = if message.is_empty() {
        word.to_string()
    } else {
        format!("{word} - {message}")
    };
    let cut = truncate(&plain, room.max(word.len()));
    match cut.strip_prefix(word) {
        Some(rest) => format!("{}{rest}", style.paint(paint, &format!("{icon}{word}"))),
        None => cut,
    }
}

/// Whether the rollout's state ends a watch, and with which exit code: Healthy or Degraded; a
/// pause, even one waiting for a person, is still on the way. Pure.
pub fn end_state(rollout: &Rollout) -> Option<ExitCode> {
    match health(rollout).0 {
        Health::Healthy => Some(ExitCode::SUCCESS),
        Health::Degraded => Some(degraded(rollout)),
        Health::Paused | Health::Progressing => None,
    }
}

/// The exit code of a Degraded rollout: [`ABORTED`] when aborted, 1 otherwise.
fn degraded(rollout: &Rollout) -> ExitCode {
    if rollout.status.as_ref().and_then(|s| s.abort) == Some(true) {
        ExitCode::from(ABORTED)
    } else {
        ExitCode::FAILURE
    }
}

/// The exit code of `status` for what `run` returned: an error is said on stderr and exits
/// [`UNWATCHABLE`], so a script tells it apart from a Degraded rollout.
pub fn exit(result: Result<ExitCode, Error>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(UNWATCHABLE)
    })
}

/// Runs `status`.
pub async fn run(ctx: &Context, args: StatusArgs) -> Result<ExitCode, Error> {
    let rollout = ctx.rollout(&args.name).await?;
    let line = status_line(&rollout, &ctx.style);
    print(&format!("{line}\n"));
    let (now, _) = health(&rollout);
    if !args.watch {
        return Ok(match now {
            Health::Degraded => degraded(&rollout),
            _ => ExitCode::SUCCESS,
        });
    }
    if let Some(code) = end_state(&rollout) {
        return Ok(code);
    }
    let timeout = args.timeout.filter(|t| !t.is_zero());
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let mut deadline = pin!(deadline);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", args.name));
    let mut changes = pin!(watcher(ctx.api::<Rollout>(), config).default_backoff());
    let deleted = || Error::Deleted {
        name: args.name.clone(),
    };
    // Whether the list in progress (the first one, or a restarted watch's) holds the rollout.
    let mut listed = false;
    let mut last = line;
    loop {
        tokio::select! {
            _ = &mut deadline => {
                eprintln!(
                    "error: timed out after {} waiting for rollout \"{}\" to be Healthy or Degraded",
                    humanize(timeout.unwrap_or_default()),
                    args.name
                );
                return Ok(ExitCode::from(TIMED_OUT));
            }
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::from(130)),
            next = changes.next() => match next {
                Some(Ok(watcher::Event::Apply(rollout) | watcher::Event::InitApply(rollout))) => {
                    listed = true;
                    let line = status_line(&rollout, &ctx.style);
                    if line != last {
                        print(&format!("{line}\n"));
                        last = line;
                    }
                    if let Some(code) = end_state(&rollout) {
                        return Ok(code);
                    }
                }
                Some(Ok(watcher::Event::Init)) => listed = false,
                // Deleted while we watched, or while the watch was down (a re-list without it).
                Some(Ok(watcher::Event::Delete(_))) => return Err(deleted()),
                Some(Ok(watcher::Event::InitDone)) if !listed => return Err(deleted()),
                Some(Ok(watcher::Event::InitDone)) => {}
                // RBAC refused the watch: retrying cannot help, and waiting would hang.
                Some(Err(e)) => {
                    if let Some(refused) = super::fetch::refused(ctx, "rollouts", "Rollout", &e) {
                        return Err(refused);
                    }
                }
                None => return Ok(ExitCode::from(UNWATCHABLE)),
            }
        }
    }
}

/// `5m`, `90s`, `1h30m`.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(humanize(Duration::from_secs(5400)), "1h30m");
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
        assert_eq!(humanize(Duration::ZERO), "0s");
    }
}
