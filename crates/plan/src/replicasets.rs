//! ReplicaSets as the plan sees them: the pod template hash that names a version, the
//! ReplicaSet Sluice creates for it, and a compact view of the ones that exist.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{ReplicaSet, ReplicaSetSpec},
        core::v1::{
            Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
};
use kube_core::ResourceExt;

use sluice_api::{
    AntiAffinity, Rollout,
    vocab::{
        DESIRED_REPLICAS_ANNOTATION, HOSTNAME_LABEL, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
        SCALE_DOWN_DEADLINE_ANNOTATION, TEMPLATE_DIGEST_ANNOTATION, TEMPLATE_HASH_ANNOTATION,
    },
};

/// FNV-1a (64 bit) of the template's JSON in hex, for [`TEMPLATE_DIGEST_ANNOTATION`].
pub fn template_digest(template: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let digest = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{digest:016x}")
}

/// Why `existing`, found under the name of the ReplicaSet the plan wanted to create, is not that
/// ReplicaSet: it is not controlled by the same Rollout (by uid: a Rollout deleted and created
/// again under the same name is another owner), or it records another pod template. `None`: it
/// is the wanted set, created by an earlier attempt whose status write did not land.
pub fn collision(existing: &ReplicaSet, wanted: &ReplicaSet) -> Option<String> {
    let controller = |rs: &ReplicaSet| {
        rs.owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .cloned()
    };
    let name = existing.name_any();
    let owner = wanted
        .owner_references()
        .first()
        .cloned()
        .unwrap_or_default();
    match controller(existing) {
        None => {
            return Some(format!(
                "ReplicaSet {name} exists and no controller owns it"
            ));
        }
        Some(found) if found.uid != owner.uid => {
            return Some(format!(
                "ReplicaSet {name} exists and belongs to {} {} (uid {}), not to {} {} (uid {})",
                found.kind, found.name, found.uid, owner.kind, owner.name, owner.uid
            ));
        }
        Some(_) => {}
    }
    let digest = |rs: &ReplicaSet| rs.annotations().get(TEMPLATE_DIGEST_ANNOTATION).cloned();
    match (digest(existing), digest(wanted)) {
        (Some(found), Some(want)) if found != want => Some(format!(
            "ReplicaSet {name} exists and runs another pod template (digest {found}, not {want})"
        )),
        _ => None,
    }
}

/// One existing ReplicaSet of the rollout, reduced to what decisions need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetView {
    /// The ReplicaSet's name.
    pub name: String,
    /// Its `rollouts-pod-template-hash` label.
    pub hash: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Pods that exist (`status.replicas`).
    pub pods: i32,
    /// Ready pods.
    pub ready: i32,
    /// Pods ready for at least minReadySeconds.
    pub available: i32,
    /// The revision annotation (0 when absent).
    pub revision: i64,
    /// The Sluice hash of its template when it was adopted ([`TEMPLATE_HASH_ANNOTATION`]).
    pub template_hash: Option<String>,
    /// When it may be scaled down ([`SCALE_DOWN_DEADLINE_ANNOTATION`]); unreadable counts as none.
    pub scale_down_deadline: Option<jiff::Timestamp>,
    /// The ephemeral metadata its pods carry ([`EPHEMERAL_ANNOTATION`](sluice_api::vocab::EPHEMERAL_ANNOTATION)).
    pub ephemeral: sluice_api::PodTemplateMetadata,
}

impl SetView {
    /// The view of a ReplicaSet; `None` when it carries no pod template hash label.
    pub fn of(rs: &ReplicaSet) -> Option<Self> {
        let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone();
        let status = rs.status.as_ref();
        Some(Self {
            name: rs.name_any(),
            hash,
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            pods: status.map_or(0, |s| s.replicas),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available: status.and_then(|s| s.available_replicas).unwrap_or(0),
            revision: rs
                .annotations()
                .get(REVISION_ANNOTATION)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            template_hash: rs.annotations().get(TEMPLATE_HASH_ANNOTATION).cloned(),
            scale_down_deadline: rs
                .annotations()
                .get(SCALE_DOWN_DEADLINE_ANNOTATION)
                .and_then(|t| t.parse().ok()),
            ephemeral: super::metadata::recorded(rs),
        })
    }

    /// How long the set still waits for its scale-down deadline at `now`; `None` when it has
    /// none or the deadline has passed.
    pub fn scale_down_wait(&self, now: jiff::Timestamp) -> Option<std::time::Duration> {
        self.scale_down_deadline
            .filter(|d| *d > now)
            .map(|d| d.duration_since(now).unsigned_abs())
    }
}

