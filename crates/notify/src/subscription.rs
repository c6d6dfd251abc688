//! Who hears of a trigger: the Rollout's own subscriptions and the default ones.
//!
//! On the Rollout, as Argo reads them:
//! - `notifications.argoproj.io/subscribe.<trigger>.<service>: <recipient>;<recipient>`;
//! - `notifications.argoproj.io/subscribe.<service>: <recipients>` (no trigger: the service's
//!   `defaultTriggers.<service>`, else `defaultTriggers`);
//! - `notifications.argoproj.io/subscribe_yaml` (any suffix): a YAML list of
//!   `{trigger: [..], destinations: [{service, recipients: [..]}]}`.
//!
//! In the ConfigMap, `subscriptions`: recipients (`service:recipient`) of triggers for the
//! Rollouts whose labels match a selector.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;

/// The prefix of Argo's subscription annotations.
pub const ANNOTATION_PREFIX: &str = "notifications.argoproj.io/subscribe";

/// One place a notification goes: a configured service and a recipient (a Slack channel, an
/// email address, a Teams recipient; empty where the service needs none, as a webhook).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Destination {
    /// The service's name (`slack`, or `<name>` of `service.webhook.<name>`).
    pub service: String,
    /// The recipient.
    pub recipient: String,
}

#[derive(Deserialize)]
struct YamlSubscription {
    #[serde(default)]
    trigger: Vec<String>,
    #[serde(default)]
    destinations: Vec<YamlDestination>,
}

#[derive(Deserialize)]
struct YamlDestination {
    service: String,
    #[serde(default)]
    recipients: Vec<String>,
}

/// The destinations subscribed to `trigger` for `rollout` (its annotations, then the default
/// subscriptions), each once, in order.
pub fn destinations(config: &Config, rollout: &Value, trigger: &str) -> Vec<Destination> {
    let mut found = Vec::new();
    let mut add = |destination: Destination| {
        if !found.contains(&destination) {
            found.push(destination);
        }
    };
    let annotations = string_map(&rollout["metadata"]["annotations"]);
    for (key, value) in &annotations {
        let Some(rest) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        if rest.starts_with("_yaml") {
            let subscriptions: Vec<YamlSubscription> =
                serde_norway::from_str(value).unwrap_or_default();
            for subscription in subscriptions {
                if !subscription.trigger.iter().any(|t| t == trigger) {
                    continue;
                }
                for destination in subscription.destinations {
                    for recipient in recipients(&destination.recipients.join(";")) {
                        add(Destination {
                            service: destination.service.clone(),
                            recipient,
                        });
                    }
                }
            }
            continue;
        }
        let Some(rest) = rest.strip_prefix('.') else {
            continue;
        };
        let (triggers, service) = match rest.split_once('.') {
            Some((t, service)) => (vec![t.to_owned()], service),
            None => (
                config
                    .service_default_triggers
                    .get(rest)
                    .unwrap_or(&config.default_triggers)
                    .clone(),
                rest,
            ),
        };
        if triggers.iter().any(|t| t == trigger) {
            for recipient in recipients(value) {
                add(Destination {
                    service: service.to_owned(),
                    recipient,
                });
            }
        }
    }
    let labels = string_map(&rollout["metadata"]["labels"]);
    for subscription in &config.subscriptions {
        let triggers = if subscription.triggers.is_empty() {
            &config.default_triggers
        } else {
            &subscription.triggers
        };
        if !triggers.iter().any(|t| t == trigger) || !selects(&subscription.selector, &labels) {
            continue;
        }
        for recipient in &subscription.recipients {
            let (service, recipient) = recipient.split_once(':').unwrap_or((recipient, ""));
            add(Destination {
                service: service.to_owned(),
                recipient: recipient.to_owned(),
            });
        }
    }
    found
}

/// `a;b; c` as recipients; an empty value is one empty recipient (a webhook needs none).
fn recipients(value: &str) -> Vec<String> {
    if value.trim().is_empty() {
        return vec![String::new()];
    }
    value
        .split(';')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `labels` match `selector` (`k=v`, `k==v`, `k!=v`, comma-separated; empty matches
/// everything), as Kubernetes' field selectors, which Argo uses here, read it.
pub fn selects(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .all(|term| {
            if let Some((key, value)) = term.split_once("!=") {
                labels.get(key.trim()).map(String::as_str) != Some(value.trim())
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                labels.get(key.trim()).map(String::as_str) == Some(value.trim())
            } else {
                false
            }
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> Config {
        let data: BTreeMap<String, String> = [
            ("defaultTriggers", "[on-rollout-completed]"),
            ("defaultTriggers.teams", "[on-rollout-aborted]"),
            (
                "subscriptions",
                "- recipients: [slack:ops, hook]\n  triggers: [on-rollout-completed]\n  selector: team=shop\n- recipients: [slack:all]",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Config::parse(&data, &BTreeMap::new())
    }

    fn dest(service: &str, recipient: &str) -> Destination {
        Destination {
            service: service.into(),
            recipient: recipient.into(),
        }
    }

    #[test]
    fn annotations_and_default_subscriptions_name_each_destination_once() {
        let rollout = json!({"metadata": {
            "labels": {"team": "shop"},
            "annotations": {
                "notifications.argoproj.io/subscribe.on-rollout-completed.slack": "ops; dev;;",
                "notifications.argoproj.io/subscribe.on-rollout-step-completed.hook": "",
                "notifications.argoproj.io/subscribe.teams": "channel",
                "notifications.argoproj.io/subscribe.email": "a@example.com",
                "notifications.argoproj.io/subscribe_yaml": "- trigger: [on-rollout-paused]\n  destinations:\n  - service: slack\n    recipients: [pauses]",
                "unrelated": "x",
            },
        }});
        let config = config();
        assert_eq!(
            destinations(&config, &rollout, "on-rollout-completed"),
            [
                dest("email", "a@example.com"),
                dest("slack", "ops"),
                dest("slack", "dev"),
                dest("hook", ""),
                dest("slack", "all"),
            ]
        );
        assert_eq!(
            destinations(&config, &rollout, "on-rollout-step-completed"),
            [dest("hook", "")]
        );
        assert_eq!(
            destinations(&config, &rollout, "on-rollout-aborted"),
            [dest("teams", "channel")]
        );
        assert_eq!(
            destinations(&config, &rollout, "on-rollout-paused"),
            [dest("slack", "pauses")]
        );
        let other_team = json!({"metadata": {"labels": {"team": "web"}}});
        assert_eq!(
            destinations(&config, &other_team, "on-rollout-completed"),
            [dest("slack", "all")]
        );
    }

    #[test]
    fn selectors_read_as_kubernetes_reads_them() {
        let labels: BTreeMap<String, String> = [("app".to_owned(), "shop".to_owned())]
            .into_iter()
            .collect();
        assert!(selects("", &labels));
        assert!(selects("app=shop", &labels));
        assert!(selects("app==shop, tier!=db", &labels));
        assert!(!selects("app!=shop", &labels));
        assert!(!selects("tier=db", &labels));
    }
}
