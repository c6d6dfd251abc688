//! `lint FILE`: checks Rollout manifests offline with the same `validate` the controller runs,
//! and AnalysisTemplates and ClusterAnalysisTemplates with the checks a run made from them gets
//! (their conditions within the controller's caps included), printing each problem with its
//! field path. Every document of Sluice's kinds (AnalysisRuns and Experiments too) is also checked
//! for fields its CRD does not declare. Every YAML (or JSON) document of the file is read;
//! documents of other kinds are skipped.

use std::process::ExitCode;

use clap::Args;
use serde::Deserialize as _;
use serde_json::Value;
use sluice_analysis::rules::validate_template;
use sluice_api::{AnalysisTemplateSpec, ProblemKind, Rollout, validate, vocab::GROUP};

use super::{Error, fields, print};

/// `lint`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes:\n  0  every Rollout is valid\n  1  a problem was found (or the file could not be read)\n\n\
                        Examples:\n  kubectl sluice lint rollout.yaml\n  kubectl sluice lint -f rollout.yaml\n\n  \
                        # Check what Helm would install\n  helm template charts/shop | kubectl sluice lint -"
)]
pub struct LintArgs {
    /// The manifest file; `-` reads standard input.
    #[arg(required_unless_present = "filename", conflicts_with = "filename")]
    pub file: Option<String>,
    /// The manifest file, as Argo's `lint -f` takes it.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub filename: Option<String>,
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

/// The problems of every Rollout and analysis template in `text`, and how many of them it
/// holds. Pure.
pub fn lint(text: &str) -> (Vec<Finding>, usize) {
    let mut findings = Vec::new();
    let mut checked = 0;
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
        let ours = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|v| v.split('/').next())
            == Some(GROUP);
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !ours || !fields::is_known_kind(&kind) {
            continue;
        }
        checked += 1;
        let object = match value.pointer("/metadata/name").and_then(Value::as_str) {
            Some(name) => format!("{kind}/{name}"),
            None => format!("{kind} in {object}"),
        };
        findings.extend(fields::unknown_fields(&kind, &value).into_iter().map(|f| {
            Finding {
                object: object.clone(),
                field: f.path,
                message: "unknown field: the API server drops it (and `kubectl apply \
                              --validate=strict` refuses it), so it does nothing"
                    .into(),
            }
        }));
        if matches!(
            kind.as_str(),
            "AnalysisTemplate" | "ClusterAnalysisTemplate"
        ) {
            findings.extend(lint_template(&kind, &object, value));
            continue;
        }
        if kind != "Rollout" {
            continue;
        }
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
    (findings, checked)
}

/// The problem of an AnalysisTemplate or ClusterAnalysisTemplate (both have the same spec), if
/// any: the first thing a run made from it would refuse.
fn lint_template(kind: &str, object: &str, value: Value) -> Option<Finding> {
    let object = object.to_string();
    let spec = value.get("spec").cloned().unwrap_or(Value::Null);
    let problem = match serde_json::from_value::<AnalysisTemplateSpec>(spec) {
        Ok(spec) => validate_template(&spec).err()?.to_string(),
        Err(e) => format!("is not a valid {kind}: {e}"),
    };
    Some(Finding {
        object,
        field: "spec".into(),
        message: problem,
    })
}

/// Runs `lint`.
pub fn run(args: &LintArgs) -> Result<ExitCode, Error> {
    let file = args
        .file
        .as_deref()
        .or(args.filename.as_deref())
        .unwrap_or("-");
    let read = |e| Error::Read {
        path: file.to_string(),
        source: e,
    };
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(read)?
    } else {
        std::fs::read_to_string(file).map_err(read)?
    };
    let (findings, checked) = lint(&text);
    let mut out = String::new();
    for f in &findings {
        let field = if f.field.is_empty() {
            String::new()
        } else {
            format!("{}: ", f.field)
        };
        out.push_str(&format!("{file}: {}: {field}{}\n", f.object, f.message));
    }
    let noun = if checked == 1 { "object" } else { "objects" };
    if findings.is_empty() {
        out.push_str(&format!("{file}: {checked} {noun}, no problems\n"));
        print(&out);
        Ok(ExitCode::SUCCESS)
    } else {
        out.push_str(&format!(
            "{file}: {} problem(s) in {checked} {noun}\n",
            findings.len()
        ));
        print(&out);
        Ok(ExitCode::FAILURE)
    }
}