/// The ReplicaSet Sluice creates for a new version of the rollout's pods.
///
/// Its selector and pods carry the hash label, so each version's pods are told apart; it is
/// owned (as controller) by the rollout, so it is garbage-collected with it.
pub fn new_replica_set(
    rollout: &Rollout,
    template: &PodTemplateSpec,
    hash: &str,
    replicas: i32,
    revision: i64,
) -> ReplicaSet {
    let digest = template_digest(template);
    let mut template = template.clone();
    let metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    let labels = metadata.labels.clone();

    let mut selector = rollout.spec.selector.clone().unwrap_or_default();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());

    let owner = OwnerReference {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        name: rollout.name_any(),
        uid: rollout.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", rollout.name_any())),
            namespace: rollout.namespace(),
            labels,
            annotations: Some(BTreeMap::from([
                (REVISION_ANNOTATION.to_string(), revision.to_string()),
                (
                    DESIRED_REPLICAS_ANNOTATION.to_string(),
                    rollout.spec.desired_replicas().to_string(),
                ),
                (TEMPLATE_DIGEST_ANNOTATION.to_string(), digest),
            ])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: rollout.spec.min_ready_seconds,
            selector: LabelSelector {
                match_expressions: selector.match_expressions,
                match_labels: selector.match_labels,
            },
            template: Some(template),
        }),
        status: None,
    }
}

/// Keeps the new version's pods away from the nodes of the stable version's pods.
pub fn add_anti_affinity(rs: &mut ReplicaSet, rule: &AntiAffinity, stable: &str) {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                POD_TEMPLATE_HASH_LABEL.to_string(),
                stable.to_string(),
            )])),
            ..LabelSelector::default()
        }),
        topology_key: HOSTNAME_LABEL.into(),
        ..PodAffinityTerm::default()
    };
    let Some(pod) = rs
        .spec
        .as_mut()
        .and_then(|s| s.template.as_mut())
        .and_then(|t| t.spec.as_mut())
    else {
        return;
    };
    let anti = pod
        .affinity
        .get_or_insert_with(Affinity::default)
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default);
    if let Some(preferred) = rule
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
    {
        anti.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight: preferred.weight,
                pod_affinity_term: term,
            });
    } else if rule
        .required_during_scheduling_ignored_during_execution
        .is_some()
    {
        anti.required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
    }
}

#[cfg(test)]
mod tests {
    use sluice_api::model::{pod_template_hash, selector_string};

    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "web", "image": image }] }
        }))
        .expect("a template")
    }

    #[test]
    fn the_hash_names_a_template_and_changes_with_it() {
        let a = pod_template_hash(&template("web:1"), None);
        assert_eq!(
            a,
            pod_template_hash(&template("web:1"), None),
            "the same template, the same hash"
        );
        assert_ne!(
            a,
            pod_template_hash(&template("web:2"), None),
            "another image, another hash"
        );
        assert_ne!(
            a,
            pod_template_hash(&template("web:1"), Some(1)),
            "a collision count moves the hash"
        );
        assert!(
            a.len() >= 6
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() && !"aeiou".contains(c)),
            "{a}"
        );
    }

    #[test]
    fn a_new_replica_set_is_owned_labelled_and_selects_only_its_version() {
        let rollout: Rollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "shop", "uid": "u-1" },
            "spec": { "replicas": 4, "minReadySeconds": 5, "selector": { "matchLabels": { "app": "web" } },
                      "template": { "metadata": { "labels": { "app": "web" } },
                                    "spec": { "containers": [{ "name": "web", "image": "web:1" }] } },
                      "strategy": { "canary": {} } }
        }))
        .expect("a rollout");
        let template = rollout.spec.template.clone().expect("a template");
        let rs = new_replica_set(&rollout, &template, "abc12", 2, 3);
        assert_eq!(rs.metadata.name.as_deref(), Some("web-abc12"));
        assert_eq!(rs.metadata.namespace.as_deref(), Some("shop"));
        let owner = &rs.metadata.owner_references.as_ref().expect("owners")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Rollout", "u-1", Some(true))
        );
        let spec = rs.spec.as_ref().expect("a spec");
        assert_eq!((spec.replicas, spec.min_ready_seconds), (Some(2), Some(5)));
        let expected = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            (POD_TEMPLATE_HASH_LABEL.to_string(), "abc12".to_string()),
        ]);
        assert_eq!(spec.selector.match_labels.as_ref(), Some(&expected));
        assert_eq!(
            spec.template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref()),
            Some(&expected)
        );
        assert_eq!(
            rs.annotations()
                .get(REVISION_ANNOTATION)
                .map(String::as_str),
            Some("3")
        );
        let view = SetView::of(&rs).expect("a view");
        assert_eq!(
            (
                view.hash.as_str(),
                view.replicas,
                view.available,
                view.revision
            ),
            ("abc12", 2, 0, 3)
        );
    }

    #[test]
    fn selectors_print_as_kubernetes_prints_them() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": { "app": "web", "tier": "front" },
            "matchExpressions": [{ "key": "env", "operator": "In", "values": ["prod", "stage"] }]
        }))
        .expect("a selector");
        assert_eq!(
            selector_string(&selector),
            "app=web,tier=front,env in (prod,stage)"
        );
    }
}
