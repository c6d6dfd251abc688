//! Argo Rollouts' notification contract, shared by the controller (which sends on its events)
//! and the plugin (`kubectl sluice notifications`): the configuration in
//! `argo-rollouts-notification-configmap` and `-secret`, triggers, templates, subscriptions and
//! the services that deliver them.
//!
//! The path of one notification:
//!
//! 1. [`config::Config::parse`] reads the ConfigMap's data and the Secret's: `trigger.<name>`,
//!    `template.<name>`, `service.<type>[.<name>]` (with `$key` references taken from the
//!    Secret), `subscriptions`, `defaultTriggers[.<service>]`. A malformed entry is a
//!    [`config::Problem`] and is left out; every other entry keeps working.
//! 2. [`trigger::trigger_name`] turns the reason of an event the controller recorded on a
//!    Rollout into Argo's trigger name (`RolloutStepCompleted` → `on-rollout-step-completed`).
//! 3. [`subscription::destinations`] lists who subscribed to that trigger: the Rollout's
//!    `notifications.argoproj.io/subscribe.*` annotations and the default subscriptions.
//! 4. [`trigger::Condition::holds`] checks each condition's `when` (an expr expression over
//!    `rollout`), and [`template`] renders the templates it `send`s (Go `text/template` syntax,
//!    with the sprig functions Argo's catalog uses) into one [`Notification`].
//! 5. [`services::Sender::send`] delivers it: webhook, Slack, Microsoft Teams, email (SMTP) or
//!    GitHub commit status; every request bounded in time and answer size, and no secret in any
//!    error message.
//!
//! Where Sluice differs from Argo: the functions a template may call are the ones listed in
//! [`template`] (Argo offers all of sprig); `oncePer` is read but has no effect, because the
//! controller records each event once (see `docs/notifications.md`).
#![forbid(unsafe_code)]

pub mod config;
pub mod services;
pub mod subscription;
pub mod template;
pub mod trigger;

pub use config::Config;
pub use template::Notification;

/// The ConfigMap Argo Rollouts (and Sluice) reads the notification configuration from.
pub const CONFIG_MAP: &str = "argo-rollouts-notification-configmap";

/// The Secret holding the values the configuration names as `$key`.
pub const SECRET: &str = "argo-rollouts-notification-secret";

/// What rendering and sending need to know about one event on a Rollout.
#[derive(Clone, Debug)]
pub struct Event {
    /// The Rollout as JSON, with the status the event describes.
    pub rollout: serde_json::Value,
    /// The event's reason (`RolloutCompleted`, ...).
    pub reason: String,
    /// `Normal` or `Warning`.
    pub type_: String,
}

/// One notification to deliver: the trigger, the destination and what was rendered for it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The trigger that fired.
    pub trigger: String,
    /// Where it goes.
    pub destination: subscription::Destination,
    /// The rendered templates, merged.
    pub notification: Notification,
}

/// Works out every notification one event sends with `config`: the trigger of its reason, the
/// destinations subscribed to it, the conditions that hold and their rendered templates.
///
/// Returns the deliveries and, for each part that could not be worked out (a condition that
/// does not evaluate, a template that does not render, a destination naming an unknown
/// service), a message saying which.
pub fn plan(config: &Config, event: &Event) -> (Vec<Delivery>, Vec<String>) {
    let mut deliveries = Vec::new();
    let mut problems = Vec::new();
    let trigger = trigger::trigger_name(&event.reason);
    let Some(conditions) = config.triggers.get(&trigger) else {
        return (deliveries, problems);
    };
    let destinations = subscription::destinations(config, &event.rollout, &trigger);
    if destinations.is_empty() {
        return (deliveries, problems);
    }
    for destination in destinations {
        if !config.services.contains_key(&destination.service) {
            problems.push(format!(
                "trigger {trigger}: no service {:?} is configured (a `service.<type>.{}` key in {CONFIG_MAP})",
                destination.service, destination.service
            ));
            continue;
        }
        for condition in conditions {
            match condition.holds(&event.rollout) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    problems.push(format!("trigger {trigger}: {e}"));
                    continue;
                }
            }
            match template::render_all(config, &condition.send, &event.rollout, &destination) {
                Ok(notification) => deliveries.push(Delivery {
                    trigger: trigger.clone(),
                    destination: destination.clone(),
                    notification,
                }),
                Err(e) => problems.push(format!("trigger {trigger}: {e}")),
            }
        }
    }
    (deliveries, problems)
}
