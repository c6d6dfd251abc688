//! Counting one client's API requests in the apiserver's audit log (JSON lines, Metadata level),
//! by the start of its `User-Agent`, so the control plane's own traffic is never mixed in.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::Value;

use sluice_testkit::cluster;

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
/// flushed (it writes at least every second). A log that rotated meanwhile is read on in its
/// backup (the newest `audit-<time>.log`) from `from`, then from the start of the new one.
pub fn count_since(from: Mark, agent: &str) -> Result<Counts> {
    std::thread::sleep(Duration::from_millis(1500));
    let path = cluster::audit_log();
    let mut counts = Counts::new();
    let len = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len >= from.0 {
        count_file(&path, from.0, agent, &mut counts)?;
    } else {
        if let Some(backup) = newest_backup(&path)? {
            count_file(&backup, from.0, agent, &mut counts)?;
        }
        count_file(&path, 0, agent, &mut counts)?;
    }
    Ok(counts)
}

/// The newest rotated audit log next to `path`, if any.
fn newest_backup(path: &Path) -> Result<Option<PathBuf>> {
    let Some(dir) = path.parent() else {
        return Ok(None);
    };
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
        })
        .collect();
    // The names carry the rotation time, so the newest sorts last.
    backups.sort();
    Ok(backups.pop())
}

/// Adds the requests of `agent` in `path` from byte `start` on to `counts`.
fn count_file(path: &Path, start: u64, agent: &str, counts: &mut Counts) -> Result<()> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    file.seek(SeekFrom::Start(start))?;
    for line in BufReader::new(file).lines() {
        let line = line?;
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        // A long-running request (a watch) is logged twice, when its response starts and when it
        // completes: count it once, at completion.
        if event["stage"].as_str() == Some("ResponseStarted")
            || !event["userAgent"]
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
    Ok(())
}

/// Whether a `verb resource` key is a write.
pub fn is_write(key: &str) -> bool {
    ["create ", "update ", "patch ", "delete "]
        .iter()
        .any(|verb| key.starts_with(verb))
}
