//! `lint FILE`: checks Rollout manifests offline with the same `validate` the controller runs,
//! printing each problem with its field path. Every YAML (or JSON) document of the file is
//! read; documents of other kinds are skipped.

use std::process::ExitCode;

use clap::Args;
use serde::Deserialize as _;
use serde_json::Value;

use super::{Error, print};
use crate::api::{GROUP, ProblemKind, Rollout, validate};

/// `lint`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes:\n  0  every Rollout is valid\n  1  a problem was found (or the file could not be read)\n\n\
                        Examples:\n  kubectl sluice lint rollout.yaml\n\n  \
                        # Check what Helm would install\n  helm template charts/shop | kubectl sluice lint -"
)]
pub struct LintArgs {
    /// The manifest file; `-` reads standard input.
    pub file: String,
}

/// One problem found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which Rollout: `Rollout/name`, or the document's number when it has no name.
    pub object: String,
    /// JSON path of the field; empty when the document could not be read as a Rollout.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The problems of every Rollout in `text`, and how many Rollouts it holds. Pure.
pub fn lint(text: &str) -> (Vec<Finding>, usize) {
    let mut findings = Vec::new();
    let mut rollouts = 0;
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let object = format!("document {}", i + 1);
        let value = match Value::deserialize(document) {
            Ok(v) => v,
            Err(e) => {
                findings.push(Finding {
                    object,
                    field: String::new(),
                    message: format!("is not valid YAML: {e}"),
                });
                // The parser cannot continue past a broken document.
                break;
            }
        };
        let group = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|v| v.split('/').next());
        if value.get("kind").and_then(Value::as_str) != Some("Rollout") || group != Some(GROUP) {
            continue;
        }
        rollouts += 1;
        let object = match value.pointer("/metadata/name").and_then(Value::as_str) {
            Some(name) => format!("Rollout/{name}"),
            None => format!("Rollout in {object}"),
        };
        match serde_json::from_value::<Rollout>(value) {
            Ok(rollout) => findings.extend(validate(&rollout).into_iter().map(|p| Finding {
                object: object.clone(),
                field: p.field,
                message: match p.kind {
                    ProblemKind::Invalid => p.message,
                    ProblemKind::Unsupported => {
                        format!("{} (the controller refuses it)", p.message)
                    }
                },
            })),
            Err(e) => findings.push(Finding {
                object,
                field: String::new(),
                message: format!("is not a valid Rollout: {e}"),
            }),
        }
    }
    (findings, rollouts)
}

/// Runs `lint`.
pub fn run(args: &LintArgs) -> Result<ExitCode, Error> {
    let read = |e| Error::Read {
        path: args.file.clone(),
        source: e,
    };
    let text = if args.file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(read)?
    } else {
        std::fs::read_to_string(&args.file).map_err(read)?
    };
    let (findings, rollouts) = lint(&text);
    let mut out = String::new();
    for f in &findings {
        let field = if f.field.is_empty() {
            String::new()
        } else {
            format!("{}: ", f.field)
        };
        out.push_str(&format!(
            "{}: {}: {field}{}\n",
            args.file, f.object, f.message
        ));
    }
    let noun = if rollouts == 1 { "Rollout" } else { "Rollouts" };
    if findings.is_empty() {
        out.push_str(&format!("{}: {rollouts} {noun}, no problems\n", args.file));
        print(&out);
        Ok(ExitCode::SUCCESS)
    } else {
        out.push_str(&format!(
            "{}: {} problem(s) in {rollouts} {noun}\n",
            args.file,
            findings.len()
        ));
        print(&out);
        Ok(ExitCode::FAILURE)
    }
}
