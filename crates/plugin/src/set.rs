//! `set image NAME CONTAINER=IMAGE`: changes the image of one container (or of all, with `*`)
//! in `spec.template`, as `kubectl argo rollouts set image` does. Written as a JSON patch that
//! first tests each container's name at its index, so a template edited meanwhile is refused
//! rather than the wrong container changed, and nothing else in the spec is touched.

use std::process::ExitCode;

use clap::{Args, Subcommand};
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
                            # Every container (and init container)\n  \
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
/// template, containers and init containers alike. Pure.
pub fn image_patch(rollout: &Rollout, container: &str, image: &str) -> Result<Value, Error> {
    let spec = rollout
        .spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .ok_or_else(|| {
            Error::Refused("the rollout has no spec.template (it uses workloadRef)".into())
        })?;
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    let mut ops = Vec::new();
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            if container == "*" || c.name == container {
                let path = format!("/spec/template/spec/{list}/{i}");
                ops.push(json!({ "op": "test", "path": format!("{path}/name"), "value": c.name }));
                ops.push(json!({ "op": "add", "path": format!("{path}/image"), "value": image }));
            }
        }
    }
    if ops.is_empty() {
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::Refused(format!(
            "the rollout has no container named \"{container}\" (its containers: {})",
            names.join(", ")
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
    let rollout = ctx.rollout(&args.name).await?;
    let patch = image_patch(&rollout, container, image)?;
    ctx.json_patch(&args.name, patch).await?;
    print(&format!(
        "rollout \"{}\": container \"{container}\" set to image {image}\n",
        args.name
    ));
    Ok(ExitCode::SUCCESS)
}
