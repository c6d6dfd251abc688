//! The objects an experiment owns, built whole: each template's ReplicaSet (named, labelled and
//! hashed so its pods are told apart from a Rollout's pods of the same template) and its Service.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{ReplicaSet, ReplicaSetSpec},
        core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube_core::ResourceExt;
use sluice_api::{
    Experiment, TemplateSpec,
    model::pod_template_hash,
    vocab::{EXPERIMENT_NAME_ANNOTATION, EXPERIMENT_TEMPLATE_ANNOTATION, POD_TEMPLATE_HASH_LABEL},
};

/// The name of a template's ReplicaSet, `<experiment>-<template>`, as Argo names it.
pub fn replica_set_name(experiment: &str, template: &str) -> String {
    format!("{experiment}-{template}")
}

/// The name of a template's Service: `service.name` when given, else the ReplicaSet's name.
pub fn service_name(experiment: &str, template: &TemplateSpec) -> Option<String> {
    let service = template.service.as_ref()?;
    Some(
        service
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| replica_set_name(experiment, &template.name)),
    )
}

/// The pod template hash of a template's ReplicaSet.
///
/// The experiment's and the template's names are hashed with the pod template, so an
/// experiment running a Rollout's own template never shares a hash (and so a Service selector
/// or a ReplicaSet's pods) with that Rollout's version; the same inputs always give the same
/// hash. `collision_count` resolves a collision as a Rollout's does.
pub fn template_hash(
    experiment: &str,
    template: &TemplateSpec,
    collision_count: Option<i32>,
) -> String {
    let mut pod = template.template.clone();
    let annotations = pod
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(EXPERIMENT_NAME_ANNOTATION.into(), experiment.into());
    annotations.insert(EXPERIMENT_TEMPLATE_ANNOTATION.into(), template.name.clone());
    pod_template_hash(&pod, collision_count)
}

/// The owner reference that ties an object to its experiment (garbage-collected with it).
fn owner(experiment: &Experiment) -> OwnerReference {
    OwnerReference {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Experiment".into(),
        name: experiment.name_any(),
        uid: experiment.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The annotations that say which experiment and template an object was made for.
fn annotations(experiment: &Experiment, template: &TemplateSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            EXPERIMENT_NAME_ANNOTATION.to_string(),
            experiment.name_any(),
        ),
        (
            EXPERIMENT_TEMPLATE_ANNOTATION.to_string(),
            template.name.clone(),
        ),
    ])
}

/// The ReplicaSet of `template` with `replicas` pods: its pods and selector carry the hash
/// label, so they are told apart from every other ReplicaSet's pods.
pub fn replica_set(
    experiment: &Experiment,
    template: &TemplateSpec,
    hash: &str,
    replicas: i32,
) -> ReplicaSet {
    let mut pod: PodTemplateSpec = template.template.clone();
    let metadata = pod.metadata.get_or_insert_with(ObjectMeta::default);
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    let labels = metadata.labels.clone();
    let mut selector = template.selector.clone().unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(replica_set_name(&experiment.name_any(), &template.name)),
            namespace: experiment.namespace(),
            labels,
            annotations: Some(annotations(experiment, template)),
            owner_references: Some(vec![owner(experiment)]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: template.min_ready_seconds,
            selector: LabelSelector {
                match_expressions: selector.match_expressions,
                match_labels: selector.match_labels,
            },
            template: Some(pod),
        }),
        status: None,
    }
}

/// The ports a template's Service exposes: every container port, under its own number.
pub fn service_ports(template: &TemplateSpec) -> Vec<ServicePort> {
    template
        .template
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| ServicePort {
            name: p.name.clone(),
            port: p.container_port,
            protocol: p.protocol.clone(),
            target_port: Some(IntOrString::Int(p.container_port)),
            ..ServicePort::default()
        })
        .collect()
}

/// The Service of `template` (which asks for one), selecting exactly its ReplicaSet's pods.
pub fn service(
    experiment: &Experiment,
    template: &TemplateSpec,
    hash: &str,
    name: &str,
) -> Service {
    let mut selector = template
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    selector.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: experiment.namespace(),
            annotations: Some(annotations(experiment, template)),
            owner_references: Some(vec![owner(experiment)]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(service_ports(template)),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Whether `selector` selects pods carrying `labels` (Kubernetes' rules; an unknown operator
/// selects nothing).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}
