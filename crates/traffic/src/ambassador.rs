//! Ambassador (Emissary-ingress): a canary Mapping beside each Mapping the rollout names.
//!
//! For every Mapping in `ambassador.mappings` the router keeps a canary Mapping named
//! `<mapping>-canary` (Argo Rollouts' name, so the canary Mappings Argo made are taken over): the
//! base Mapping's spec with `service` sent to the canary Service (the scheme, the namespace part
//! and a numeric port of the base's `service` kept) and `weight` set to the canary's share as the
//! percentage Ambassador reads. Ambassador splits a prefix between Mappings by weight, so the base
//! Mapping keeps what the canary does not get; it is only read, and must carry no weight of its
//! own (Argo refuses such a Mapping too). At weight 0 the canary Mapping is deleted, as Argo
//! deletes it, whether the rollout has finished or been aborted: a Mapping that sends nothing is
//! not worth keeping, and the base Mapping alone is what the user wrote.
//!
//! The canary Mapping is the rollout's: it carries the managed-by annotation (Argo's copies carry
//! nothing, so one whose `service` already names the canary Service is taken over too); one that
//! belongs to something else is refused, never rewritten or deleted.
//!
//! Mappings are read from `getambassador.io/v2`, Argo's default; [`Ambassador::v3alpha1`] reads
//! them from `getambassador.io/v3alpha1` (Emissary 2+, Argo's `--ambassador-api-version`). Argo's
//! Ambassador router has no header or mirror routes, and neither has this one: they are ignored.

use serde_json::Value;
use sluice_api::{AmbassadorTrafficRouting, vocab::MANAGED_BY_ROLLOUTS_ANNOTATION};

use crate::common::{
    self, annotated, distinct_names, managed_by, names_nothing, new_object, note_share,
    set_annotation, share, truncate_at_char,
};
use crate::{Current, Desired, ObjectRef, Router, RouterError, Write};

/// The API group Ambassador and Emissary serve Mappings under.
pub const GROUP: &str = "getambassador.io";
/// The version Argo Rollouts reads Mappings from by default (Ambassador 1.x, Emissary's v2 CRD).
pub const VERSION: &str = "v2";
/// The version Emissary 2+ and Ambassador Edge Stack 2+ store Mappings in.
pub const V3ALPHA1: &str = "v3alpha1";
/// The suffix of a canary Mapping's name (Argo Rollouts').
pub const CANARY_SUFFIX: &str = "-canary";
/// Longest base name kept in a canary Mapping's name (Argo cuts there: 246 + 7 = 253).
const MAX_BASE_NAME: usize = 246;
/// Ambassador's weights are percentages.
const AMBASSADOR_TOTAL: i32 = 100;

/// The Ambassador router: canary Mappings beside the rollout's Mappings.
#[derive(Clone, Debug)]
pub struct Ambassador {
    config: AmbassadorTrafficRouting,
    version: &'static str,
}

impl Ambassador {
    /// A router for `trafficRouting.ambassador`, reading Mappings from `getambassador.io/v2`.
    pub fn new(config: &AmbassadorTrafficRouting) -> Self {
        Self {
            config: config.clone(),
            version: VERSION,
        }
    }

    /// A router reading Mappings from `getambassador.io/v3alpha1` (what Argo's
    /// `--ambassador-api-version getambassador.io/v3alpha1` selects).
    pub fn v3alpha1(config: &AmbassadorTrafficRouting) -> Self {
        Self {
            config: config.clone(),
            version: V3ALPHA1,
        }
    }

    /// The Mapping names, without empty or repeated ones.
    fn mappings(&self) -> Vec<&str> {
        distinct_names(&self.config.mappings, None)
    }

    fn mapping_ref(&self, namespace: &str, name: String) -> ObjectRef {
        ObjectRef {
            group: GROUP,
            version: self.version,
            kind: "Mapping",
            plural: "mappings",
            namespace: namespace.to_string(),
            name,
        }
    }

