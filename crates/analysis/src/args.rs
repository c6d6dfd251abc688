//! Arguments: merging templates into one run, resolving argument values, and substituting
//! `{{args.NAME}}` placeholders into metrics. PURE: Secrets come through [`SecretSource`], the
//! Rollout as its JSON, so every rule here is a unit test.
//!
//! Two moments use this module:
//! - **creating a run** (the rollout wiring): [`lookup_templates`] reads the templates a step
//!   names and those they include, [`flatten_templates`] merges them, [`run_spec`] merges the Rollout's arguments into the templates' (a value given by the
//!   Rollout wins; `fieldRef` and `podTemplateHashValue` are resolved from the Rollout then) and
//!   refuses a required argument left without a value;
//! - **measuring** (the AnalysisRun controller): [`resolve_args`] reads `secretKeyRef` values,
//!   and [`substitute_metric`] fills every placeholder of a metric, in any string field
//!   (query, URL, headers, conditions, `count`, a Job's spec), as Argo does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use sluice_api::{
    AnalysisRunArgument, AnalysisRunSpec, AnalysisTemplateRef, AnalysisTemplateSpec, Argument,
    FieldRef, Metric, PodTemplateHashValue, RolloutAnalysis,
};

pub use self::field_path::field_value;

/// Why arguments or templates could not be turned into a run, or a metric into a query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// A template the Rollout names does not exist.
    #[error("{kind} {name:?} not found")]
    TemplateNotFound {
        /// `AnalysisTemplate` or `ClusterAnalysisTemplate`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// Templates include each other past [`MAX_TEMPLATES`].
    #[error("more than {MAX_TEMPLATES} templates are included (templates including templates)")]
    TooManyTemplates,
    /// Two templates define a metric of the same name.
    #[error("two metrics have the same name {0:?}")]
    DuplicateMetric(String),
    /// Two templates give one argument different values.
    #[error(
        "argument {name:?} is given different values by two templates: {first:?} and {second:?}"
    )]
    ConflictingArg {
        /// The argument.
        name: String,
        /// The first template's value.
        first: String,
        /// The second template's value.
        second: String,
    },
    /// A required argument (no value in the template) was not supplied.
    #[error("args.{0} was not resolved: the template requires it and no value was supplied")]
    MissingArg(String),
    /// A placeholder names no argument.
    #[error("failed to resolve {{{{{placeholder}}}}}{}", in_metric(.metric))]
    UnresolvedPlaceholder {
        /// The text between the braces.
        placeholder: String,
        /// The metric it appears in, when known.
        metric: Option<String>,
    },
    /// `{{` without its `}}`.
    #[error("unterminated placeholder in {text:?}: '{{{{' without '}}}}'")]
    Unterminated {
        /// The text.
        text: String,
    },
    /// The Secret an argument reads does not exist.
    #[error("args.{arg}: Secret {secret:?} not found")]
    SecretNotFound {
        /// The argument.
        arg: String,
        /// The Secret.
        secret: String,
    },
    /// The Secret exists but lacks the key.
    #[error("args.{arg}: key {key:?} does not exist in Secret {secret:?}")]
    SecretKeyMissing {
        /// The argument.
        arg: String,
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
    /// Reading the Secret failed (the API did not answer): worth retrying.
    #[error("args.{arg}: reading Secret {secret:?}: {message}")]
    SecretUnavailable {
        /// The argument.
        arg: String,
        /// The Secret.
        secret: String,
        /// What went wrong.
        message: String,
    },
    /// A `fieldRef` path that is malformed or leads nowhere.
    #[error("args.{arg}: fieldRef {path:?}: {message}")]
    FieldRef {
        /// The argument.
        arg: String,
        /// The field path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// `podTemplateHashValue` asked for a hash that does not exist yet (e.g. no stable version).
    #[error("args.{arg}: the {which:?} pod template hash is not known")]
    PodTemplateHashUnknown {
        /// The argument.
        arg: String,
        /// Which hash.
        which: PodTemplateHashValue,
    },
    /// After substitution the metric no longer reads as a metric (e.g. `count: "abc"`).
    #[error("metric {metric:?} after substituting arguments: {message}")]
    InvalidMetric {
        /// The metric.
        metric: String,
        /// The deserialiser's explanation.
        message: String,
    },
}

/// " in metric \"m\"" or nothing, for messages.
fn in_metric(metric: &Option<String>) -> String {
    metric
        .as_ref()
        .map(|m| format!(" in metric {m:?}"))
        .unwrap_or_default()
}

impl ArgsError {
    /// Whether the error may pass on its own (retry later) rather than being the user's to fix.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::SecretUnavailable { .. })
    }
}

/// The most templates one analysis may bring together, through composition included: a bound
/// on what a tenant's templates that include each other can make the controller read and merge.
pub const MAX_TEMPLATES: usize = 32;

