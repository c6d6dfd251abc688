//! The traffic routers' CRDs on the local cluster, from their published sources at pinned
//! versions: Gateway API (experimental channel), Traefik, Istio and SMI (TrafficSplit at the
//! version Argo Rollouts and Sluice write). The routers Sluice writes to, and the real proxies
//! the traffic tests run, need these kinds to exist.
//!
//! Each source is a file or a directory inside a Go module, read from the module cache (the
//! module is downloaded through the Go module proxy the first time). Only the documents of kind
//! `CustomResourceDefinition` are applied, server-side, as one field manager, so `install` is
//! idempotent and `cluster up` runs it every time.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::{conditions, wait::await_condition},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::gobuild;

/// Where one router's CRDs are published: a Go module, its version and a file or directory in
/// it.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// The Go module.
    pub module: &'static str,
    /// Its pinned version.
    pub version: &'static str,
    /// A YAML file, or a directory whose `*.yaml` files are all read.
    pub path: &'static str,
}

/// Every router's CRDs, as `cluster up` installs them.
pub const SOURCES: &[Source] = &[
    // HTTPRoute, GRPCRoute, TCPRoute, TLSRoute, UDPRoute, Gateway, GatewayClass, ReferenceGrant…
    // The experimental channel; v1.6 is the minor Traefik v3.7 is built against (v1.7 needs a
    // newer Go than the project's).
    Source {
        module: "sigs.k8s.io/gateway-api",
        version: "v1.6.3",
        path: "config/crd/experimental",
    },
    // traefik.io/v1alpha1: TraefikService, IngressRoute, Middleware…
    Source {
        module: "github.com/traefik/traefik/v3",
        version: "v3.7.13",
        path: "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml",
    },
    // networking.istio.io (VirtualService, DestinationRule…), security, telemetry, extensions.
    Source {
        module: "istio.io/api",
        version: "v1.32.0",
        path: "kubernetes/customresourcedefinitions.gen.yaml",
    },
    // split.smi-spec.io TrafficSplit `v1alpha1`: the version Argo Rollouts writes by default
    // (`--traffic-split-api-version`), and Sluice's SMI router with it, served by Linkerd (the
    // mesh of Argo's SMI guide). Every SMI SDK release serves one TrafficSplit version only:
    // v0.1.0 v1alpha1 (without a schema, as SMI published it), v0.3.0 to v0.4.1 v1alpha3, v0.5.0
    // v1alpha4; none serves v1alpha1 beside the others.
    Source {
        module: "github.com/servicemeshinterface/smi-sdk-go",
        version: "v0.1.0",
        path: "crds/split.yaml",
    },
    // The SMI access and specs kinds (TrafficTarget, HTTPRouteGroup, TCPRoute…) from the latest
    // SDK. The SMI CRDs are published as apiextensions v1beta1: converted to v1 on the way (see
    // `to_v1`).
    Source {
        module: "github.com/servicemeshinterface/smi-sdk-go",
        version: "v0.5.0",
        path: "crds/access.yaml",
    },
    Source {
        module: "github.com/servicemeshinterface/smi-sdk-go",
        version: "v0.5.0",
        path: "crds/specs.yaml",
    },
];

/// A kind and version each router writes, by CRD: a cluster whose CRDs do not serve them all
/// (started by an older `cluster up`) gets the router CRDs installed again.
const WRITTEN: &[(&str, &str)] = &[
    ("httproutes.gateway.networking.k8s.io", "v1"),
    ("traefikservices.traefik.io", "v1alpha1"),
    ("trafficsplits.split.smi-spec.io", "v1alpha1"),
];

/// The field manager of the router CRDs.
const MANAGER: &str = "sluice-xtask-routers";

/// Downloads each source's module into the shared module cache unless it is there already.
pub fn ensure_downloaded() -> Result<()> {
    for source in SOURCES {
        gobuild::module_source(source.module, source.version)?;
    }
    Ok(())
}

/// The CRDs of every source, as v1 objects ready to apply.
pub fn crds() -> Result<Vec<Value>> {
    let mut all = Vec::new();
    for source in SOURCES {
        let root = gobuild::module_dir(source.module, source.version)?;
        let path = root.join(source.path);
        let mut files = Vec::new();
        if path.is_dir() {
            for entry in
                std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))?
            {
                let file = entry?.path();
                if file.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(file);
                }
            }
            files.sort();
        } else {
            files.push(path);
        }
        let before = all.len();
        for file in &files {
            all.extend(crds_in(file)?);
        }
        if all.len() == before {
            bail!(
                "no CustomResourceDefinition in {}@{}/{}",
                source.module,
                source.version,
                source.path
            );
        }
    }
    Ok(all)
}

