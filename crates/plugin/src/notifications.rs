//! `notifications template get|notify` and `notifications trigger get|run`: the notification
//! configuration the controller uses, read and tried from the command line, as
//! `kubectl argo rollouts notifications` does.
//!
//! The configuration is the ConfigMap `argo-rollouts-notification-configmap` and the Secret
//! `argo-rollouts-notification-secret` of the namespace (`-n`, where the controller runs), or
//! local files given with `--config-map FILE` and `--secret FILE` (`--secret :empty` for none),
//! as in Argo. Rendering, conditions and delivery are `sluice-notify`'s, the controller's own.

use std::{collections::BTreeMap, fmt::Write as _, process::ExitCode};

use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;
use sluice_notify::{
    CONFIG_MAP, Config, SECRET,
    services::Sender,
    subscription::Destination,
    template::{self, Notification},
};

use super::{Context, Error, Output, encode, print};

/// The `notifications` subcommands.
#[derive(Debug, Subcommand)]
pub enum Notifications {
    /// Show templates, or send one.
    #[command(
        subcommand,
        after_help = "Example:\n  kubectl sluice notifications template get -n argo-rollouts"
    )]
    Template(TemplateCommand),
    /// Show triggers, or check one against a rollout.
    #[command(
        subcommand,
        after_help = "Example:\n  kubectl sluice notifications trigger get -n argo-rollouts"
    )]
    Trigger(TriggerCommand),
}

/// `notifications template ...`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List the templates, or print one.
    #[command(after_help = "Examples:\n  # Every template, with its message\n  \
        kubectl sluice notifications template get -n argo-rollouts\n\n  \
        # One template as YAML, from a local file\n  \
        kubectl sluice notifications template get rollout-completed -o yaml --config-map cm.yaml")]
    Get(TemplateGet),
    /// Render a template for a rollout and send it to a recipient.
    #[command(after_help = "Example:\n  \
        kubectl sluice notifications template notify rollout-completed shop --recipient slack:deploys")]
    Notify(TemplateNotify),
}

/// `notifications trigger ...`.
#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// List the triggers, or print one.
    #[command(after_help = "Examples:\n  \
        kubectl sluice notifications trigger get\n  \
        kubectl sluice notifications trigger get on-rollout-completed -o yaml")]
    Get(TriggerGet),
    /// Show whether a trigger's conditions hold for a rollout, and what they would send.
    #[command(after_help = "Example:\n  \
        kubectl sluice notifications trigger run on-rollout-completed shop")]
    Run(TriggerRun),
}

/// Where the configuration comes from.
#[derive(Debug, Args)]
pub struct Source {
    /// A file with the argo-rollouts-notification-configmap ConfigMap, instead of the cluster's.
    #[arg(long, value_name = "FILE")]
    config_map: Option<String>,
    /// A file with the argo-rollouts-notification-secret Secret, instead of the cluster's
    /// (`:empty` for none).
    #[arg(long, value_name = "FILE")]
    secret: Option<String>,
}

/// `template get`.
#[derive(Debug, Args)]
pub struct TemplateGet {
    /// The template; all when absent.
    name: Option<String>,
    /// Print as YAML or JSON instead of a table.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
    #[command(flatten)]
    source: Source,
}

/// `template notify`.
#[derive(Debug, Args)]
pub struct TemplateNotify {
    /// The template.
    template: String,
    /// The rollout it is rendered for.
    rollout: String,
    /// Where to send, `service:recipient` (repeatable).
    #[arg(long, required = true, value_name = "SERVICE:RECIPIENT")]
    recipient: Vec<String>,
    #[command(flatten)]
    source: Source,
}

/// `trigger get`.
#[derive(Debug, Args)]
pub struct TriggerGet {
    /// The trigger; all when absent.
    name: Option<String>,
    /// Print as YAML or JSON instead of a table.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
    #[command(flatten)]
    source: Source,
}

/// `trigger run`.
#[derive(Debug, Args)]
pub struct TriggerRun {
    /// The trigger.
    trigger: String,
    /// The rollout its conditions are checked against.
    rollout: String,
    #[command(flatten)]
    source: Source,
}