    /// The read objects by base Mapping (the base may be missing: it is needed only to write).
    fn read<'c>(
        &self,
        current: Current<'c>,
        desired: &Desired,
    ) -> Result<Vec<Pair<'c>>, RouterError> {
        let names = self.mappings();
        if names.is_empty() {
            return Err(names_nothing(
                desired,
                "trafficRouting.ambassador names no Mapping: list them in mappings",
            ));
        }
        Ok(names
            .into_iter()
            .enumerate()
            .map(|(i, name)| Pair {
                base_ref: self.mapping_ref(&desired.namespace, name.to_string()),
                base: current.get(2 * i).and_then(Option::as_ref),
                canary_ref: self.mapping_ref(&desired.namespace, canary_mapping_name(name)),
                canary: current.get(2 * i + 1).and_then(Option::as_ref),
            })
            .collect())
    }

    /// The canary Mapping's spec: the base's, sent to the canary Service with the canary's weight.
    fn spec(&self, pair: &Pair<'_>, desired: &Desired) -> Result<Value, RouterError> {
        let base = pair
            .base
            .ok_or_else(|| RouterError::NotFound(pair.base_ref.to_string()))?;
        let invalid = |message: String| RouterError::Invalid {
            object: pair.base_ref.to_string(),
            message,
        };
        let Some(Value::Object(spec)) = base.get("spec") else {
            return Err(invalid("has no spec".to_string()));
        };
        match spec.get("weight") {
            None | Some(Value::Null) => {}
            Some(w) if w.as_f64() == Some(0.0) => {}
            Some(w) => {
                return Err(invalid(format!(
                    "carries spec.weight {w}: the Mapping the rollout names must have no weight \
                     (its canary Mapping's weight takes the canary's share from it); remove it"
                )));
            }
        }
        let service = spec.get("service").and_then(Value::as_str).unwrap_or("");
        let target = ServiceTarget::parse(service);
        if desired.stable_service.is_empty()
            || target.name != desired.stable_service
            || !target.namespace_is(&desired.namespace)
        {
            return Err(invalid(format!(
                "spec.service is `{service}`, not the stable Service `{}`, so there is nothing to \
                 split with the canary",
                desired.stable_service
            )));
        }
        let mut spec = spec.clone();
        spec.insert(
            "service".to_string(),
            Value::String(target.with_name(&desired.canary_service)),
        );
        spec.insert(
            "weight".to_string(),
            Value::from(percentage(desired.canary_weight, desired.max_weight)),
        );
        Ok(Value::Object(spec))
    }
}

/// The objects read for one base Mapping.
struct Pair<'c> {
    base_ref: ObjectRef,
    base: Option<&'c Value>,
    canary_ref: ObjectRef,
    canary: Option<&'c Value>,
}

/// A Mapping's `service`: `[scheme://]name[.namespace…][:port]`.
#[derive(Debug, PartialEq, Eq)]
struct ServiceTarget<'a> {
    /// `http://` and the like, or empty.
    scheme: &'a str,
    /// The Service's name.
    name: &'a str,
    /// What follows the name in the host (`.namespace`, `.namespace.svc.cluster.local`), or empty.
    rest: &'a str,
    /// `:port` when the port is a number, else empty (Argo keeps only a numeric port).
    port: &'a str,
}

impl<'a> ServiceTarget<'a> {
    fn parse(service: &'a str) -> Self {
        let (scheme, after) = match service.find("://") {
            Some(i) => service.split_at(i + 3),
            None => ("", service),
        };
        let (host, port) = match after.rfind(':') {
            Some(i)
                if after.len() > i + 1 && after[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                after.split_at(i)
            }
            Some(i) => (&after[..i], ""),
            None => (after, ""),
        };
        let (name, rest) = match host.find('.') {
            Some(i) => host.split_at(i),
            None => (host, ""),
        };
        Self {
            scheme,
            name,
            rest,
            port,
        }
    }

    /// Whether the host names no namespace, or `namespace`.
    fn namespace_is(&self, namespace: &str) -> bool {
        self.rest.is_empty()
            || self
                .rest
                .strip_prefix('.')
                .and_then(|r| r.split('.').next())
                == Some(namespace)
    }

    /// The same target with another Service's name.
    fn with_name(&self, name: &str) -> String {
        format!("{}{name}{}{}", self.scheme, self.rest, self.port)
    }
}