/// Looks up every template the references name and, depth first, the templates each includes
/// (`spec.templates`, Argo's composition), each once (a template included twice, or a cycle, is
/// read once); a missing one is an error naming it.
pub fn lookup_templates<'a>(
    refs: &[AnalysisTemplateRef],
    mut lookup: impl FnMut(&AnalysisTemplateRef) -> Option<&'a AnalysisTemplateSpec>,
) -> Result<Vec<&'a AnalysisTemplateSpec>, ArgsError> {
    let mut seen: Vec<(String, bool)> = Vec::new();
    let mut found = Vec::new();
    // A stack of references still to read, the next one last.
    let mut pending: Vec<AnalysisTemplateRef> = refs.iter().rev().cloned().collect();
    while let Some(r) = pending.pop() {
        let key = (r.template_name.clone(), r.cluster_scope.unwrap_or(false));
        if seen.contains(&key) {
            continue;
        }
        if seen.len() == MAX_TEMPLATES {
            return Err(ArgsError::TooManyTemplates);
        }
        seen.push(key);
        let spec = lookup(&r).ok_or_else(|| ArgsError::TemplateNotFound {
            kind: template_kind(&r),
            name: r.template_name.clone(),
        })?;
        found.push(spec);
        pending.extend(spec.templates.iter().rev().cloned());
    }
    Ok(found)
}

/// `ClusterAnalysisTemplate` or `AnalysisTemplate`, as a reference names it.
pub fn template_kind(r: &AnalysisTemplateRef) -> &'static str {
    if r.cluster_scope.unwrap_or(false) {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

/// Merges several templates into one: metrics concatenated (a duplicate name is an error),
/// dry-run and retention rules concatenated, arguments merged (the same argument with two
/// different values is an error; a value fills an argument another template left open).
pub fn flatten_templates(
    templates: &[&AnalysisTemplateSpec],
) -> Result<AnalysisTemplateSpec, ArgsError> {
    let mut merged = AnalysisTemplateSpec::default();
    for template in templates {
        for metric in &template.metrics {
            if merged.metrics.iter().any(|m| m.name == metric.name) {
                return Err(ArgsError::DuplicateMetric(metric.name.clone()));
            }
            merged.metrics.push(metric.clone());
        }
        merged.dry_run.extend(template.dry_run.iter().cloned());
        merged
            .measurement_retention
            .extend(template.measurement_retention.iter().cloned());
        for arg in &template.args {
            match merged.args.iter_mut().find(|a| a.name == arg.name) {
                None => merged.args.push(arg.clone()),
                Some(prev) => match (&prev.value, &arg.value) {
                    (Some(first), Some(second)) if first != second => {
                        return Err(ArgsError::ConflictingArg {
                            name: arg.name.clone(),
                            first: first.clone(),
                            second: second.clone(),
                        });
                    }
                    (None, _) => *prev = arg.clone(),
                    _ => {}
                },
            }
        }
    }
    Ok(merged)
}

/// What the Rollout offers to resolve its arguments: itself (for `fieldRef`) and the pod
/// template hashes (for `podTemplateHashValue`).
#[derive(Clone, Copy, Debug)]
pub struct RolloutValues<'a> {
    /// The Rollout as JSON.
    pub rollout: &'a serde_json::Value,
    /// The stable ReplicaSet's pod template hash, when there is one.
    pub stable_hash: Option<&'a str>,
    /// The newest ReplicaSet's pod template hash.
    pub latest_hash: Option<&'a str>,
}

/// The spec of a new run: the merged templates, with the Rollout's arguments resolved and
/// merged in, and the Rollout's dry-run and retention rules before the templates'.
///
/// Every argument must end with a value or a `secretKeyRef` (read when measuring).
pub fn run_spec(
    template: &AnalysisTemplateSpec,
    analysis: &RolloutAnalysis,
    rollout: RolloutValues<'_>,
) -> Result<AnalysisRunSpec, ArgsError> {
    let incoming = analysis
        .args
        .iter()
        .map(|a| rollout_arg(a, rollout))
        .collect::<Result<Vec<_>, _>>()?;
    let args = merge_args(&incoming, &template.args)?;
    Ok(AnalysisRunSpec {
        metrics: template.metrics.clone(),
        args,
        terminate: None,
        dry_run: concat(&analysis.dry_run, &template.dry_run),
        measurement_retention: concat(
            &analysis.measurement_retention,
            &template.measurement_retention,
        ),
        ttl_strategy: None,
    })
}

/// Two lists, one after the other.
fn concat<T: Clone>(first: &[T], second: &[T]) -> Vec<T> {
    first.iter().chain(second).cloned().collect()
}

