//! `undo NAME [--to-revision N]`: rolls back as `kubectl argo rollouts undo` does, by copying
//! the pod template of the ReplicaSet of the previous revision (or of revision N) into
//! `spec.template`, without its `rollouts-pod-template-hash` label.
//!
//! The API server fills in defaults (`imagePullPolicy`, `dnsPolicy`, …) in a ReplicaSet's
//! template but not in a Rollout's, and Sluice names a version by the hash of the Rollout's
//! template. So the well-known defaults are taken out again when that gives back the exact
//! template the ReplicaSet was made from (its hash matches): the controller then recognises the
//! old version, and rolling back to the stable one happens at once, without steps.

use std::process::ExitCode;

use clap::Args;
use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::PodTemplateSpec};
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice_api::{
    Rollout,
    model::pod_template_hash,
    vocab::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, TEMPLATE_HASH_ANNOTATION},
};

use super::{Context, Error, print};

/// `undo`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  # Go back to the previous revision\n  kubectl sluice undo shop\n\n  \
                        # Go back to revision 3 (see `kubectl sluice get rollout shop`)\n  \
                        kubectl sluice undo shop --to-revision 3"
)]
pub struct UndoArgs {
    /// The rollout's name.
    pub name: String,
    /// The revision to go back to; the one before the newest when absent.
    #[arg(long, value_name = "N")]
    pub to_revision: Option<i64>,
}

/// What an undo writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Undo {
    /// Replace `spec.template` with this template of `revision`.
    Restore {
        /// The revision restored.
        revision: i64,
        /// Its pod template, without the hash label.
        template: Box<PodTemplateSpec>,
    },
    /// The template already is that revision's.
    AlreadyThere(i64),
}

/// The rollback of `rollout` to `to` (the previous revision when `None`), from its ReplicaSets.
/// Pure.
pub fn undo(rollout: &Rollout, sets: &[ReplicaSet], to: Option<i64>) -> Result<Undo, Error> {
    if rollout.spec.workload_ref.is_some() {
        return Err(Error::Refused(
            "the rollout takes its pod template from spec.workloadRef: roll that workload back"
                .into(),
        ));
    }
    let uid = rollout.metadata.uid.clone().unwrap_or_default();
    let mut revisions: Vec<(i64, &ReplicaSet)> = sets
        .iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid)
        })
        .filter_map(|rs| {
            let revision = rs.metadata.annotations.as_ref()?.get(REVISION_ANNOTATION)?;
            Some((revision.parse().ok()?, rs))
        })
        .collect();
    revisions.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
    let (revision, rs) = match to {
        Some(n) => revisions.iter().find(|(r, _)| *r == n).ok_or_else(|| {
            let known: Vec<String> = revisions.iter().map(|(r, _)| r.to_string()).collect();
            Error::Refused(format!(
                "revision {n} is not in the rollout's history (revisions: {})",
                known.join(", ")
            ))
        })?,
        None => revisions.get(1).ok_or_else(|| {
            Error::Refused("the rollout has no previous revision to go back to".into())
        })?,
    };
    let mut template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| {
            Error::Refused(format!(
                "the ReplicaSet of revision {revision} has no pod template"
            ))
        })?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let hash = rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_HASH_ANNOTATION))
        .or_else(|| rs.metadata.labels.as_ref()?.get(POD_TEMPLATE_HASH_LABEL));
    let collisions = rollout.status.as_ref().and_then(|s| s.collision_count);
    if let Some(original) = without_defaults(&template)
        .filter(|t| hash.is_some_and(|h| *h == pod_template_hash(t, collisions)))
    {
        template = original;
    }
    if rollout.spec.template.as_ref() == Some(&template) {
        return Ok(Undo::AlreadyThere(*revision));
    }
    Ok(Undo::Restore {
        revision: *revision,
        template: Box::new(template),
    })
}

/// `template` without the fields the API server set to their defaults; `None` if it cannot be
/// read back.
pub fn without_defaults(template: &PodTemplateSpec) -> Option<PodTemplateSpec> {
    let mut value = serde_json::to_value(template).ok()?;
    let spec = value.get_mut("spec")?.as_object_mut()?;
    let drop_if = |map: &mut serde_json::Map<String, Value>, key: &str, default: Value| {
        if map.get(key) == Some(&default) {
            map.remove(key);
        }
    };
    drop_if(spec, "restartPolicy", json!("Always"));
    drop_if(spec, "terminationGracePeriodSeconds", json!(30));
    drop_if(spec, "dnsPolicy", json!("ClusterFirst"));
    drop_if(spec, "securityContext", json!({}));
    drop_if(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            drop_if(c, "terminationMessagePath", json!("/dev/termination-log"));
            drop_if(c, "terminationMessagePolicy", json!("File"));
            drop_if(c, "resources", json!({}));
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let last = image.rsplit('/').next().unwrap_or_default();
            let latest = !last.contains(':') && !image.contains('@') || image.ends_with(":latest");
            let pull = if latest { "Always" } else { "IfNotPresent" };
            drop_if(c, "imagePullPolicy", json!(pull));
            for port in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object_mut)
            {
                drop_if(port, "protocol", json!("TCP"));
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) else {
                    continue;
                };
                drop_if(p, "timeoutSeconds", json!(1));
                drop_if(p, "periodSeconds", json!(10));
                drop_if(p, "successThreshold", json!(1));
                drop_if(p, "failureThreshold", json!(3));
                if let Some(get) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                    drop_if(get, "scheme", json!("HTTP"));
                }
            }
        }
    }
    serde_json::from_value(value).ok()
}

/// Runs `undo`.
pub async fn run(ctx: &Context, args: UndoArgs) -> Result<ExitCode, Error> {
    let rollout = ctx.rollout(&args.name).await?;
    let params = match rollout.spec.selector.as_ref() {
        Some(s) => ListParams::default().labels(&sluice_api::model::selector_string(s)),
        None => ListParams::default(),
    };
    let sets = ctx
        .api::<ReplicaSet>()
        .list(&params)
        .await
        .map_err(|e| {
            ctx.request("list", "replicasets", "ReplicaSet", None)
                .error(e)
        })?
        .items;
    match undo(&rollout, &sets, args.to_revision)? {
        Undo::AlreadyThere(revision) => print(&format!(
            "rollout \"{}\" already runs the template of revision {revision}; nothing changed\n",
            args.name
        )),
        Undo::Restore { revision, template } => {
            let patch = json!([{ "op": "replace", "path": "/spec/template", "value": template }]);
            ctx.json_patch(&args.name, patch).await?;
            print(&format!(
                "rollout \"{}\" rolled back to the template of revision {revision}\n",
                args.name
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