/// The CRD documents of one YAML file (other kinds, such as Gateway API's admission policy or a
/// kustomization, are skipped).
fn crds_in(file: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut found = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value =
            Value::deserialize(document).with_context(|| format!("parsing {}", file.display()))?;
        if value.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            continue;
        }
        let crd = match value.get("apiVersion").and_then(Value::as_str) {
            Some("apiextensions.k8s.io/v1") => value,
            Some("apiextensions.k8s.io/v1beta1") => to_v1(value)
                .with_context(|| format!("converting a v1beta1 CRD of {}", file.display()))?,
            other => bail!("{}: a CRD of apiVersion {other:?}", file.display()),
        };
        found.push(crd);
    }
    Ok(found)
}

/// Converts an `apiextensions.k8s.io/v1beta1` CRD (which Kubernetes stopped serving in 1.22) to
/// v1 as the apiserver's own conversion does: the top-level version, schema, printer columns
/// and subresources move into each version, the schema's root gets `type: object`.
fn to_v1(mut crd: Value) -> Result<Value> {
    let spec = crd
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .context("a CRD without a spec")?;
    let schema = spec.remove("validation").and_then(|mut v| {
        v.get_mut("openAPIV3Schema").map(|s| {
            let mut s = s.take();
            structural(&mut s);
            s
        })
    });
    let columns = spec.remove("additionalPrinterColumns").map(|cols| {
        let cols = cols.as_array().cloned().unwrap_or_default();
        Value::Array(
            cols.into_iter()
                .map(|mut c| {
                    if let Some(c) = c.as_object_mut()
                        && let Some(path) = c.remove("JSONPath")
                    {
                        c.insert("jsonPath".into(), path);
                    }
                    c
                })
                .collect(),
        )
    });
    let subresources = spec.remove("subresources");
    let single = spec.remove("version");
    let mut versions = spec
        .remove("versions")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    if versions.is_empty()
        && let Some(name) = single
    {
        versions.push(json!({ "name": name, "served": true, "storage": true }));
    }
    for version in &mut versions {
        let version = version
            .as_object_mut()
            .context("a CRD version that is not an object")?;
        let schema = schema.clone().unwrap_or_else(
            || json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
        );
        version.insert("schema".into(), json!({ "openAPIV3Schema": schema }));
        if let Some(columns) = &columns {
            version.insert("additionalPrinterColumns".into(), columns.clone());
        }
        if let Some(subresources) = &subresources {
            version.insert("subresources".into(), subresources.clone());
        }
    }
    spec.insert("versions".into(), Value::Array(versions));
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("apiextensions.k8s.io/v1"));
    if let Some(object) = crd.as_object_mut() {
        for (k, v) in std::mem::take(object) {
            if k != "apiVersion" {
                out.insert(k, v);
            }
        }
    }
    Ok(Value::Object(out))
}

/// Gives every schema node with `properties` the `type: object` (and with `items` the
/// `type: array`) that v1beta1 let a schema leave out and v1 requires (a "structural" schema).
fn structural(schema: &mut Value) {
    let Some(node) = schema.as_object_mut() else {
        return;
    };
    if !node.contains_key("type") {
        if node.contains_key("properties") {
            node.insert("type".into(), json!("object"));
        } else if node.contains_key("items") {
            node.insert("type".into(), json!("array"));
        }
    }
    if let Some(properties) = node.get_mut("properties").and_then(Value::as_object_mut) {
        properties.values_mut().for_each(structural);
    }
    if let Some(items) = node.get_mut("items") {
        structural(items);
    }
}