/// A Rollout's argument as a run argument: literal, or resolved from the Rollout now.
fn rollout_arg(
    arg: &AnalysisRunArgument,
    rollout: RolloutValues<'_>,
) -> Result<Argument, ArgsError> {
    let value = match (&arg.value, &arg.value_from) {
        (Some(value), _) => Some(value.clone()),
        (None, Some(from)) => {
            if let Some(which) = from.pod_template_hash_value {
                let hash = match which {
                    PodTemplateHashValue::Stable => rollout.stable_hash,
                    PodTemplateHashValue::Latest => rollout.latest_hash,
                };
                Some(
                    hash.ok_or_else(|| ArgsError::PodTemplateHashUnknown {
                        arg: arg.name.clone(),
                        which,
                    })?
                    .to_owned(),
                )
            } else if let Some(FieldRef { field_path }) = &from.field_ref {
                Some(field_value(rollout.rollout, field_path).map_err(|message| {
                    ArgsError::FieldRef {
                        arg: arg.name.clone(),
                        path: field_path.clone(),
                        message,
                    }
                })?)
            } else {
                None
            }
        }
        (None, None) => None,
    };
    Ok(Argument {
        name: arg.name.clone(),
        value,
        value_from: None,
    })
}

/// Merges supplied arguments into a template's: a supplied value (or source) replaces the
/// template's; arguments the template does not declare are ignored, as in Argo. Every
/// argument must then have a value or a source.
pub fn merge_args(
    incoming: &[Argument],
    template: &[Argument],
) -> Result<Vec<Argument>, ArgsError> {
    let mut merged = template.to_vec();
    for arg in incoming {
        if let Some(target) = merged.iter_mut().find(|a| a.name == arg.name) {
            if arg.value.is_some() {
                target.value.clone_from(&arg.value);
                target.value_from = None;
            } else if arg.value_from.is_some() {
                target.value_from.clone_from(&arg.value_from);
                target.value = None;
            }
        }
    }
    match merged
        .iter()
        .find(|a| a.value.is_none() && a.value_from.is_none())
    {
        Some(missing) => Err(ArgsError::MissingArg(missing.name.clone())),
        None => Ok(merged),
    }
}

/// Where Secrets come from: a closure over the controller's cache or a prefetched map.
pub trait SecretSource {
    /// The Secret of that name in the run's namespace; `Ok(None)` when it does not exist, `Err`
    /// when it could not be read.
    fn secret(&self, name: &str) -> Result<Option<Secret>, String>;
}

impl<F: Fn(&str) -> Result<Option<Secret>, String>> SecretSource for F {
    fn secret(&self, name: &str) -> Result<Option<Secret>, String> {
        self(name)
    }
}

impl SecretSource for BTreeMap<String, Secret> {
    fn secret(&self, name: &str) -> Result<Option<Secret>, String> {
        Ok(self.get(name).cloned())
    }
}

/// A source with no Secrets at all (validation, tests).
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _: &str) -> Result<Option<Secret>, String> {
        Ok(None)
    }
}

