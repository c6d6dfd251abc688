//! SMI: a TrafficSplit between the canary and stable Services, created and owned by the rollout.
//!
//! The router reads the `split.smi-spec.io/v1alpha1` TrafficSplit named `smi.trafficSplitName`
//! (the rollout's name when absent). When it does not exist the router creates it, with
//! `spec.service` the root Service (`smi.rootService`, else the stable Service) and
//! `spec.backends` the canary then the stable Service with their weights; when it exists it must
//! be the rollout's (an owner reference to the Rollout, as Argo Rollouts sets, or Sluice's
//! managed-by annotation) and only `spec.service` and `spec.backends` are rewritten.
//!
//! `v1alpha1` is Argo Rollouts' default TrafficSplit version (`--traffic-split-api-version`); its
//! weights are Kubernetes quantities, written as strings (`"10"`) as Argo writes them, and read
//! whether they are strings or numbers. SMI has no header or mirror routes here (Argo Rollouts'
//! SMI router ignores them too).

use serde_json::{Value, json};
use sluice_api::SmiTrafficRouting;

use crate::common::{
    invalid, managed_by, new_object, non_empty_or, non_negative, not_owned, number_or_text,
    owned_by, read_at, share,
};
use crate::{Current, Desired, ObjectRef, Router, RouterError, Write};

/// The API group of SMI traffic splits.
pub const GROUP: &str = "split.smi-spec.io";
/// The TrafficSplit version written (Argo Rollouts' default).
pub const VERSION: &str = "v1alpha1";

/// The SMI router: one TrafficSplit per rollout.
#[derive(Clone, Debug)]
pub struct Smi {
    config: SmiTrafficRouting,
}

impl Smi {
    /// A router for `trafficRouting.smi`.
    pub fn new(config: &SmiTrafficRouting) -> Self {
        Self {
            config: config.clone(),
        }
    }

    fn split_ref(&self, namespace: &str, rollout: &str) -> ObjectRef {
        ObjectRef {
            group: GROUP,
            version: VERSION,
            kind: "TrafficSplit",
            plural: "trafficsplits",
            namespace: namespace.to_string(),
            name: self
                .config
                .traffic_split_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| rollout.to_string()),
        }
    }

    fn root_service<'a>(&'a self, desired: &'a Desired) -> &'a str {
        non_empty_or(self.config.root_service.as_deref(), &desired.stable_service)
    }

    /// `spec` as the plan wants it.
    fn spec(&self, desired: &Desired) -> Value {
        json!({
            "service": self.root_service(desired),
            "backends": [
                {"service": desired.canary_service, "weight": desired.canary_weight.to_string()},
                {"service": desired.stable_service, "weight": desired.stable_weight().to_string()},
            ]
        })
    }
}

/// A quantity or a number as a number: `10`, `"10"`, `"500m"`.
fn quantity(value: &Value) -> Option<f64> {
    if let Value::String(s) = value
        && let Some(milli) = s.trim().strip_suffix('m')
    {
        return milli
            .parse::<f64>()
            .ok()
            .and_then(|m| non_negative(m / 1000.0));
    }
    number_or_text(value)
}

/// The backends of a TrafficSplit's `spec` as (service, weight); `None` when one cannot be read.
fn backends(spec: Option<&Value>) -> Option<Vec<(&str, f64)>> {
    spec?
        .get("backends")?
        .as_array()?
        .iter()
        .map(|b| {
            let service = b.get("service")?.as_str()?;
            let weight = b.get("weight").map_or(Some(0.0), quantity)?;
            Some((service, weight))
        })
        .collect()
}

/// Whether `split` carries `spec` (weights compared as numbers).
fn carries(split: &Value, spec: &Value) -> bool {
    let same_service = split.pointer("/spec/service") == spec.get("service");
    let want = backends(Some(spec));
    same_service && want.is_some() && backends(split.get("spec")) == want
}