/// `<mapping>-canary`, the base name cut as Argo Rollouts cuts it.
pub fn canary_mapping_name(mapping: &str) -> String {
    let mut base = mapping.to_string();
    truncate_at_char(&mut base, MAX_BASE_NAME);
    base + CANARY_SUFFIX
}

/// The canary's weight as Ambassador's percentage, rounded up so that any traffic at all counts.
fn percentage(weight: i32, max: i32) -> i32 {
    if max <= 0 || weight <= 0 {
        return 0;
    }
    if max == AMBASSADOR_TOTAL {
        return weight.min(AMBASSADOR_TOTAL);
    }
    // Both positive: the quotient rounded up.
    let scaled =
        (i64::from(weight) * i64::from(AMBASSADOR_TOTAL) + i64::from(max) - 1) / i64::from(max);
    // At most 100 after `min`, so the conversion is exact.
    scaled.min(i64::from(AMBASSADOR_TOTAL)) as i32
}

/// `part` percent in units of `max`, rounded up so that any traffic at all counts.
fn percent(part: f64, max: i32) -> i32 {
    share(part, f64::from(AMBASSADOR_TOTAL), max)
}

/// Whether the rollout owns `mapping`: Sluice's annotation, a controller owner reference to the
/// Rollout, or Argo's unmarked copy (its `service` already names the canary Service).
fn owned_by(mapping: &Value, desired: &Desired) -> bool {
    let argo_copy = mapping
        .pointer("/spec/service")
        .and_then(Value::as_str)
        .is_some_and(|s| {
            let target = ServiceTarget::parse(s);
            !desired.canary_service.is_empty()
                && target.name == desired.canary_service
                && target.namespace_is(&desired.namespace)
        });
    common::owned_by(mapping, &desired.rollout) || argo_copy
}

fn not_ours(canary_ref: &ObjectRef, rollout: &str) -> RouterError {
    RouterError::Invalid {
        object: canary_ref.to_string(),
        message: format!(
            "exists but does not belong to rollout `{rollout}` (no `{MANAGED_BY_ROLLOUTS_ANNOTATION}` \
             annotation naming it, and its service is not the canary Service); rename or delete it \
             so the rollout can make its canary Mapping"
        ),
    }
}

