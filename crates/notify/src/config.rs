//! The notification configuration, read from the ConfigMap's and the Secret's data as Argo's
//! notifications engine reads them.
//!
//! Keys of the ConfigMap:
//!
//! | key | value |
//! |---|---|
//! | `trigger.<name>` | a YAML list of conditions: `send: [templates]`, optional `when`, `oncePer`, `description` |
//! | `template.<name>` | YAML: `message` plus per-service fields (`email.subject`, `slack.attachments`, `webhook.<name>.body`, ...) |
//! | `service.<type>` / `service.<type>.<name>` | YAML options of one service; strings may name Secret keys as `$key` |
//! | `subscriptions` | a YAML list of `{recipients: [service:recipient], triggers: [...], selector: "k=v"}` |
//! | `defaultTriggers` / `defaultTriggers.<service>` | the triggers of a subscription that names none |
//!
//! Where Argo refuses the whole configuration for one malformed entry, Sluice leaves that entry
//! out and reports it as a [`Problem`]: one typo must not silence every other notification.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::{services::Service, template, trigger::Condition};

/// The notification configuration, every entry that could be read.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Triggers by name.
    pub triggers: BTreeMap<String, Vec<Condition>>,
    /// Templates by name: the YAML as JSON, every string a template.
    pub templates: BTreeMap<String, Value>,
    /// Services by the name subscriptions use (`slack` for `service.slack`, `hook` for
    /// `service.webhook.hook`).
    pub services: BTreeMap<String, Service>,
    /// The default subscriptions.
    pub subscriptions: Vec<DefaultSubscription>,
    /// The triggers of a subscription that names none.
    pub default_triggers: Vec<String>,
    /// The triggers of a subscription to one service that names none.
    pub service_default_triggers: BTreeMap<String, Vec<String>>,
    /// The entries left out, and why.
    pub problems: Vec<Problem>,
}

/// A configuration entry that could not be read, left out of the [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The ConfigMap key.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// One default subscription: recipients (`service:recipient`) of some triggers, for the
/// Rollouts whose labels match the selector.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct DefaultSubscription {
    /// `service:recipient` (or `service` alone).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The triggers; none means the default triggers.
    #[serde(default)]
    pub triggers: Vec<String>,
    /// A label selector, `key=value,key!=value`, as Kubernetes field selectors are written.
    #[serde(default)]
    pub selector: String,
}

/// The largest value of one ConfigMap key read: the API server limits a ConfigMap to 1 MiB.
const MAX_ENTRY_BYTES: usize = 256 * 1024;

impl Config {
    /// Reads the configuration from the ConfigMap's `data` and the Secret's (decoded) `data`.
    pub fn parse(data: &BTreeMap<String, String>, secret: &BTreeMap<String, String>) -> Self {
        let mut config = Self::default();
        for (key, value) in data {
            if value.len() > MAX_ENTRY_BYTES {
                config.problem(key, format!("larger than {MAX_ENTRY_BYTES} bytes"));
                continue;
            }
            if let Err(message) = config.entry(key, value, secret) {
                config.problem(key, message);
            }
        }
        config
    }

    fn problem(&mut self, key: &str, message: String) {
        self.problems.push(Problem {
            key: key.to_owned(),
            message,
        });
    }

    /// Reads one ConfigMap entry into the configuration.
    fn entry(
        &mut self,
        key: &str,
        value: &str,
        secret: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        if key == "subscriptions" {
            self.subscriptions = yaml(value)?;
        } else if key == "defaultTriggers" {
            self.default_triggers = yaml(value)?;
        } else if let Some(service) = key.strip_prefix("defaultTriggers.") {
            self.service_default_triggers
                .insert(service.to_owned(), yaml(value)?);
        } else if let Some(name) = key.strip_prefix("trigger.") {
            let conditions: Vec<Condition> = Condition::parse_list(value)?;
            self.triggers.insert(name.to_owned(), conditions);
        } else if let Some(name) = key.strip_prefix("template.") {
            let template: Value = yaml(value)?;
            if !template.is_object() {
                return Err("a template is a YAML mapping (message: ..., slack: ...)".into());
            }
            template::check(&template)?;
            self.templates.insert(name.to_owned(), template);
        } else if let Some(rest) = key.strip_prefix("service.") {
            let (type_, name) = match rest.split_once('.') {
                Some((type_, name)) if !name.contains('.') => (type_, name),
                None => (rest, rest),
                Some(_) => {
                    return Err("expected service.<type> or service.<type>.<name>".into());
                }
            };
            let written: Value = yaml(value)?;
            let mut options = written.clone();
            replace_secrets(&mut options, secret);
            // A message may quote a value: it quotes the options as written (`$key`), never
            // the Secret's values.
            let service = Service::from_options(type_, name, options).map_err(|_| {
                match Service::from_options(type_, name, written) {
                    Err(message) => message,
                    Ok(_) => format!(
                        "the {type_} service's options do not read once the Secret's values are in"
                    ),
                }
            })?;
            self.services.insert(name.to_owned(), service);
        }
        // Other keys (context, Argo CD's own) are not Sluice's to read.
        Ok(())
    }
}