/// Downloads the sources if needed, applies every router CRD server-side and waits until each is
/// Established.
pub async fn install(client: &Client) -> Result<()> {
    ensure_downloaded()?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    let crds = crds()?;
    let mut names = Vec::with_capacity(crds.len());
    for crd in &crds {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .context("a router CRD without a name")?;
        if let Some(installed) = api.get_opt(name).await? {
            let dropped = dropped_versions(&installed, crd);
            if !dropped.is_empty() {
                delete_and_wait(&api, name, &dropped).await?;
            }
        }
        api.patch(name, &params, &Patch::Apply(crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        names.push(name.to_owned());
    }
    for name in &names {
        let established = await_condition(api.clone(), name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not Established within 30 s"))??;
    }
    Ok(())
}

/// The versions an installed CRD has stored objects in that `wanted` no longer lists: the
/// apiserver refuses such an update (another SDK release of the same kind, as SMI's TrafficSplit
/// from v1alpha4 to v1alpha1).
fn dropped_versions(installed: &CustomResourceDefinition, wanted: &Value) -> Vec<String> {
    let listed: Vec<&str> = wanted
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .collect();
    installed
        .status
        .as_ref()
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !listed.contains(&v.as_str()))
        .collect()
}

/// Deletes the CRD `name` (and so its objects, test objects on the local cluster) and waits until
/// it is gone, so that its new definition can be created.
async fn delete_and_wait(
    api: &Api<CustomResourceDefinition>,
    name: &str,
    dropped: &[String],
) -> Result<()> {
    eprintln!(
        "replacing CRD {name}: the pinned definition no longer serves {}",
        dropped.join(", ")
    );
    match api.delete(name, &Default::default()).await {
        // Another test's install may have deleted it first.
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => return Err(e).with_context(|| format!("deleting CRD {name}")),
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while api.get_opt(name).await?.is_some() {
        if std::time::Instant::now() > deadline {
            bail!("CRD {name} still there 60 s after its deletion");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Installs the router CRDs unless those the routers write are already served (a cluster
/// started by an older `cluster up` may lack them): what a test that needs them calls first.
pub async fn ensure_installed(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (name, version) in WRITTEN {
        let served = api.get_opt(name).await?.is_some_and(|crd| {
            crd.spec
                .versions
                .iter()
                .any(|v| v.name == *version && v.served)
        });
        if !served {
            return install(client).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1beta1_crd_becomes_v1_with_its_schema_in_every_version() {
        let v1beta1: Value = serde_norway::from_str(
            r#"
apiVersion: apiextensions.k8s.io/v1beta1
kind: CustomResourceDefinition
metadata: { name: trafficsplits.split.smi-spec.io }
spec:
  group: split.smi-spec.io
  scope: Namespaced
  names: { kind: TrafficSplit, plural: trafficsplits }
  version: v1alpha4
  versions:
    - { name: v1alpha4, served: true, storage: true }
    - { name: v1alpha3, served: false, storage: false }
  additionalPrinterColumns:
    - { name: Service, type: string, JSONPath: .spec.service }
  validation:
    openAPIV3Schema:
      properties:
        spec:
          properties:
            backends: { items: { type: object } }
"#,
        )
        .unwrap();
        let v1 = to_v1(v1beta1).unwrap();
        assert_eq!(v1["apiVersion"], "apiextensions.k8s.io/v1");
        let spec = &v1["spec"];
        assert!(spec.get("version").is_none() && spec.get("validation").is_none());
        let versions = spec["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2);
        for v in versions {
            assert_eq!(v["schema"]["openAPIV3Schema"]["type"], "object");
            let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
            assert_eq!(spec["type"], "object");
            assert_eq!(spec["properties"]["backends"]["type"], "array");
            assert_eq!(
                v["additionalPrinterColumns"][0]["jsonPath"],
                ".spec.service"
            );
        }
        assert_eq!(versions[0]["served"], true);
    }

    #[test]
    fn a_stored_version_the_new_definition_drops_is_found() {
        let installed: CustomResourceDefinition = serde_json::from_value(json!({
            "metadata": { "name": "trafficsplits.split.smi-spec.io" },
            "spec": {
                "group": "split.smi-spec.io",
                "scope": "Namespaced",
                "names": { "kind": "TrafficSplit", "plural": "trafficsplits" },
                "versions": [{ "name": "v1alpha4", "served": true, "storage": true }],
            },
            "status": { "storedVersions": ["v1alpha4"] },
        }))
        .unwrap();
        let v1alpha1 = json!({ "spec": { "versions": [{ "name": "v1alpha1" }] } });
        assert_eq!(dropped_versions(&installed, &v1alpha1), ["v1alpha4"]);
        let both =
            json!({ "spec": { "versions": [{ "name": "v1alpha1" }, { "name": "v1alpha4" }] } });
        assert!(dropped_versions(&installed, &both).is_empty());
    }
}
