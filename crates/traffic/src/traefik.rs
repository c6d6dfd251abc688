//! Traefik: the canary's share in a weighted TraefikService.
//!
//! The router reads the TraefikService named `traefik.weightedTraefikServiceName`, whose
//! `spec.weighted.services` lists the canary and the stable Service by name, and writes only the
//! `weight` of those two entries (the canary's weight and what is left of the max weight). Every
//! other entry and field stays as written, which is why Argo's docs tell users to leave the weights
//! out of the manifest they keep in git.
//!
//! Traefik has no header or mirror routes here (Argo Rollouts' Traefik router ignores them too).

use serde_json::Value;
use sluice_api::TraefikTrafficRouting;

use crate::common::{invalid, read_at, set_weight, share, weight_or};
use crate::{Current, Desired, ObjectRef, Router, RouterError, Write};

/// The API group Traefik v2.10+ and v3 serve TraefikServices under.
pub const GROUP: &str = "traefik.io";
/// The group Traefik v2 used before `traefik.io` (Argo Rollouts' default, removed in Traefik v3).
pub const LEGACY_GROUP: &str = "traefik.containo.us";

/// Weight Traefik gives a weighted entry that does not say.
const TRAEFIK_DEFAULT_WEIGHT: f64 = 1.0;

/// The Traefik router: weights in a TraefikService's weighted round robin.
#[derive(Clone, Debug)]
pub struct Traefik {
    config: TraefikTrafficRouting,
    group: &'static str,
}

impl Traefik {
    /// A router for `trafficRouting.traefik`, reading the TraefikService from `traefik.io`.
    pub fn new(config: &TraefikTrafficRouting) -> Self {
        Self {
            config: config.clone(),
            group: GROUP,
        }
    }

    /// A router reading the TraefikService from the legacy `traefik.containo.us` group, for
    /// clusters still on Traefik v2's old CRDs (what Argo's `--traefik-api-group` selects).
    pub fn legacy(config: &TraefikTrafficRouting) -> Self {
        Self {
            config: config.clone(),
            group: LEGACY_GROUP,
        }
    }

    fn service_ref(&self, namespace: &str) -> ObjectRef {
        ObjectRef {
            group: self.group,
            version: "v1alpha1",
            kind: "TraefikService",
            plural: "traefikservices",
            namespace: namespace.to_string(),
            name: self.config.weighted_traefik_service_name.clone(),
        }
    }

    /// The TraefikService read, with its reference, or why it cannot be used.
    fn read<'a>(
        &self,
        current: Current<'a>,
        desired: &Desired,
    ) -> Result<(ObjectRef, &'a Value), RouterError> {
        let object = self.service_ref(&desired.namespace);
        let service = read_at(current, 0, &object)?;
        Ok((object, service))
    }
}

/// The entries of `spec.weighted.services`.
fn entries<'a>(service: &'a Value, object: &ObjectRef) -> Result<&'a [Value], RouterError> {
    service
        .pointer("/spec/weighted/services")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| {
            invalid(
                object,
                "has no spec.weighted.services list (a weighted TraefikService is needed)",
            )
        })
}

/// Positions of the canary and the stable entries.
fn positions(
    entries: &[Value],
    desired: &Desired,
    object: &ObjectRef,
) -> Result<(usize, usize), RouterError> {
    let find = |name: &str| {
        entries
            .iter()
            .position(|e| !name.is_empty() && e.get("name").and_then(Value::as_str) == Some(name))
    };
    let canary = find(&desired.canary_service).ok_or_else(|| {
        invalid(
            object,
            format!(
                "spec.weighted.services lists no entry named after the canary Service `{}`",
                desired.canary_service
            ),
        )
    })?;
    let stable = find(&desired.stable_service).ok_or_else(|| {
        invalid(
            object,
            format!(
                "spec.weighted.services lists no entry named after the stable Service `{}`",
                desired.stable_service
            ),
        )
    })?;
    Ok((canary, stable))
}

/// An entry's weight as Traefik reads it (1 when absent).
fn entry_weight(entry: &Value, object: &ObjectRef) -> Result<f64, RouterError> {
    weight_or(entry, TRAEFIK_DEFAULT_WEIGHT).map_err(|w| {
        invalid(
            object,
            format!("spec.weighted.services has a weight that is not a non-negative number: {w}"),
        )
    })
}

