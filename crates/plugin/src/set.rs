//! `set image NAME CONTAINER=IMAGE`: changes the image of one container (or of all, with `*`)
//! in `spec.template`, its containers, init containers and ephemeral containers alike, as
//! `kubectl argo rollouts set image` does. Written as a JSON patch that
//! first tests each container's name at its index, so a template edited meanwhile is refused
//! rather than the wrong container changed, and nothing else in the spec is touched. On a
//! rollout whose template comes from a Deployment (`workloadRef`), the Deployment is patched.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::PodSpec};
use serde_json::{Value, json};
use sluice_api::Rollout;

use super::{Context, Error, print};

/// What to set.
#[derive(Debug, Subcommand)]
pub enum Set {
    /// The image of a container of the pod template: starts an update.
    #[command(
        after_help = "Examples:\n  # Roll out a new image of the container `app`\n  \
                            kubectl sluice set image shop app=registry.example/shop:2.1\n\n  \
                            # Every container (init and ephemeral containers too)\n  \
                            kubectl sluice set image shop '*=registry.example/shop:2.1'"
    )]
    Image(SetImage),
}

/// `set image`.
#[derive(Debug, Args)]
pub struct SetImage {
    /// The rollout's name.
    pub name: String,
    /// CONTAINER=IMAGE; `*` as the container names every one.
    #[arg(value_name = "CONTAINER=IMAGE")]
    pub image: String,
}

/// The JSON patch setting `image` on the container `container` (`*`: all) of the rollout's
/// template, containers, init containers and ephemeral containers alike. Pure.
pub fn image_patch(rollout: &Rollout, container: &str, image: &str) -> Result<Value, Error> {
    let spec = rollout
        .spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .ok_or_else(|| {
            Error::Refused("the rollout has no spec.template (it uses workloadRef)".into())
        })?;
    pod_image_patch(spec, container, image)
}

/// The same patch for the pod template of any object whose template sits at `spec.template`
/// (a Rollout, the Deployment a `workloadRef` names). Pure.
pub fn pod_image_patch(spec: &PodSpec, container: &str, image: &str) -> Result<Value, Error> {
    let init: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    let ephemeral: Vec<&str> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    let main: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let lists = [
        ("initContainers", init),
        ("containers", main),
        ("ephemeralContainers", ephemeral),
    ];
    let mut ops = Vec::new();
    for (list, containers) in &lists {
        for (i, name) in containers.iter().enumerate() {
            if container == "*" || *name == container {
                let path = format!("/spec/template/spec/{list}/{i}");
                ops.push(json!({ "op": "test", "path": format!("{path}/name"), "value": name }));
                ops.push(json!({ "op": "add", "path": format!("{path}/image"), "value": image }));
            }
        }
    }
    if ops.is_empty() {
        let all: Vec<&str> = lists.iter().flat_map(|(_, l)| l.iter().copied()).collect();
        return Err(Error::Refused(format!(
            "the rollout has no container named \"{container}\" (its containers: {})",
            all.join(", ")
        )));
    }
    Ok(Value::Array(ops))
}

/// Runs `set image`.
pub async fn run(ctx: &Context, set: Set) -> Result<ExitCode, Error> {
    let Set::Image(args) = set;
    let Some((container, image)) = args
        .image
        .split_once('=')
        .filter(|(c, i)| !c.is_empty() && !i.is_empty())
    else {
        return Err(Error::Refused(format!(
            "expected CONTAINER=IMAGE, got \"{}\"",
            args.image
        )));
    };
    print(&format!(
        "{}\n",
        set_image(ctx, &args.name, container, image).await?
    ));
    Ok(ExitCode::SUCCESS)
}

/// Sets `image` on the container `container` (`*`: all) of the rollout `name` and says so: the
/// command and the dashboard share it.
pub(crate) async fn set_image(
    ctx: &Context,
    name: &str,
    container: &str,
    image: &str,
) -> Result<String, Error> {
    let rollout = ctx.rollout(name).await?;
    // A rollout over a Deployment (a template beside a workloadRef is invalid: it is the
    // rollout's own then).
    let over = rollout.spec.workload_deployment();
    if let Some(deployment) = over.filter(|_| rollout.spec.template.is_none()) {
        return set_deployment_image(ctx, name, deployment, container, image).await;
    }
    let patch = image_patch(&rollout, container, image)?;
    ctx.json_patch(name, patch).await?;
    Ok(format!(
        "rollout \"{name}\": container \"{container}\" set to image {image}"
    ))
}

/// `set image` on a rollout over a Deployment: the template is the Deployment's, so the patch
/// goes there (as Argo's plugin does), and the rollout rolls the change out by its strategy.
async fn set_deployment_image(
    ctx: &Context,
    rollout: &str,
    name: &str,
    container: &str,
    image: &str,
) -> Result<String, Error> {
    let deployments = ctx.api::<Deployment>();
    let describe = |verb| ctx.request(verb, "deployments", "Deployment", Some(name));
    let deployment = deployments
        .get(name)
        .await
        .map_err(|e| describe("get").error(e))?;
    let spec = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| Error::Refused(format!("Deployment \"{name}\" has no pod template")))?;
    let patch = pod_image_patch(spec, container, image)?;
    let patch = serde_json::from_value(patch)
        .map_err(|e| Error::Refused(format!("building the JSON patch: {e}")))?;
    deployments
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Json::<()>(patch),
        )
        .await
        .map_err(|e| describe("patch").error(e))?;
    Ok(format!(
        "rollout \"{rollout}\": container \"{container}\" set to image {image} in Deployment \"{name}\" (its workloadRef)"
    ))
}
