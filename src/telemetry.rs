//! Structured logging for the binaries: human-readable on a terminal, JSON lines otherwise, so
//! the same binary reads well in a shell and parses well in a log pipeline.

use std::io::IsTerminal;

use anyhow::Context as _;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable text when stderr is a terminal, JSON otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber, writing to stderr. `filter` is an `EnvFilter` directive such
/// as `info` or `sluice=debug,kube=info`; `RUST_LOG`, when set and valid, wins.
///
/// Fails when `filter` is not a valid directive (rather than silently logging less than asked)
/// or when a global subscriber is already installed.
pub fn try_init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(from_env) => from_env,
        Err(_) => {
            EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?
        }
    };
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    installed.context("installing the log subscriber")
}

/// Like [`try_init`], for callers with nowhere to report a failure: an invalid `filter` falls
/// back to `info`, and an already installed subscriber is kept.
pub fn init(format: LogFormat, filter: &str) {
    if try_init(format, filter).is_err() {
        let _ = try_init(format, "info");
    }
}