impl Router for Smi {
    fn name(&self) -> &'static str {
        "smi"
    }

    fn objects(&self, namespace: &str, rollout: &str) -> Vec<ObjectRef> {
        vec![self.split_ref(namespace, rollout)]
    }

    /// The canary backend's share of all backends.
    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError> {
        let object = self.split_ref(&desired.namespace, &desired.rollout);
        let split = read_at(current, 0, &object)?;
        let Some(backends) = backends(split.get("spec")) else {
            return Err(invalid(
                &object,
                "spec.backends is not a list of {service, weight}",
            ));
        };
        let total: f64 = backends.iter().map(|(_, w)| w).sum();
        let canary: f64 = backends
            .iter()
            .filter(|(s, _)| *s == desired.canary_service)
            .map(|(_, w)| w)
            .sum();
        Ok(share(canary, total, desired.max_weight))
    }

    fn reconcile(
        &self,
        current: Current<'_>,
        desired: &Desired,
    ) -> Result<Vec<Write>, RouterError> {
        let object = self.split_ref(&desired.namespace, &desired.rollout);
        let spec = self.spec(desired);
        let Some(split) = current.first().and_then(Option::as_ref) else {
            let created = new_object(&object, managed_by(&desired.rollout), spec);
            return Ok(vec![Write::Create(object, created)]);
        };
        if !owned_by(split, &desired.rollout) {
            return Err(not_owned(
                &object,
                &desired.rollout,
                "delete it so the rollout can create its own, or set `smi.trafficSplitName` to \
                 another name",
            ));
        }
        if carries(split, &spec) {
            return Ok(Vec::new());
        }
        let mut updated = split.clone();
        let Some(root) = updated.as_object_mut() else {
            return Err(invalid(&object, "is not a JSON object"));
        };
        let spec_map = root
            .entry("spec")
            .or_insert_with(|| Value::Object(Default::default()));
        if !spec_map.is_object() {
            *spec_map = Value::Object(Default::default());
        }
        if let (Some(target), Value::Object(want)) = (spec_map.as_object_mut(), spec) {
            target.extend(want);
        }
        Ok(vec![Write::Replace(object, updated)])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::common::tests::{self as fixtures};

    fn desired(weight: i32) -> Desired {
        fixtures::desired(
            "rollouts-demo",
            "demo",
            "rollouts-demo-canary",
            "rollouts-demo-stable",
            weight,
        )
    }

    /// `smi: {}` as in Argo's SMI getting-started guide.
    fn router() -> Smi {
        Smi::new(&SmiTrafficRouting::default())
    }

    /// A TrafficSplit as Argo Rollouts creates it (owner reference, quantity weights), after
    /// the API server added its metadata.
    fn argo_split(canary: &str, stable: &str) -> Value {
        json!({
            "apiVersion": "split.smi-spec.io/v1alpha1",
            "kind": "TrafficSplit",
            "metadata": {
                "name": "rollouts-demo",
                "namespace": "demo",
                "resourceVersion": "991",
                "uid": "f0e1",
                "ownerReferences": [{
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Rollout",
                    "name": "rollouts-demo",
                    "uid": "a1b2",
                    "controller": true,
                    "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "service": "rollouts-demo-stable",
                "backends": [
                    {"service": "rollouts-demo-canary", "weight": canary},
                    {"service": "rollouts-demo-stable", "weight": stable}
                ]
            }
        })
    }

    #[test]
    fn creates_the_traffic_split_when_missing() {
        let writes = router().reconcile(&[None], &desired(5)).unwrap();
        let [Write::Create(target, body)] = writes.as_slice() else {
            panic!("expected one Create, got {writes:?}");
        };
        assert_eq!(target.to_string(), "TrafficSplit demo/rollouts-demo");
        assert_eq!(
            *body,
            json!({
                "apiVersion": "split.smi-spec.io/v1alpha1",
                "kind": "TrafficSplit",
                "metadata": {
                    "name": "rollouts-demo",
                    "namespace": "demo",
                    "annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": "rollouts-demo"}
                },
                "spec": {
                    "service": "rollouts-demo-stable",
                    "backends": [
                        {"service": "rollouts-demo-canary", "weight": "5"},
                        {"service": "rollouts-demo-stable", "weight": "95"}
                    ]
                }
            })
        );
        // What it created is its own: the next reconcile, and the weight, read it back.
        assert_eq!(
            router()
                .reconcile(&[Some(body.clone())], &desired(5))
                .unwrap(),
            vec![]
        );
        assert_eq!(
            router().weight(&[Some(body.clone())], &desired(5)).unwrap(),
            5
        );
    }

    #[test]
    fn name_and_root_service_come_from_the_spec() {
        let r = Smi::new(&SmiTrafficRouting {
            root_service: Some("rollouts-demo".into()),
            traffic_split_name: Some("demo-split".into()),
        });
        assert_eq!(r.objects("demo", "rollouts-demo")[0].name, "demo-split");
        let writes = r.reconcile(&[None], &desired(5)).unwrap();
        assert_eq!(writes[0].target().name, "demo-split");
        let Write::Create(_, body) = &writes[0] else {
            panic!("expected a Create");
        };
        assert_eq!(body["spec"]["service"], "rollouts-demo");
    }

    #[test]
    fn replaces_the_weights_of_an_argo_created_split() {
        let writes = router()
            .reconcile(&[Some(argo_split("5", "95"))], &desired(40))
            .unwrap();
        let [Write::Replace(_, body)] = writes.as_slice() else {
            panic!("expected one Replace, got {writes:?}");
        };
        // Only the weights change; the resourceVersion read is kept for the write.
        assert_eq!(*body, argo_split("40", "60"));
        assert_eq!(
            router()
                .reconcile(&[Some(body.clone())], &desired(40))
                .unwrap(),
            vec![]
        );
    }

    #[test]
    fn numeric_weights_that_already_match_are_left_alone() {
        let mut split = argo_split("", "");
        split["spec"]["backends"][0]["weight"] = json!(20);
        split["spec"]["backends"][1]["weight"] = json!(80);
        assert_eq!(
            router()
                .reconcile(&[Some(split.clone())], &desired(20))
                .unwrap(),
            vec![]
        );
        assert_eq!(router().weight(&[Some(split)], &desired(20)).unwrap(), 20);
    }

    #[test]
    fn weights_follow_the_max_weight() {
        let mut d = desired(15);
        d.max_weight = 1000;
        let writes = router().reconcile(&[None], &d).unwrap();
        let Write::Create(_, body) = &writes[0] else {
            panic!("expected a Create");
        };
        assert_eq!(body["spec"]["backends"][1]["weight"], "985");
        assert_eq!(router().weight(&[Some(body.clone())], &d).unwrap(), 15);
    }

    #[test]
    fn other_spec_fields_and_metadata_stay() {
        let mut split = argo_split("0", "100");
        split["spec"]["matches"] = json!([{"kind": "HTTPRouteGroup", "name": "ab-test"}]);
        split["metadata"]["labels"] = json!({"team": "checkout"});
        let writes = router().reconcile(&[Some(split)], &desired(10)).unwrap();
        let Write::Replace(_, body) = &writes[0] else {
            panic!("expected a Replace");
        };
        assert_eq!(body["spec"]["matches"][0]["name"], "ab-test");
        assert_eq!(body["metadata"]["labels"]["team"], "checkout");
        assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "Rollout");
    }

    #[test]
    fn a_split_someone_else_made_is_refused() {
        let mut split = argo_split("0", "100");
        split["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        let err = router()
            .reconcile(&[Some(split)], &desired(10))
            .unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("TrafficSplit demo/rollouts-demo: exists but does not belong"));
        assert!(message.contains("smi.trafficSplitName"), "{message}");
    }

    #[test]
    fn a_split_of_another_rollout_is_refused() {
        let mut split = argo_split("0", "100");
        split["metadata"]["ownerReferences"][0]["name"] = json!("other");
        assert!(router().reconcile(&[Some(split)], &desired(10)).is_err());
    }

    #[test]
    fn header_and_mirror_routes_are_ignored_as_argo_ignores_them() {
        let mut d = desired(10);
        d.mirror_routes = vec![crate::MirrorRoute {
            name: "mirror".into(),
            matches: Vec::new(),
            percentage: 50,
        }];
        assert_eq!(
            router().reconcile(&[None], &d).unwrap(),
            router().reconcile(&[None], &desired(10)).unwrap()
        );
    }

    #[test]
    fn weight_reads_quantities_and_a_missing_split_is_not_found() {
        assert_eq!(
            router()
                .weight(&[Some(argo_split("500m", "99500m"))], &desired(1))
                .unwrap(),
            1
        );
        assert_eq!(
            router()
                .weight(&[Some(argo_split("0", "100"))], &desired(0))
                .unwrap(),
            0
        );
        assert_eq!(
            router().weight(&[None], &desired(0)).unwrap_err(),
            RouterError::NotFound("TrafficSplit demo/rollouts-demo".into())
        );
        let mut broken = argo_split("0", "100");
        broken["spec"]["backends"] = json!("all of them");
        assert!(matches!(
            router().weight(&[Some(broken)], &desired(0)),
            Err(RouterError::Invalid { .. })
        ));
    }
}