/// Runs `notifications`.
pub async fn run(ctx: &Context, notifications: Notifications) -> Result<ExitCode, Error> {
    match notifications {
        Notifications::Template(TemplateCommand::Get(args)) => {
            let config = load(ctx, &args.source, false).await?;
            print(&templates(&config, args.name.as_deref(), args.output)?);
            Ok(ExitCode::SUCCESS)
        }
        Notifications::Trigger(TriggerCommand::Get(args)) => {
            let config = load(ctx, &args.source, false).await?;
            print(&triggers(&config, args.name.as_deref(), args.output)?);
            Ok(ExitCode::SUCCESS)
        }
        Notifications::Trigger(TriggerCommand::Run(args)) => {
            let config = load(ctx, &args.source, false).await?;
            let rollout = rollout_json(ctx, &args.rollout).await?;
            print(&trigger_run(&config, &args.trigger, &rollout)?);
            Ok(ExitCode::SUCCESS)
        }
        Notifications::Template(TemplateCommand::Notify(args)) => {
            let config = load(ctx, &args.source, true).await?;
            let rollout = rollout_json(ctx, &args.rollout).await?;
            notify(&config, &args, &rollout).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn rollout_json(ctx: &Context, name: &str) -> Result<Value, Error> {
    let rollout = ctx.rollout(name).await?;
    serde_json::to_value(&rollout).map_err(|e| Error::Output(e.to_string()))
}

/// Reads the configuration from the files given, else from the cluster (the Secret only when
/// `secrets`: only sending needs it).
async fn load(ctx: &Context, source: &Source, secrets: bool) -> Result<Config, Error> {
    let data = match &source.config_map {
        Some(path) => {
            let map: ConfigMap = read_yaml(path)?;
            map.data.unwrap_or_default()
        }
        None => {
            let request = ctx.request("get", "configmaps", "ConfigMap", Some(CONFIG_MAP));
            let map: ConfigMap = ctx
                .api::<ConfigMap>()
                .get(CONFIG_MAP)
                .await
                .map_err(|e| request.error(e))?;
            map.data.unwrap_or_default()
        }
    };
    let secret = match source.secret.as_deref() {
        Some(":empty") => None,
        Some(path) => Some(read_yaml::<Secret>(path)?),
        None if secrets => {
            let request = ctx.request("get", "secrets", "Secret", Some(SECRET));
            ctx.api::<Secret>()
                .get_opt(SECRET)
                .await
                .map_err(|e| request.error(e))?
        }
        None => None,
    };
    let config = Config::parse(&data, &secret_data(secret));
    for problem in &config.problems {
        eprintln!("warning: {problem} (left out)");
    }
    Ok(config)
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &str) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_norway::from_str(&text).map_err(|e| Error::Refused(format!("{path}: {e}")))
}

/// A Secret's values, `data` (base64, decoded by the types) and `stringData` alike.
fn secret_data(secret: Option<Secret>) -> BTreeMap<String, String> {
    let Some(secret) = secret else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    out.extend(secret.string_data.unwrap_or_default());
    out
}

/// `template get`: a table of the templates with their message, or one (or all) as YAML/JSON.
fn templates(config: &Config, name: Option<&str>, output: Option<Output>) -> Result<String, Error> {
    let selected: BTreeMap<&String, &Value> = match name {
        Some(name) => {
            let (key, value) = config
                .templates
                .get_key_value(name)
                .ok_or_else(|| Error::Refused(format!("no template {name:?} in {CONFIG_MAP}")))?;
            [(key, value)].into()
        }
        None => config.templates.iter().collect(),
    };
    if let Some(format) = output {
        return match (name, selected.values().next()) {
            (Some(_), Some(one)) => encode(one, format),
            _ => encode(&selected, format),
        };
    }
    let mut out = String::from("NAME\tPREVIEW\n");
    for (name, template) in selected {
        let preview = template["message"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default();
        let _ = writeln!(out, "{name}\t{preview}");
    }
    Ok(align(&out))
}

/// `trigger get`: a table of the triggers (templates, condition), or YAML/JSON.
fn triggers(config: &Config, name: Option<&str>, output: Option<Output>) -> Result<String, Error> {
    if let Some(name) = name
        && !config.triggers.contains_key(name)
    {
        return Err(Error::Refused(format!(
            "no trigger {name:?} in {CONFIG_MAP}"
        )));
    }
    let selected = config
        .triggers
        .iter()
        .filter(|(n, _)| name.is_none_or(|name| name == n.as_str()));
    if let Some(format) = output {
        let value: BTreeMap<&String, Vec<Value>> = selected
            .map(|(n, conditions)| {
                let conditions = conditions
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "send": c.send, "when": c.when, "oncePer": c.once_per,
                            "description": c.description,
                        })
                    })
                    .collect();
                (n, conditions)
            })
            .collect();
        return encode(&value, format);
    }
    let mut out = String::from("NAME\tTEMPLATE\tCONDITION\n");
    for (name, conditions) in selected {
        for condition in conditions {
            let _ = writeln!(
                out,
                "{name}\t{}\t{}",
                condition.send.join(", "),
                condition.when.as_deref().unwrap_or("(always)")
            );
        }
    }
    Ok(align(&out))
}