/// The names of the Secrets a run's arguments read, for the controller to fetch first.
pub fn secret_names(args: &[Argument]) -> Vec<&str> {
    let mut names: Vec<&str> = args
        .iter()
        .filter_map(|a| a.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|r| r.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Argument values ready for substitution; remembers which came from Secrets to redact them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedArgs {
    values: BTreeMap<String, String>,
    secrets: Vec<String>,
}

impl ResolvedArgs {
    /// The value of an argument.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `text` with every Secret value replaced by `*****`, as written and in the forms it takes
    /// on its way out (percent-encoded, JSON-escaped, base64): for messages, values and logs.
    pub fn redact(&self, text: &str) -> String {
        if self.secrets.is_empty() {
            return text.to_owned();
        }
        redact::redact(text, self.secrets.iter().map(String::as_str))
    }

    /// Whether any value came from a Secret (nothing to redact otherwise).
    pub fn has_secrets(&self) -> bool {
        self.secrets.iter().any(|s| !s.is_empty())
    }
}

/// Stands in for Secret values when a run is validated without reading Secrets.
pub const SECRET_PLACEHOLDER: &str = "temp-for-secret";

/// Resolves a run's arguments: literal values as they are, `secretKeyRef` from `secrets`, and a
/// `fieldRef` left in a run (Argo resolves those when creating it) from `rollout` when given.
pub fn resolve_args(
    args: &[Argument],
    secrets: &dyn SecretSource,
    rollout: Option<&serde_json::Value>,
) -> Result<ResolvedArgs, ArgsError> {
    let mut resolved = ResolvedArgs::default();
    for arg in args {
        let from = arg.value_from.as_ref();
        let value = if let Some(secret_ref) = from.and_then(|f| f.secret_key_ref.as_ref()) {
            let value = secret_value(&arg.name, &secret_ref.name, &secret_ref.key, secrets)?;
            resolved.secrets.push(value.clone());
            value
        } else if let Some(value) = &arg.value {
            value.clone()
        } else if let Some(FieldRef { field_path }) = from.and_then(|f| f.field_ref.as_ref()) {
            let message = "no Rollout to read it from".to_owned();
            let rollout = rollout.ok_or_else(|| ArgsError::FieldRef {
                arg: arg.name.clone(),
                path: field_path.clone(),
                message,
            })?;
            field_value(rollout, field_path).map_err(|message| ArgsError::FieldRef {
                arg: arg.name.clone(),
                path: field_path.clone(),
                message,
            })?
        } else {
            return Err(ArgsError::MissingArg(arg.name.clone()));
        };
        resolved.values.insert(arg.name.clone(), value);
    }
    Ok(resolved)
}

/// Resolves arguments without reading Secrets (their values become [`SECRET_PLACEHOLDER`]), to
/// validate a run's metrics before any measurement.
pub fn resolve_args_without_secrets(args: &[Argument]) -> Result<ResolvedArgs, ArgsError> {
    let mut resolved = ResolvedArgs::default();
    for arg in args {
        let from = arg.value_from.as_ref();
        let value = if from.is_some_and(|f| f.secret_key_ref.is_some()) {
            SECRET_PLACEHOLDER.to_owned()
        } else if let Some(value) = &arg.value {
            value.clone()
        } else if from.is_some_and(|f| f.field_ref.is_some()) {
            String::new()
        } else {
            return Err(ArgsError::MissingArg(arg.name.clone()));
        };
        resolved.values.insert(arg.name.clone(), value);
    }
    Ok(resolved)
}

/// Reads one key of a Secret, from `data` (bytes, as UTF-8) or `stringData`.
fn secret_value(
    arg: &str,
    name: &str,
    key: &str,
    secrets: &dyn SecretSource,
) -> Result<String, ArgsError> {
    let secret = secrets
        .secret(name)
        .map_err(|message| ArgsError::SecretUnavailable {
            arg: arg.to_owned(),
            secret: name.to_owned(),
            message,
        })?
        .ok_or_else(|| ArgsError::SecretNotFound {
            arg: arg.to_owned(),
            secret: name.to_owned(),
        })?;
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    let from_string_data = || {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
    };
    from_data
        .or_else(from_string_data)
        .ok_or_else(|| ArgsError::SecretKeyMissing {
            arg: arg.to_owned(),
            secret: name.to_owned(),
            key: key.to_owned(),
        })
}

/// Replaces every `{{args.NAME}}` (spaces inside the braces allowed) in `text`; any other
/// placeholder, or an argument without a value, is an error.
pub fn substitute(text: &str, args: &ResolvedArgs) -> Result<String, ArgsError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| ArgsError::Unterminated {
            text: text.to_owned(),
        })?;
        let tag = &after[..end];
        let value = tag
            .trim()
            .strip_prefix("args.")
            .and_then(|name| args.get(name))
            .ok_or_else(|| ArgsError::UnresolvedPlaceholder {
                placeholder: tag.to_owned(),
                metric: None,
            })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The metric with every placeholder substituted, in every string of it (keys included).
pub fn substitute_metric(metric: &Metric, args: &ResolvedArgs) -> Result<Metric, ArgsError> {
    let in_this_metric = |e: ArgsError| match e {
        ArgsError::UnresolvedPlaceholder { placeholder, .. } => ArgsError::UnresolvedPlaceholder {
            placeholder,
            metric: Some(metric.name.clone()),
        },
        other => other,
    };
    let invalid = |message: String| ArgsError::InvalidMetric {
        metric: metric.name.clone(),
        message,
    };
    let json = serde_json::to_value(metric).map_err(|e| invalid(e.to_string()))?;
    let substituted = substitute_json(json, args).map_err(in_this_metric)?;
    serde_json::from_value(substituted).map_err(|e| invalid(e.to_string()))
}

/// Substitutes placeholders in every string and key of a JSON value.
fn substitute_json(
    value: serde_json::Value,
    args: &ResolvedArgs,
) -> Result<serde_json::Value, ArgsError> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(s) if s.contains("{{") => J::String(substitute(&s, args)?),
        J::Array(items) => J::Array(
            items
                .into_iter()
                .map(|v| substitute_json(v, args))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let k = if k.contains("{{") {
                        substitute(&k, args)?
                    } else {
                        k
                    };
                    Ok((k, substitute_json(v, args)?))
                })
                .collect::<Result<_, ArgsError>>()?,
        ),
        other => other,
    })
}

mod field_path;
mod redact;
#[cfg(test)]
mod tests;
