//! Counting one client's API requests in the apiserver's audit log (JSON lines, Metadata level),
//! by the start of its `User-Agent`, so the control plane's own traffic is never mixed in.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Seek, SeekFrom},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cluster;

/// A position in the audit log: requests are counted from here.
#[derive(Clone, Copy, Debug)]
pub struct Mark(u64);

/// Requests by verb and resource (`create replicasets`, `patch rollouts/status`, …).
pub type Counts = BTreeMap<String, u64>;

/// The end of the audit log now.
pub fn mark() -> Result<Mark> {
    let len = std::fs::metadata(cluster::audit_log())
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(Mark(len))
}

/// The requests whose user agent starts with `agent` since `from`, after the batch backend
/// flushed (it writes at least every second).
pub fn count_since(from: Mark, agent: &str) -> Result<Counts> {
    std::thread::sleep(Duration::from_millis(1500));
    let path = cluster::audit_log();
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // A rotated log starts over: count it all.
    let start = if file.metadata()?.len() >= from.0 {
        from.0
    } else {
        0
    };
    file.seek(SeekFrom::Start(start))?;
    let mut counts = Counts::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if !event["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with(agent))
        {
            continue;
        }
        let object = &event["objectRef"];
        let mut resource = object["resource"].as_str().unwrap_or("-").to_string();
        if let Some(sub) = object["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        let verb = event["verb"].as_str().unwrap_or("-");
        *counts.entry(format!("{verb} {resource}")).or_default() += 1;
    }
    Ok(counts)
}

/// Whether a `verb resource` key is a write.
pub fn is_write(key: &str) -> bool {
    ["create ", "update ", "patch ", "delete "]
        .iter()
        .any(|verb| key.starts_with(verb))
}
