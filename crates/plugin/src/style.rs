//! How output looks: colour and status symbols on a terminal, plain words when piped, and never
//! wider than the terminal where that can be avoided. Renderers take a [`Style`] instead of
//! asking the terminal themselves, so they stay pure and testable at any width.

use std::io::IsTerminal;

use jiff::Timestamp;

/// The output's width and whether it may use colour and symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Columns available; lines are cut to fit where they can be.
    pub width: usize,
    /// ANSI colours and status symbols (a terminal), or plain text (a pipe, a file, `NO_COLOR`).
    pub color: bool,
}

impl Style {
    /// Width when nothing says how wide the output is (a pipe without `COLUMNS`).
    pub const UNLIMITED: usize = usize::MAX / 4;

    /// The style of standard output: the terminal's width and colour, or plain and unlimited
    /// when piped (`COLUMNS` still sets a width).
    pub fn of_stdout() -> Self {
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|c| *c > 0);
        let width = match (terminal, terminal_size::terminal_size_of(&stdout)) {
            (true, Some((terminal_size::Width(w), _))) => usize::from(w),
            _ => columns.unwrap_or(Self::UNLIMITED),
        };
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            width,
            color: terminal && !no_color,
        }
    }

    /// Plain text of unlimited width.
    pub fn plain() -> Self {
        Self {
            width: Self::UNLIMITED,
            color: false,
        }
    }

    /// `text` in `paint` when colour is on.
    pub fn paint(&self, paint: Paint, text: &str) -> String {
        if self.color && paint != Paint::None {
            format!("\x1b[{}m{text}\x1b[0m", paint.code())
        } else {
            text.to_string()
        }
    }

    /// The symbol followed by a space when symbols are on, else nothing.
    pub fn icon(&self, icon: &str) -> String {
        if self.color && !icon.is_empty() {
            format!("{icon} ")
        } else {
            String::new()
        }
    }
}

/// A colour for a span of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Paint {
    /// No colour.
    None,
    /// Healthy, successful, stable, active.
    Green,
    /// Progressing, canary, in progress.
    Yellow,
    /// Degraded, failed, aborted.
    Red,
    /// Preview.
    Blue,
    /// Paused, scaled down, unknown.
    Grey,
    /// Emphasis.
    Bold,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Self::None => "0",
            Self::Green => "32",
            Self::Yellow => "33",
            Self::Red => "31",
            Self::Blue => "34",
            Self::Grey => "90",
            Self::Bold => "1",
        }
    }
}

/// Symbols of states and kinds, shown on a terminal only.
pub mod icons {
    /// Healthy, running, successful.
    pub const OK: &str = "✔";
    /// Degraded, failed.
    pub const BAD: &str = "✖";
    /// Progressing, pending.
    pub const PROGRESSING: &str = "◌";
    /// Paused.
    pub const PAUSED: &str = "‖";
    /// Error, invalid.
    pub const WARNING: &str = "⚠";
    /// Unknown, inconclusive.
    pub const UNKNOWN: &str = "?";
    /// Scaled down, terminated.
    pub const NEUTRAL: &str = "•";
    /// A Rollout.
    pub const ROLLOUT: &str = "⟳";
    /// A revision.
    pub const REVISION: &str = "#";
    /// A ReplicaSet.
    pub const REPLICA_SET: &str = "⧉";
    /// A Pod.
    pub const POD: &str = "□";
    /// An AnalysisRun.
    pub const ANALYSIS_RUN: &str = "α";
    /// An Experiment (Argo's symbol).
    pub const EXPERIMENT: &str = "Σ";
}

/// The number of terminal columns `text` takes (one per character; the symbols used here are
/// all one column wide).
pub fn columns(text: &str) -> usize {
    text.chars().count()
}

/// `text` cut to `width` columns, ending in `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    if columns(text) <= width {
        return text.to_string();
    }
    match width {
        0 => String::new(),
        _ => {
            let mut cut: String = text.chars().take(width - 1).collect();
            cut.push('…');
            cut
        }
    }
}

/// Age as kubectl prints it: `45s`, `5m30s`, `12m`, `3h20m`, `5h`, `2d4h`, `12d`.
pub fn age(since: Option<Timestamp>, now: Timestamp) -> String {
    let Some(since) = since else {
        return "<unknown>".into();
    };
    let secs = now.duration_since(since).as_secs().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86400 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

/// The symbol and colour of a rollout's health, a ReplicaSet's or a pod's status, or a
/// finished AnalysisRun's phase, by the word shown (a running run looks like `Progressing`).
pub fn look(status: &str) -> (&'static str, Paint) {
    match status {
        "Healthy" | "Running" | "Completed" | "Successful" => (icons::OK, Paint::Green),
        "Progressing" | "Pending" | "ContainerCreating" | "Terminating" => {
            (icons::PROGRESSING, Paint::Yellow)
        }
        "Paused" => (icons::PAUSED, Paint::Grey),
        "ScaledDown" => (icons::NEUTRAL, Paint::Grey),
        "Inconclusive" | "Unknown" => (icons::UNKNOWN, Paint::Grey),
        "Degraded" | "Failed" | "CrashLoopBackOff" | "InvalidImageName" => (icons::BAD, Paint::Red),
        s if s.starts_with("Init:") => (icons::PROGRESSING, Paint::Yellow),
        s if s.starts_with("ExitCode:") || s.starts_with("Signal:") => (icons::BAD, Paint::Red),
        s if s.ends_with("Error") || s.starts_with("Err") || s.ends_with("BackOff") => {
            (icons::WARNING, Paint::Red)
        }
        _ => ("", Paint::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("example/app:1", 20), "example/app:1");
        assert_eq!(truncate("example/app:1", 8), "example…");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2025-01-10T12:00:00Z".parse().expect("a time");
        let ago = |s: i64| Some(now - jiff::SignedDuration::from_secs(s));
        assert_eq!(age(ago(45), now), "45s");
        assert_eq!(age(ago(330), now), "5m30s");
        assert_eq!(age(ago(720), now), "12m");
        assert_eq!(age(ago(3 * 3600 + 1200), now), "3h20m");
        assert_eq!(age(ago(30 * 3600), now), "30h");
        assert_eq!(age(ago(2 * 86400 + 4 * 3600), now), "2d4h");
        assert_eq!(age(ago(12 * 86400), now), "12d");
        assert_eq!(age(ago(-5), now), "0s");
        assert_eq!(age(None, now), "<unknown>");
    }
}
