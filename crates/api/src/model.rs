//! The read model: what any reader of a Rollout (the controller, the plugin, a dashboard) derives
//! from the API objects the same way, so that they never disagree.

use k8s_openapi::{
    api::core::v1::PodTemplateSpec, apimachinery::pkg::apis::meta::v1::LabelSelector,
};

use crate::CanaryStep;

/// A stable, short name for a pod template: the same template always gives the same hash.
///
/// FNV-1a (32 bit) of the template's JSON, written with the alphabet Kubernetes uses for
/// generated names (no vowels, so no accidental words). `collision_count` is mixed in so a
/// collision can be resolved by bumping `status.collisionCount`.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(count.to_string().as_bytes());
    }
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    safe_encode(&hash.to_string())
}

/// A hash of the canary steps, so a change of steps mid-rollout is noticed.
pub fn steps_hash(steps: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(steps).unwrap_or_default();
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    safe_encode(&hash.to_string())
}

fn safe_encode(text: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    text.bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// `matchLabels` of a selector as the `k=v,k2=v2` string Kubernetes puts in `status.selector`.
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            _ => format!("!{}", expr.key),
        });
    }
    parts.join(",")
}

/// The canary weight at a step: the last `setWeight` at or before it, 100 past the last step.
pub fn weight_at(steps: &[CanaryStep], index: i32) -> i32 {
    let Ok(index) = usize::try_from(index) else {
        return 0;
    };
    if index >= steps.len() {
        return 100;
    }
    steps[..=index]
        .iter()
        .rev()
        .find_map(|s| match s {
            CanaryStep::SetWeight(w) => Some(*w),
            _ => None,
        })
        .unwrap_or(0)
}

/// The most bytes of an API message kept in a condition.
pub const MESSAGE_LIMIT: usize = 1024;
/// The most bytes of an event's note: Kubernetes refuses a longer one (events.k8s.io/v1
/// `note`, 1 KiB, counted in bytes).
pub const NOTE_LIMIT: usize = 1024;

/// `text` cut to at most `limit` bytes at a UTF-8 character boundary, with `…` when cut:
/// Kubernetes counts an event note's length in bytes (1 KiB at most) and refuses a longer one,
/// so counting characters lets a message of multibyte characters through the cut and then lose
/// the whole event.
pub fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    const MORE: &str = "…";
    let mut end = limit.saturating_sub(MORE.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_are_cut_by_bytes_at_a_character_boundary() {
        // 1000 characters, 2000 bytes: cut by characters, the API refuses the whole event.
        let accents = "é".repeat(1000);
        let note = cut(&accents, NOTE_LIMIT);
        assert!(note.len() <= NOTE_LIMIT, "{} bytes", note.len());
        assert!(accents.starts_with(note.trim_end_matches('…')));
        assert!(note.ends_with('…'), "a cut note says so");
        // A 3-byte character across the limit is dropped whole.
        let straddling = format!("{}€€", "a".repeat(1020));
        let note = cut(&straddling, NOTE_LIMIT);
        assert!(note.len() <= NOTE_LIMIT);
        assert_eq!(note, format!("{}…", "a".repeat(1020)));
        let fits = "€".repeat(341);
        assert_eq!(cut(&fits, NOTE_LIMIT), fits, "1023 bytes pass untouched");
    }
}
