//! Ephemeral pod metadata: labels and annotations a version's pods carry only while they play a
//! role (`activeMetadata`/`previewMetadata`, `stableMetadata`/`canaryMetadata`), moved when the
//! role moves. What a ReplicaSet's pods carry is recorded on the ReplicaSet, so the plan compares
//! wanted with recorded and never needs to read pods.

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube_core::ResourceExt;
use sluice_api::{PodTemplateMetadata, vocab::EPHEMERAL_ANNOTATION};

use super::{Action, Planner, replicasets::SetView};

/// Reads the recorded metadata of a ReplicaSet; none recorded (or unreadable) is empty.
pub fn recorded(rs: &ReplicaSet) -> PodTemplateMetadata {
    rs.annotations()
        .get(EPHEMERAL_ANNOTATION)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// Puts `metadata` on a ReplicaSet about to be created, so its pods start with it.
pub fn stamp(rs: &mut ReplicaSet, metadata: Option<&PodTemplateMetadata>) {
    let Some(metadata) = metadata.filter(|m| !m.labels.is_empty() || !m.annotations.is_empty())
    else {
        return;
    };
    if let Some(template) = rs.spec.as_mut().and_then(|s| s.template.as_mut()) {
        let meta = template.metadata.get_or_insert_with(Default::default);
        let labels = meta.labels.get_or_insert_with(Default::default);
        labels.extend(metadata.labels.clone());
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        annotations.extend(metadata.annotations.clone());
    }
    rs.annotations_mut().insert(
        EPHEMERAL_ANNOTATION.into(),
        serde_json::to_string(metadata).unwrap_or_default(),
    );
}

/// Moves each running set's pod metadata to what its role asks (`wanted`, by set).
pub fn sync(p: &mut Planner<'_>, wanted: impl Fn(&SetView) -> Option<PodTemplateMetadata>) {
    for set in p.sets.clone() {
        if set.replicas == 0 && set.pods == 0 {
            continue;
        }
        let want = wanted(&set).unwrap_or_default();
        if want != set.ephemeral {
            p.act(Action::SetPodMetadata {
                name: set.name.clone(),
                hash: set.hash.clone(),
                wanted: want,
                previous: set.ephemeral.clone(),
            });
        }
    }
}