impl Router for Traefik {
    fn name(&self) -> &'static str {
        "traefik"
    }

    fn objects(&self, namespace: &str, _rollout: &str) -> Vec<ObjectRef> {
        vec![self.service_ref(namespace)]
    }

    /// The canary's share of all the weighted entries (Traefik's weights are relative).
    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError> {
        let (object, service) = self.read(current, desired)?;
        let entries = entries(service, &object)?;
        let (canary, _) = positions(entries, desired, &object)?;
        let mut total = 0.0;
        for entry in entries {
            total += entry_weight(entry, &object)?;
        }
        let canary = entries
            .get(canary)
            .map_or(Ok(0.0), |e| entry_weight(e, &object))?;
        Ok(share(canary, total, desired.max_weight))
    }

    fn reconcile(
        &self,
        current: Current<'_>,
        desired: &Desired,
    ) -> Result<Vec<Write>, RouterError> {
        let (object, service) = self.read(current, desired)?;
        let (canary, stable) = positions(entries(service, &object)?, desired, &object)?;
        let mut updated = service.clone();
        if let Some(list) = updated
            .pointer_mut("/spec/weighted/services")
            .and_then(Value::as_array_mut)
        {
            if let Some(entry) = list.get_mut(canary) {
                set_weight(entry, desired.canary_weight);
            }
            if let Some(entry) = list.get_mut(stable) {
                set_weight(entry, desired.stable_weight());
            }
        }
        if updated == *service {
            Ok(Vec::new())
        } else {
            Ok(vec![Write::Replace(object, updated)])
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::common::tests::{self as fixtures, replaced};

    fn desired(weight: i32) -> Desired {
        fixtures::desired(
            "rollouts-demo",
            "default",
            "canary-rollout",
            "stable-rollout",
            weight,
        )
    }

    fn router() -> Traefik {
        Traefik::new(&TraefikTrafficRouting {
            weighted_traefik_service_name: "traefik-service".into(),
        })
    }

    /// The TraefikService of Argo's Traefik guide: no weights, so Argo CD stays in sync.
    fn service() -> Value {
        json!({
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "TraefikService",
            "metadata": {
                "name": "traefik-service",
                "namespace": "default",
                "resourceVersion": "4242",
                "labels": {"app.kubernetes.io/instance": "demo"}
            },
            "spec": {
                "weighted": {
                    "services": [
                        {"name": "stable-rollout", "port": 80},
                        {"name": "canary-rollout", "port": 80}
                    ],
                    "sticky": {"cookie": {"name": "lb"}}
                }
            }
        })
    }

    #[test]
    fn writes_the_canary_and_stable_weights_and_nothing_else() {
        let writes = router()
            .reconcile(&[Some(service())], &desired(20))
            .unwrap();
        let body = replaced(&writes);
        let mut expected = service();
        expected["spec"]["weighted"]["services"][0]["weight"] = json!(80);
        expected["spec"]["weighted"]["services"][1]["weight"] = json!(20);
        assert_eq!(*body, expected);
        assert_eq!(body["metadata"]["resourceVersion"], "4242");
        let target = writes[0].target();
        assert_eq!(target.group, "traefik.io");
        assert_eq!(target.api_version(), "traefik.io/v1alpha1");
        assert_eq!(target.to_string(), "TraefikService default/traefik-service");
    }

    #[test]
    fn a_second_reconcile_writes_nothing() {
        let r = router();
        let first = r.reconcile(&[Some(service())], &desired(35)).unwrap();
        let written = replaced(&first).clone();
        assert_eq!(
            r.reconcile(&[Some(written.clone())], &desired(35)).unwrap(),
            vec![]
        );
        assert_eq!(r.weight(&[Some(written)], &desired(35)).unwrap(), 35);
    }

    #[test]
    fn weights_follow_the_max_weight() {
        let mut d = desired(250);
        d.max_weight = 1000;
        let writes = router().reconcile(&[Some(service())], &d).unwrap();
        let body = replaced(&writes);
        assert_eq!(body["spec"]["weighted"]["services"][0]["weight"], 750);
        assert_eq!(body["spec"]["weighted"]["services"][1]["weight"], 250);
        assert_eq!(router().weight(&[Some(body.clone())], &d).unwrap(), 250);
    }

    #[test]
    fn unweighted_entries_split_evenly_so_the_canary_has_half() {
        // Traefik gives an entry without a weight the weight 1: before the first write the canary
        // gets half of the requests, which must not be reported as none.
        assert_eq!(
            router().weight(&[Some(service())], &desired(0)).unwrap(),
            50
        );
    }

    #[test]
    fn an_all_stable_split_reports_zero() {
        let mut s = service();
        s["spec"]["weighted"]["services"][0]["weight"] = json!(100);
        s["spec"]["weighted"]["services"][1]["weight"] = json!(0);
        assert_eq!(router().weight(&[Some(s.clone())], &desired(0)).unwrap(), 0);
        assert_eq!(router().reconcile(&[Some(s)], &desired(0)).unwrap(), vec![]);
    }

    #[test]
    fn other_entries_are_left_alone() {
        let mut s = service();
        s["spec"]["weighted"]["services"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "maintenance", "port": 8080, "weight": 0}));
        let writes = router().reconcile(&[Some(s)], &desired(10)).unwrap();
        assert_eq!(
            replaced(&writes)["spec"]["weighted"]["services"][2],
            json!({"name": "maintenance", "port": 8080, "weight": 0})
        );
    }

    #[test]
    fn a_missing_traefik_service_is_not_found() {
        let err = router().reconcile(&[None], &desired(10)).unwrap_err();
        assert_eq!(
            err,
            RouterError::NotFound("TraefikService default/traefik-service".into())
        );
        assert!(router().weight(&[], &desired(10)).is_err());
    }

    #[test]
    fn a_service_without_the_canary_entry_is_invalid() {
        let mut s = service();
        s["spec"]["weighted"]["services"][1]["name"] = json!("someone-else");
        let err = router().reconcile(&[Some(s)], &desired(10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TraefikService default/traefik-service: spec.weighted.services lists no entry named \
             after the canary Service `canary-rollout`"
        );
    }

    #[test]
    fn a_service_without_the_stable_entry_is_invalid() {
        let mut s = service();
        s["spec"]["weighted"]["services"][0]["name"] = json!("someone-else");
        let err = router().reconcile(&[Some(s)], &desired(10)).unwrap_err();
        assert!(
            err.to_string().contains("stable Service `stable-rollout`"),
            "{err}"
        );
    }

    #[test]
    fn a_mirroring_traefik_service_is_invalid() {
        let s = json!({
            "apiVersion": "traefik.io/v1alpha1",
            "kind": "TraefikService",
            "metadata": {"name": "traefik-service", "namespace": "default"},
            "spec": {"mirroring": {"name": "stable-rollout", "port": 80}}
        });
        let err = router().reconcile(&[Some(s)], &desired(10)).unwrap_err();
        assert!(err.to_string().contains("spec.weighted.services"), "{err}");
    }

    #[test]
    fn a_weight_that_is_not_a_number_is_invalid_not_a_panic() {
        let mut s = service();
        s["spec"]["weighted"]["services"][1]["weight"] = json!("ten");
        assert!(matches!(
            router().weight(&[Some(s)], &desired(10)),
            Err(RouterError::Invalid { .. })
        ));
    }

    #[test]
    fn header_and_mirror_routes_are_ignored_as_argo_ignores_them() {
        let mut d = desired(10);
        d.header_routes = vec![crate::HeaderRoute {
            name: "header".into(),
            matches: Vec::new(),
        }];
        d.mirror_routes = vec![crate::MirrorRoute {
            name: "mirror".into(),
            matches: Vec::new(),
            percentage: 50,
        }];
        assert_eq!(
            router().reconcile(&[Some(service())], &d).unwrap(),
            router()
                .reconcile(&[Some(service())], &desired(10))
                .unwrap()
        );
    }

    #[test]
    fn the_legacy_group_is_read_when_asked() {
        let r = Traefik::legacy(&TraefikTrafficRouting {
            weighted_traefik_service_name: "traefik-service".into(),
        });
        let objects = r.objects("default", "rollouts-demo");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].api_version(), "traefik.containo.us/v1alpha1");
        let mut s = service();
        s["apiVersion"] = json!("traefik.containo.us/v1alpha1");
        let writes = r.reconcile(&[Some(s)], &desired(40)).unwrap();
        assert_eq!(writes[0].target().group, "traefik.containo.us");
    }
}