/// Parses YAML into `T`, with a message fit for a Warning.
fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_norway::from_str(text).map_err(|e| format!("not valid YAML for this key: {e}"))
}

/// Replaces every `$key` in the strings of `value` with the Secret's value of `key`, as Argo
/// does (`$[A-Za-z0-9_-]+`); a key the Secret lacks is left as written.
pub fn replace_secrets(value: &mut Value, secret: &BTreeMap<String, String>) {
    match value {
        Value::String(text) => *text = substitute(text, secret),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| replace_secrets(item, secret)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| replace_secrets(item, secret)),
        _ => {}
    }
}

fn substitute(text: &str, secret: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(after.len());
        let key = &after[..end];
        match secret.get(key) {
            Some(found) if !key.is_empty() => out.push_str(found),
            _ => {
                out.push('$');
                out.push_str(key);
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn secrets_are_substituted_where_named_and_left_as_written_where_missing() {
        let secret = data(&[("slack-token", "xoxb-1"), ("user", "u")]);
        assert_eq!(substitute("$slack-token", &secret), "xoxb-1");
        assert_eq!(
            substitute("Bearer $slack-token!", &secret),
            "Bearer xoxb-1!"
        );
        assert_eq!(substitute("$user:$missing", &secret), "u:$missing");
        assert_eq!(substitute("costs $ 5", &secret), "costs $ 5");
    }

    #[test]
    fn a_malformed_entry_is_a_problem_and_the_others_keep_working() {
        let config = Config::parse(
            &data(&[
                ("trigger.on-rollout-completed", "- send: [done]"),
                ("trigger.broken", "send: [x"),
                (
                    "trigger.bad-when",
                    "- send: [done]\n  when: rollout.status.phase ==",
                ),
                (
                    "template.done",
                    "message: Rollout {{.rollout.metadata.name}} done",
                ),
                ("template.unclosed", "message: '{{.rollout.metadata.name'"),
                ("service.webhook.hook", "url: $url"),
                ("service.pigeon", "wings: 2"),
                ("service.slack", "token: $slack-token"),
                (
                    "subscriptions",
                    "- recipients: [hook]\n  triggers: [on-rollout-completed]",
                ),
                ("defaultTriggers", "[on-rollout-completed]"),
                ("defaultTriggers.slack", "[on-rollout-aborted]"),
                ("context", "argocdUrl: x"),
            ]),
            &data(&[
                ("url", "http://127.0.0.1:1/hook"),
                ("slack-token", "xoxb-secret"),
            ]),
        );
        assert_eq!(
            config.triggers.keys().collect::<Vec<_>>(),
            ["on-rollout-completed"]
        );
        assert_eq!(config.templates.keys().collect::<Vec<_>>(), ["done"]);
        assert_eq!(
            config.services.keys().collect::<Vec<_>>(),
            ["hook", "slack"]
        );
        assert_eq!(config.subscriptions.len(), 1);
        assert_eq!(config.default_triggers, ["on-rollout-completed"]);
        assert_eq!(
            config.service_default_triggers["slack"],
            ["on-rollout-aborted"]
        );
        let keys: Vec<_> = config.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "service.pigeon",
                "template.unclosed",
                "trigger.bad-when",
                "trigger.broken"
            ]
        );
        let text = config
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("pigeon"), "{text}");
        assert!(!text.contains("xoxb-secret"), "{text}");
        let Service::Webhook(hook) = &config.services["hook"] else {
            panic!("a webhook");
        };
        assert_eq!(hook.url, "http://127.0.0.1:1/hook");
    }
}