impl Router for Ambassador {
    fn name(&self) -> &'static str {
        "ambassador"
    }

    /// Each Mapping followed by its canary Mapping.
    fn objects(&self, namespace: &str, _rollout: &str) -> Vec<ObjectRef> {
        self.mappings()
            .into_iter()
            .flat_map(|name| {
                [
                    self.mapping_ref(namespace, name.to_string()),
                    self.mapping_ref(namespace, canary_mapping_name(name)),
                ]
            })
            .collect()
    }

    /// The canary Mappings' `weight`; 0 where a canary Mapping does not exist. Where they
    /// disagree, the largest share that is not the desired one.
    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError> {
        let wanted = percentage(desired.canary_weight, desired.max_weight);
        let mut differing: Option<i32> = None;
        for pair in self.read(current, desired)? {
            let got = match pair.canary {
                None => 0,
                Some(canary) => {
                    if pair.base.is_none() {
                        // A canary Mapping alone takes all of its prefix.
                        return Err(RouterError::NotFound(pair.base_ref.to_string()));
                    }
                    match canary.pointer("/spec/weight") {
                        // Ambassador splits what no weight claims evenly between the unweighted
                        // Mappings of a prefix: the canary's half.
                        None | Some(Value::Null) => percent(50.0, desired.max_weight),
                        Some(w) => {
                            let w = w.as_f64().filter(|w| *w >= 0.0).ok_or_else(|| {
                                RouterError::Invalid {
                                    object: pair.canary_ref.to_string(),
                                    message: format!(
                                        "spec.weight is not a non-negative number: {w}"
                                    ),
                                }
                            })?;
                            if w == f64::from(wanted) {
                                desired.canary_weight
                            } else {
                                percent(w, desired.max_weight)
                            }
                        }
                    }
                }
            };
            note_share(&mut differing, got, desired);
        }
        Ok(differing.unwrap_or(desired.canary_weight))
    }

    fn reconcile(
        &self,
        current: Current<'_>,
        desired: &Desired,
    ) -> Result<Vec<Write>, RouterError> {
        let mut writes = Vec::new();
        for pair in self.read(current, desired)? {
            if let Some(canary) = pair.canary
                && !owned_by(canary, desired)
            {
                return Err(not_ours(&pair.canary_ref, &desired.rollout));
            }
            if percentage(desired.canary_weight, desired.max_weight) == 0 {
                if pair.canary.is_some() {
                    writes.push(Write::Delete(pair.canary_ref));
                }
                continue;
            }
            let spec = self.spec(&pair, desired)?;
            let Some(canary) = pair.canary else {
                let created = new_object(&pair.canary_ref, managed_by(&desired.rollout), spec);
                writes.push(Write::Create(pair.canary_ref, created));
                continue;
            };
            let mut updated = canary.clone();
            if let Some(root) = updated.as_object_mut() {
                if !annotated(canary, &desired.rollout) {
                    set_annotation(
                        root,
                        MANAGED_BY_ROLLOUTS_ANNOTATION,
                        desired.rollout.clone(),
                    );
                }
                root.insert("spec".to_string(), spec);
            }
            if updated != *canary {
                writes.push(Write::Replace(pair.canary_ref, updated));
            }
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_api::{HeaderMatch, StringMatch};

    use super::*;
    use crate::common::tests::{self as fixtures, created, replaced};
    use crate::{HeaderRoute, MirrorRoute};

    fn desired(weight: i32) -> Desired {
        fixtures::desired("echo", "default", "echo-canary", "echo-stable", weight)
    }

    fn router() -> Ambassador {
        Ambassador::new(&AmbassadorTrafficRouting {
            mappings: vec!["echo".into()],
        })
    }

    /// The Mapping of Argo's Ambassador quick start, as the API server returns it, with labels
    /// and an annotation of the tool that applied it.
    fn base() -> Value {
        json!({
            "apiVersion": "getambassador.io/v2",
            "kind": "Mapping",
            "metadata": {
                "name": "echo",
                "namespace": "default",
                "resourceVersion": "300",
                "uid": "b-1",
                "labels": {"app.kubernetes.io/instance": "echo"},
                "annotations": {"argocd.argoproj.io/tracking-id": "echo:getambassador.io/Mapping:default/echo"}
            },
            "spec": {
                "prefix": "/echo",
                "rewrite": "/",
                "service": "echo-stable:80",
                "timeout_ms": 3000
            }
        })
    }

    /// What the API server returns for a created object.
    fn stored(body: Value) -> Value {
        fixtures::stored(body, "400", "c-1")
    }

    #[test]
    fn objects_are_each_mapping_and_its_canary() {
        let r = Ambassador::new(&AmbassadorTrafficRouting {
            mappings: vec!["echo".into(), "echo-admin".into(), "echo".into()],
        });
        let objects = r.objects("default", "echo");
        let names: Vec<String> = objects.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "Mapping default/echo",
                "Mapping default/echo-canary",
                "Mapping default/echo-admin",
                "Mapping default/echo-admin-canary"
            ]
        );
        assert_eq!(objects[0].api_version(), "getambassador.io/v2");
        assert_eq!(objects[0].plural, "mappings");
    }

    #[test]
    fn creates_the_canary_mapping_cloned_from_the_base() {
        let writes = router()
            .reconcile(&[Some(base()), None], &desired(30))
            .unwrap();
        assert_eq!(
            *created(&writes),
            json!({
                "apiVersion": "getambassador.io/v2",
                "kind": "Mapping",
                "metadata": {
                    "name": "echo-canary",
                    "namespace": "default",
                    "annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": "echo"}
                },
                "spec": {
                    "prefix": "/echo",
                    "rewrite": "/",
                    "service": "echo-canary:80",
                    "timeout_ms": 3000,
                    "weight": 30
                }
            })
        );
        assert_eq!(
            writes[0].target().to_string(),
            "Mapping default/echo-canary"
        );
    }

    #[test]
    fn the_base_mapping_is_never_written() {
        for weight in [0, 30, 100] {
            let canary = stored(
                created(
                    &router()
                        .reconcile(&[Some(base()), None], &desired(30))
                        .unwrap(),
                )
                .clone(),
            );
            for current in [[Some(base()), None], [Some(base()), Some(canary)]] {
                let writes = router().reconcile(&current, &desired(weight)).unwrap();
                assert!(writes.iter().all(|w| w.target().name == "echo-canary"));
            }
        }
    }

    #[test]
    fn a_second_reconcile_writes_nothing() {
        let r = router();
        let first = r.reconcile(&[Some(base()), None], &desired(30)).unwrap();
        let current = [Some(base()), Some(stored(created(&first).clone()))];
        assert_eq!(r.reconcile(&current, &desired(30)).unwrap(), vec![]);
        assert_eq!(r.weight(&current, &desired(30)).unwrap(), 30);
    }

    #[test]
    fn a_new_weight_replaces_only_the_weight() {
        let r = router();
        let first = r.reconcile(&[Some(base()), None], &desired(30)).unwrap();
        let canary = stored(created(&first).clone());
        let current = [Some(base()), Some(canary.clone())];
        let writes = r.reconcile(&current, &desired(60)).unwrap();
        let mut expected = canary;
        expected["spec"]["weight"] = json!(60);
        assert_eq!(*replaced(&writes), expected);
        assert_eq!(r.weight(&current, &desired(60)).unwrap(), 30);
    }

    #[test]
    fn weight_zero_deletes_the_canary_mapping_and_then_writes_nothing() {
        let r = router();
        let first = r.reconcile(&[Some(base()), None], &desired(30)).unwrap();
        let canary = stored(created(&first).clone());
        let mut finished = desired(0);
        finished.canary_hash = finished.stable_hash.clone();
        for d in [desired(0), finished] {
            let writes = r
                .reconcile(&[Some(base()), Some(canary.clone())], &d)
                .unwrap();
            match writes.as_slice() {
                [Write::Delete(target)] => {
                    assert_eq!(target.to_string(), "Mapping default/echo-canary")
                }
                other => panic!("expected one Delete, got {other:?}"),
            }
            assert_eq!(r.reconcile(&[Some(base()), None], &d).unwrap(), vec![]);
            assert_eq!(r.weight(&[Some(base()), None], &d).unwrap(), 0);
        }
    }

    #[test]
    fn at_weight_zero_a_missing_base_is_no_error() {
        // As in Argo: deleting the canary Mapping does not need the base.
        assert_eq!(
            router().reconcile(&[None, None], &desired(0)).unwrap(),
            vec![]
        );
        let canary = stored(
            created(
                &router()
                    .reconcile(&[Some(base()), None], &desired(30))
                    .unwrap(),
            )
            .clone(),
        );
        let writes = router()
            .reconcile(&[None, Some(canary)], &desired(0))
            .unwrap();
        assert!(matches!(writes.as_slice(), [Write::Delete(_)]));
    }

    #[test]
    fn a_missing_base_mapping_is_not_found() {
        let err = router().reconcile(&[None, None], &desired(10)).unwrap_err();
        assert_eq!(err, RouterError::NotFound("Mapping default/echo".into()));
        let err = router().reconcile(&[], &desired(10)).unwrap_err();
        assert_eq!(err, RouterError::NotFound("Mapping default/echo".into()));
    }

    #[test]
    fn a_base_mapping_not_sending_to_the_stable_service_is_invalid() {
        let mut b = base();
        b["spec"]["service"] = json!("someone-else:80");
        let err = router()
            .reconcile(&[Some(b.clone()), None], &desired(10))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Mapping default/echo: spec.service is `someone-else:80`, not the stable Service \
             `echo-stable`, so there is nothing to split with the canary"
        );
        b["spec"]["service"] = json!("echo-stable.other-namespace:80");
        assert!(matches!(
            router().reconcile(&[Some(b.clone()), None], &desired(10)),
            Err(RouterError::Invalid { .. })
        ));
        b["spec"].as_object_mut().unwrap().remove("service");
        assert!(matches!(
            router().reconcile(&[Some(b), None], &desired(10)),
            Err(RouterError::Invalid { .. })
        ));
    }

    #[test]
    fn a_weighted_base_mapping_is_invalid() {
        let mut b = base();
        b["spec"]["weight"] = json!(50);
        let err = router()
            .reconcile(&[Some(b.clone()), None], &desired(10))
            .unwrap_err();
        assert!(err.to_string().contains("carries spec.weight 50"), "{err}");
        b["spec"]["weight"] = json!(0);
        assert!(router().reconcile(&[Some(b), None], &desired(10)).is_ok());
    }

    #[test]
    fn base_mappings_that_are_not_objects_are_errors_not_panics() {
        for b in [
            json!("echo"),
            json!({"spec": []}),
            json!({"spec": {"service": 80}}),
        ] {
            assert!(matches!(
                router().reconcile(&[Some(b), None], &desired(10)),
                Err(RouterError::Invalid { .. })
            ));
        }
        let mut canary = base();
        canary["metadata"]["annotations"] = json!("not a map");
        canary["spec"]["service"] = json!("echo-canary:80");
        canary["spec"]["weight"] = json!("ten");
        let current = [Some(base()), Some(canary)];
        assert!(matches!(
            router().weight(&current, &desired(10)),
            Err(RouterError::Invalid { .. })
        ));
        let writes = router().reconcile(&current, &desired(10)).unwrap();
        assert_eq!(
            replaced(&writes)["metadata"]["annotations"],
            json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "echo"})
        );
    }

    #[test]
    fn service_forms_keep_their_scheme_namespace_and_port() {
        for (stable, canary) in [
            ("echo-stable", "echo-canary"),
            ("echo-stable:80", "echo-canary:80"),
            ("echo-stable:http", "echo-canary"),
            ("echo-stable.default", "echo-canary.default"),
            (
                "https://echo-stable.default.svc.cluster.local:8443",
                "https://echo-canary.default.svc.cluster.local:8443",
            ),
        ] {
            let mut b = base();
            b["spec"]["service"] = json!(stable);
            let writes = router().reconcile(&[Some(b), None], &desired(5)).unwrap();
            assert_eq!(created(&writes)["spec"]["service"], canary, "{stable}");
        }
    }

    #[test]
    fn argo_made_canary_mappings_are_taken_over() {
        // Argo's copy: the base without its metadata, no annotation, no owner reference.
        let argo = json!({
            "apiVersion": "getambassador.io/v2",
            "kind": "Mapping",
            "metadata": {"name": "echo-canary", "namespace": "default", "resourceVersion": "9"},
            "spec": {
                "prefix": "/echo",
                "rewrite": "/",
                "service": "echo-canary:80",
                "timeout_ms": 3000,
                "weight": 30
            }
        });
        let writes = router()
            .reconcile(&[Some(base()), Some(argo.clone())], &desired(30))
            .unwrap();
        let mut expected = argo;
        expected["metadata"]["annotations"] =
            json!({"argo-rollouts.argoproj.io/managed-by-rollouts": "echo"});
        assert_eq!(*replaced(&writes), expected);
    }

    #[test]
    fn a_canary_mapping_of_someone_else_is_refused_and_never_deleted() {
        let foreign = json!({
            "apiVersion": "getambassador.io/v2",
            "kind": "Mapping",
            "metadata": {"name": "echo-canary", "namespace": "default"},
            "spec": {"prefix": "/other", "service": "other:80"}
        });
        for weight in [0, 20] {
            let err = router()
                .reconcile(&[Some(base()), Some(foreign.clone())], &desired(weight))
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("does not belong to rollout `echo`"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_canary_mapping_follows_the_base() {
        let r = router();
        let first = r.reconcile(&[Some(base()), None], &desired(30)).unwrap();
        let canary = stored(created(&first).clone());
        let mut b = base();
        b["spec"]["prefix"] = json!("/echo/v2");
        let writes = r.reconcile(&[Some(b), Some(canary)], &desired(30)).unwrap();
        assert_eq!(replaced(&writes)["spec"]["prefix"], "/echo/v2");
    }

    #[test]
    fn weights_are_percentages_whatever_the_max_weight() {
        let mut d = desired(250);
        d.max_weight = 1000;
        let writes = router().reconcile(&[Some(base()), None], &d).unwrap();
        assert_eq!(created(&writes)["spec"]["weight"], 25);
        let current = [Some(base()), Some(stored(created(&writes).clone()))];
        assert_eq!(router().weight(&current, &d).unwrap(), 250);

        // 0.5 % is written as 1 %: the plan's weight is what Ambassador can carry.
        d.canary_weight = 5;
        let writes = router().reconcile(&[Some(base()), None], &d).unwrap();
        assert_eq!(created(&writes)["spec"]["weight"], 1);
        let current = [Some(base()), Some(stored(created(&writes).clone()))];
        assert_eq!(router().weight(&current, &d).unwrap(), 5);
        assert_eq!(router().reconcile(&current, &d).unwrap(), vec![]);
    }

    #[test]
    fn an_unweighted_canary_mapping_has_half() {
        let mut canary = base();
        canary["metadata"]["name"] = json!("echo-canary");
        canary["spec"]["service"] = json!("echo-canary:80");
        assert_eq!(
            router()
                .weight(&[Some(base()), Some(canary.clone())], &desired(10))
                .unwrap(),
            50
        );
        let err = router()
            .weight(&[None, Some(canary)], &desired(10))
            .unwrap_err();
        assert_eq!(err, RouterError::NotFound("Mapping default/echo".into()));
    }

    #[test]
    fn several_mappings_report_the_one_that_differs() {
        let r = Ambassador::new(&AmbassadorTrafficRouting {
            mappings: vec!["echo".into(), "echo-admin".into()],
        });
        let mut admin = base();
        admin["metadata"]["name"] = json!("echo-admin");
        let first = r
            .reconcile(
                &[Some(base()), None, Some(admin.clone()), None],
                &desired(40),
            )
            .unwrap();
        assert_eq!(first.len(), 2);
        let canaries: Vec<Value> = first
            .iter()
            .map(|w| match w {
                Write::Create(_, body) => stored(body.clone()),
                other => panic!("expected Create, got {other:?}"),
            })
            .collect();
        assert_eq!(canaries[1]["metadata"]["name"], "echo-admin-canary");
        let current = [Some(base()), Some(canaries[0].clone()), Some(admin), None];
        assert_eq!(r.weight(&current, &desired(40)).unwrap(), 0);
        assert_eq!(r.reconcile(&current, &desired(40)).unwrap().len(), 1);
    }

    #[test]
    fn no_mapping_configured_is_an_error() {
        let r = Ambassador::new(&AmbassadorTrafficRouting::default());
        assert!(r.objects("default", "echo").is_empty());
        let err = r.reconcile(&[], &desired(10)).unwrap_err();
        assert!(err.to_string().contains("names no Mapping"), "{err}");
        assert!(r.weight(&[], &desired(10)).is_err());
    }

    #[test]
    fn header_and_mirror_routes_are_ignored_as_argo_ignores_them() {
        let mut d = desired(10);
        d.header_routes = vec![HeaderRoute {
            name: "header".into(),
            matches: vec![HeaderMatch {
                header_name: "X-Canary".into(),
                header_value: StringMatch::Exact("yes".into()),
            }],
        }];
        d.mirror_routes = vec![MirrorRoute {
            name: "mirror".into(),
            matches: vec![Default::default()],
            percentage: 50,
        }];
        assert_eq!(
            router().reconcile(&[Some(base()), None], &d).unwrap(),
            router()
                .reconcile(&[Some(base()), None], &desired(10))
                .unwrap()
        );
    }

    #[test]
    fn v3alpha1_is_read_when_asked() {
        let r = Ambassador::v3alpha1(&AmbassadorTrafficRouting {
            mappings: vec!["echo".into()],
        });
        let mut b = base();
        b["apiVersion"] = json!("getambassador.io/v3alpha1");
        b["spec"]["hostname"] = json!("*");
        let writes = r.reconcile(&[Some(b), None], &desired(10)).unwrap();
        let body = created(&writes);
        assert_eq!(body["apiVersion"], "getambassador.io/v3alpha1");
        assert_eq!(body["spec"]["hostname"], "*");
        assert_eq!(writes[0].target().version, "v3alpha1");
    }

    #[test]
    fn long_names_are_cut_as_argo_cuts_them() {
        let name = canary_mapping_name(&"m".repeat(300));
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("m-canary"));
        assert_eq!(canary_mapping_name("echo"), "echo-canary");
    }
}