/// `trigger run`: each condition of the trigger, whether it holds for the rollout, and what it
/// would send.
fn trigger_run(config: &Config, name: &str, rollout: &Value) -> Result<String, Error> {
    let conditions = config
        .triggers
        .get(name)
        .ok_or_else(|| Error::Refused(format!("no trigger {name:?} in {CONFIG_MAP}")))?;
    let mut out = String::from("CONDITION\tRESULT\tTEMPLATES\n");
    for condition in conditions {
        let result = match condition.holds(rollout) {
            Ok(true) => "true".to_owned(),
            Ok(false) => "false".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        let _ = writeln!(
            out,
            "{}\t{result}\t{}",
            condition.when.as_deref().unwrap_or("(always)"),
            condition.send.join(", ")
        );
    }
    Ok(align(&out))
}

/// Lines of tab-separated cells as columns, each as wide as its widest cell.
fn align(text: &str) -> String {
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `template notify`: renders the template for each recipient and sends it.
async fn notify(config: &Config, args: &TemplateNotify, rollout: &Value) -> Result<(), Error> {
    let template = config.templates.get(&args.template).ok_or_else(|| {
        Error::Refused(format!("no template {:?} in {CONFIG_MAP}", args.template))
    })?;
    let sender = Sender::new().map_err(Error::Refused)?;
    for recipient in &args.recipient {
        let (service_name, to) = recipient.split_once(':').unwrap_or((recipient, ""));
        let service = config.services.get(service_name).ok_or_else(|| {
            Error::Refused(format!(
                "no service {service_name:?} in {CONFIG_MAP} (a service.<type>.{service_name} key)"
            ))
        })?;
        let destination = Destination {
            service: service_name.to_owned(),
            recipient: to.to_owned(),
        };
        let vars = template::vars(rollout, to);
        let notification: Notification =
            template::render(&args.template, template, &vars).map_err(Error::Refused)?;
        sender
            .send(service, &notification, &destination)
            .await
            .map_err(|e| Error::Refused(format!("sending to {recipient}: {e}")))?;
        println!("notification sent to {recipient}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> Config {
        let data: BTreeMap<String, String> = [
            ("trigger.on-rollout-completed", "- send: [rollout-completed]"),
            (
                "trigger.on-purple",
                "- send: [purple]\n  when: rollout.spec.template.spec.containers[0].image == 'purple'",
            ),
            ("template.rollout-completed", "message: Rollout {{.rollout.metadata.name}} has been completed."),
            ("template.purple", "message: Purple {{.rollout.metadata.name}}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Config::parse(&data, &BTreeMap::new())
    }

    #[test]
    fn template_get_lists_templates_with_their_message_or_prints_one() {
        let config = config();
        let table = templates(&config, None, None).expect("table");
        assert!(table.contains("rollout-completed"), "{table}");
        assert!(
            table.contains("Rollout {{.rollout.metadata.name}} has been completed."),
            "{table}"
        );
        let yaml = templates(&config, Some("purple"), Some(Output::Yaml)).expect("yaml");
        assert!(yaml.starts_with("message:"), "{yaml}");
        assert!(yaml.contains("Purple {{.rollout.metadata.name}}"), "{yaml}");
        assert!(templates(&config, Some("nope"), None).is_err());
    }

    #[test]
    fn trigger_get_and_run_show_conditions_and_whether_they_hold() {
        let config = config();
        let table = triggers(&config, None, None).expect("table");
        assert!(table.contains("on-purple"), "{table}");
        assert!(table.contains("(always)"), "{table}");
        let rollout = json!({"metadata": {"name": "shop"}, "spec": {"template": {"spec": {"containers": [{"image": "purple"}]}}}});
        let report = trigger_run(&config, "on-purple", &rollout).expect("runs");
        assert!(
            report.contains("true") && report.contains("purple"),
            "{report}"
        );
        let blue = json!({"spec": {"template": {"spec": {"containers": [{"image": "blue"}]}}}});
        assert!(
            trigger_run(&config, "on-purple", &blue)
                .expect("runs")
                .contains("false")
        );
        assert!(trigger_run(&config, "on-nothing", &blue).is_err());
    }

    #[test]
    fn local_files_are_read_as_argo_s_flags_read_them() {
        let dir = std::env::temp_dir().join(format!("sluice-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let secret = dir.join("secret.yaml");
        std::fs::write(
            &secret,
            "apiVersion: v1\nkind: Secret\nmetadata: {name: argo-rollouts-notification-secret}\ndata:\n  token: eG94Yi0x\nstringData:\n  url: http://x\n",
        )
        .expect("write");
        let read = secret_data(Some(
            read_yaml(secret.to_str().expect("utf-8")).expect("reads"),
        ));
        assert_eq!(read["token"], "xoxb-1");
        assert_eq!(read["url"], "http://x");
        assert!(read_yaml::<Secret>("/nonexistent/secret.yaml").is_err());
    }
}
