//! AWS Load Balancer Controller: a weighted forward action in an Ingress annotation.
//!
//! For every Ingress (`alb.ingress` or `alb.ingresses`) the router writes one annotation,
//! `<prefix>/actions.<rootService>` (prefix `alb.ingress.kubernetes.io` unless
//! `alb.annotationPrefix` says otherwise; root Service `alb.rootService`, else the stable
//! Service), holding the forward action the controller turns into target group weights: the
//! canary then the stable Service on `alb.servicePort` with their weights, and the target group
//! stickiness when `alb.stickinessConfig` enables it. The JSON is the one Argo Rollouts writes,
//! so an Ingress Argo annotated reads as already done. Nothing else of the Ingress is touched,
//! and nothing is asked of AWS: the weight read back is the annotation's.
//!
//! The Ingress must send the root Service's path to the action, that is name the root Service
//! with the port `name: use-annotation`; otherwise the annotation would change nothing and the
//! router says so. Header routes (Argo writes them as extra actions, conditions and Ingress
//! paths) are not supported yet and are an error rather than silently ignored; mirror routes are
//! ignored, as Argo's ALB router ignores them.

use serde::Serialize;
use serde_json::Value;
use sluice_api::AlbTrafficRouting;

use crate::common::{
    annotation, ingress_ref, invalid, list_or_one, names_nothing, non_empty_or, note_share,
    number_or_text, read_all, set_annotation, share,
};
use crate::{Current, Desired, ObjectRef, Router, RouterError, Write};

/// The AWS Load Balancer Controller's annotation prefix, used when `annotationPrefix` is not set.
pub const DEFAULT_ANNOTATION_PREFIX: &str = "alb.ingress.kubernetes.io";
/// The port name that tells the controller to read a Service's action annotation.
pub const USE_ANNOTATION: &str = "use-annotation";
/// Longest stickiness AWS accepts (7 days).
const MAX_STICKINESS_SECONDS: i64 = 604_800;

/// The ALB router: forward actions on the Ingresses.
#[derive(Clone, Debug)]
pub struct Alb {
    config: AlbTrafficRouting,
}

/// The forward action, with the field names and order of the controller's (and Argo's) JSON.
#[derive(Serialize)]
struct Action<'a> {
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(rename = "ForwardConfig")]
    forward: Forward<'a>,
}

#[derive(Serialize)]
struct Forward<'a> {
    #[serde(rename = "TargetGroups")]
    target_groups: Vec<TargetGroup<'a>>,
    #[serde(
        rename = "TargetGroupStickinessConfig",
        skip_serializing_if = "Option::is_none"
    )]
    stickiness: Option<Stickiness>,
}

#[derive(Serialize)]
struct TargetGroup<'a> {
    #[serde(rename = "ServiceName")]
    service: &'a str,
    #[serde(rename = "ServicePort")]
    port: String,
    #[serde(rename = "Weight")]
    weight: i32,
}

#[derive(Serialize)]
struct Stickiness {
    #[serde(rename = "Enabled")]
    enabled: bool,
    #[serde(rename = "DurationSeconds")]
    duration_seconds: i64,
}

impl Alb {
    /// A router for `trafficRouting.alb`.
    pub fn new(config: &AlbTrafficRouting) -> Self {
        Self {
            config: config.clone(),
        }
    }

    /// `ingresses`, else `ingress`.
    fn ingresses(&self) -> Vec<String> {
        list_or_one(&self.config.ingresses, self.config.ingress.as_ref())
    }

    fn root_service<'a>(&'a self, desired: &'a Desired) -> &'a str {
        non_empty_or(self.config.root_service.as_deref(), &desired.stable_service)
    }

    /// The annotation holding the action.
    fn key(&self, desired: &Desired) -> String {
        let prefix = non_empty_or(
            self.config.annotation_prefix.as_deref(),
            DEFAULT_ANNOTATION_PREFIX,
        );
        format!("{prefix}/actions.{}", self.root_service(desired))
    }

    /// The action's JSON text.
    fn action(&self, desired: &Desired, object: &ObjectRef) -> Result<String, RouterError> {
        let port = self.config.service_port.to_string();
        let stickiness = match &self.config.stickiness_config {
            Some(s) if s.enabled => {
                if !(1..=MAX_STICKINESS_SECONDS).contains(&s.duration_seconds) {
                    return Err(invalid(
                        object,
                        format!(
                            "alb.stickinessConfig.durationSeconds is {}, but AWS accepts 1 to \
                             {MAX_STICKINESS_SECONDS} seconds (7 days)",
                            s.duration_seconds
                        ),
                    ));
                }
                Some(Stickiness {
                    enabled: true,
                    duration_seconds: s.duration_seconds,
                })
            }
            _ => None,
        };
        let action = Action {
            kind: "forward",
            forward: Forward {
                target_groups: vec![
                    TargetGroup {
                        service: &desired.canary_service,
                        port: port.clone(),
                        weight: desired.canary_weight,
                    },
                    TargetGroup {
                        service: &desired.stable_service,
                        port,
                        weight: desired.stable_weight(),
                    },
                ],
                stickiness,
            },
        };
        serde_json::to_string(&action)
            .map_err(|e| invalid(object, format!("cannot write the forward action: {e}")))
    }

    /// The Ingresses read, with their references; each must exist.
    fn read<'c>(
        &self,
        current: Current<'c>,
        desired: &Desired,
    ) -> Result<Vec<(ObjectRef, &'c Value)>, RouterError> {
        let refs = self.objects(&desired.namespace, &desired.rollout);
        if refs.is_empty() {
            return Err(names_nothing(
                desired,
                "trafficRouting.alb names no Ingress: set ingress or ingresses",
            ));
        }
        read_all(refs, current)
    }

    /// Checks that the Ingress sends the root Service's paths to the action.
    fn check_rules(
        &self,
        ingress: &Value,
        object: &ObjectRef,
        desired: &Desired,
    ) -> Result<(), RouterError> {
        let root = self.root_service(desired);
        let backends: Vec<&Value> = ingress
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|rule| rule.pointer("/http/paths").and_then(Value::as_array))
            .flatten()
            .filter_map(|path| path.pointer("/backend/service"))
            .filter(|service| service.get("name").and_then(Value::as_str) == Some(root))
            .collect();
        if backends.is_empty() {
            return Err(invalid(
                object,
                format!(
                    "no rule has a path whose backend is the Service `{root}`; the Load Balancer \
                     Controller reads the action annotation only for a path with backend service \
                     `{root}` and port name `{USE_ANNOTATION}`"
                ),
            ));
        }
        for service in backends {
            let port = service.get("port");
            if port.and_then(|p| p.get("name")).and_then(Value::as_str) != Some(USE_ANNOTATION) {
                let shown = port.map_or_else(|| "none".to_string(), Value::to_string);
                return Err(invalid(
                    object,
                    format!(
                        "a path sends to the Service `{root}` on port {shown}, which bypasses the \
                         action annotation; set its backend port to `name: {USE_ANNOTATION}`"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A target group's weight, whether written as a number or a string.
fn group_weight(group: &Value) -> Option<f64> {
    match group.get("Weight") {
        None | Some(Value::Null) => Some(0.0),
        Some(w) => number_or_text(w),
    }
}

impl Router for Alb {
    fn name(&self) -> &'static str {
        "alb"
    }

    fn objects(&self, namespace: &str, _rollout: &str) -> Vec<ObjectRef> {
        self.ingresses()
            .into_iter()
            .map(|name| ingress_ref(namespace, name))
            .collect()
    }

    /// The canary target groups' share of the action's weights; where Ingresses disagree, the
    /// largest share that is not the desired one. An Ingress without the action says nothing,
    /// which is an error (the controller then knows the weight is unknown).
    fn weight(&self, current: Current<'_>, desired: &Desired) -> Result<i32, RouterError> {
        let key = self.key(desired);
        let mut differing: Option<i32> = None;
        for (object, ingress) in self.read(current, desired)? {
            let text = annotation(ingress, &key)
                .ok_or_else(|| invalid(&object, format!("has no `{key}` annotation yet")))?;
            let unreadable = || {
                invalid(
                    &object,
                    format!("annotation `{key}` is not a forward action: {text}"),
                )
            };
            let action: Value = serde_json::from_str(text).map_err(|_| unreadable())?;
            let groups = action
                .pointer("/ForwardConfig/TargetGroups")
                .and_then(Value::as_array)
                .ok_or_else(unreadable)?;
            let (mut canary, mut total) = (0.0, 0.0);
            for group in groups {
                let weight = group_weight(group).ok_or_else(unreadable)?;
                total += weight;
                if group.get("ServiceName").and_then(Value::as_str)
                    == Some(desired.canary_service.as_str())
                {
                    canary += weight;
                }
            }
            note_share(
                &mut differing,
                share(canary, total, desired.max_weight),
                desired,
            );
        }
        Ok(differing.unwrap_or(desired.canary_weight))
    }

    fn reconcile(
        &self,
        current: Current<'_>,
        desired: &Desired,
    ) -> Result<Vec<Write>, RouterError> {
        let key = self.key(desired);
        let mut writes = Vec::new();
        for (object, ingress) in self.read(current, desired)? {
            if let Some(route) = desired.header_routes.first() {
                return Err(invalid(
                    &object,
                    format!(
                        "header route `{}` is in force, but Sluice's ALB router does not write \
                         header routes yet; remove the setHeaderRoute steps or route with \
                         Gateway API",
                        route.name
                    ),
                ));
            }
            self.check_rules(ingress, &object, desired)?;
            let action = self.action(desired, &object)?;
            let wanted: Value = serde_json::from_str(&action).map_err(|e| {
                invalid(&object, format!("cannot read the forward action back: {e}"))
            })?;
            let present =
                annotation(ingress, &key).and_then(|text| serde_json::from_str::<Value>(text).ok());
            if present.as_ref() == Some(&wanted) {
                continue;
            }
            let mut updated = ingress.clone();
            let Some(root) = updated.as_object_mut() else {
                return Err(invalid(&object, "is not a JSON object".to_string()));
            };
            set_annotation(root, &key, action);
            writes.push(Write::Replace(object, updated));
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_api::{HeaderMatch, StickinessConfig, StringMatch};

    use super::*;
    use crate::HeaderRoute;
    use crate::common::tests::{self as fixtures, replaced};

    fn desired(weight: i32) -> Desired {
        fixtures::desired(
            "rollouts-demo",
            "default",
            "canary-service",
            "stable-service",
            weight,
        )
    }

    fn config() -> AlbTrafficRouting {
        AlbTrafficRouting {
            ingress: Some("ingress".into()),
            service_port: 443,
            ..Default::default()
        }
    }

    /// The Ingress of Argo's ALB docs: the root (stable) Service on port `use-annotation`.
    fn ingress() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "ingress",
                "namespace": "default",
                "resourceVersion": "31",
                "annotations": {
                    "kubernetes.io/ingress.class": "alb",
                    "alb.ingress.kubernetes.io/scheme": "internet-facing"
                }
            },
            "spec": {
                "rules": [{
                    "http": {"paths": [{
                        "path": "/*",
                        "pathType": "ImplementationSpecific",
                        "backend": {"service": {"name": "stable-service", "port": {"name": "use-annotation"}}}
                    }]}
                }]
            }
        })
    }

    #[test]
    fn writes_the_forward_action_argo_writes() {
        let writes = Alb::new(&config())
            .reconcile(&[Some(ingress())], &desired(10))
            .unwrap();
        let body = replaced(&writes);
        let mut expected = ingress();
        expected["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.stable-service"] = json!(
            r#"{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"canary-service","ServicePort":"443","Weight":10},{"ServiceName":"stable-service","ServicePort":"443","Weight":90}]}}"#
        );
        assert_eq!(*body, expected);
        assert_eq!(writes[0].target().to_string(), "Ingress default/ingress");
    }

    #[test]
    fn a_second_reconcile_writes_nothing_and_weight_reads_it_back() {
        let r = Alb::new(&config());
        let written = replaced(&r.reconcile(&[Some(ingress())], &desired(30)).unwrap()).clone();
        assert_eq!(
            r.reconcile(&[Some(written.clone())], &desired(30)).unwrap(),
            vec![]
        );
        assert_eq!(
            r.weight(&[Some(written.clone())], &desired(30)).unwrap(),
            30
        );
        assert_eq!(r.weight(&[Some(written)], &desired(0)).unwrap(), 30);
    }

    #[test]
    fn an_action_argo_wrote_with_other_spacing_is_already_done() {
        let mut i = ingress();
        i["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.stable-service"] = json!(
            r#"{ "Type": "forward", "ForwardConfig": { "TargetGroups": [
                 { "ServiceName": "canary-service", "ServicePort": "443", "Weight": 0 },
                 { "ServiceName": "stable-service", "ServicePort": "443", "Weight": 100 } ] } }"#
        );
        let r = Alb::new(&config());
        assert_eq!(
            r.reconcile(&[Some(i.clone())], &desired(0)).unwrap(),
            vec![]
        );
        assert_eq!(r.weight(&[Some(i)], &desired(0)).unwrap(), 0);
    }

    #[test]
    fn root_service_prefix_stickiness_and_max_weight() {
        let r = Alb::new(&AlbTrafficRouting {
            ingress: Some("ingress".into()),
            service_port: 80,
            root_service: Some("root-service".into()),
            annotation_prefix: Some("custom.alb.ingress.kubernetes.io".into()),
            stickiness_config: Some(StickinessConfig {
                enabled: true,
                duration_seconds: 3600,
            }),
            ..Default::default()
        });
        let mut i = ingress();
        i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] =
            json!("root-service");
        let mut d = desired(200);
        d.max_weight = 1000;
        let writes = r.reconcile(&[Some(i)], &d).unwrap();
        let body = replaced(&writes);
        let text = body["metadata"]["annotations"]["custom.alb.ingress.kubernetes.io/actions.root-service"]
            .as_str()
            .unwrap();
        assert_eq!(
            text,
            r#"{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"canary-service","ServicePort":"80","Weight":200},{"ServiceName":"stable-service","ServicePort":"80","Weight":800}],"TargetGroupStickinessConfig":{"Enabled":true,"DurationSeconds":3600}}}"#
        );
        assert_eq!(r.weight(&[Some(body.clone())], &d).unwrap(), 200);
    }

    #[test]
    fn stickiness_out_of_range_is_an_error() {
        let r = Alb::new(&AlbTrafficRouting {
            stickiness_config: Some(StickinessConfig {
                enabled: true,
                duration_seconds: 0,
            }),
            ..config()
        });
        let err = r.reconcile(&[Some(ingress())], &desired(10)).unwrap_err();
        assert!(
            err.to_string().contains("accepts 1 to 604800 seconds"),
            "{err}"
        );
    }

    #[test]
    fn other_annotations_and_the_spec_stay() {
        let mut i = ingress();
        i["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.other"] = json!("{}");
        let writes = Alb::new(&config())
            .reconcile(&[Some(i.clone())], &desired(10))
            .unwrap();
        let body = replaced(&writes);
        assert_eq!(body["spec"], i["spec"]);
        assert_eq!(
            body["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.other"],
            "{}"
        );
        assert_eq!(
            body["metadata"]["annotations"]["alb.ingress.kubernetes.io/scheme"],
            "internet-facing"
        );
        assert_eq!(body["metadata"]["resourceVersion"], "31");
    }

    #[test]
    fn every_ingress_gets_the_action() {
        let r = Alb::new(&AlbTrafficRouting {
            ingresses: vec!["a".into(), "b".into()],
            ..config()
        });
        let objects = r.objects("default", "rollouts-demo");
        assert_eq!(objects.len(), 2);
        let writes = r
            .reconcile(&[Some(ingress()), Some(ingress())], &desired(10))
            .unwrap();
        let names: Vec<&str> = writes.iter().map(|w| w.target().name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        // One Ingress done, one behind: the behind one is the weight reported.
        let done = match &writes[0] {
            Write::Replace(_, body) => body.clone(),
            other => panic!("{other:?}"),
        };
        let mut behind = ingress();
        behind["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.stable-service"] = json!(
            r#"{"Type":"forward","ForwardConfig":{"TargetGroups":[{"ServiceName":"canary-service","ServicePort":"443","Weight":0},{"ServiceName":"stable-service","ServicePort":"443","Weight":100}]}}"#
        );
        assert_eq!(
            r.weight(&[Some(done), Some(behind)], &desired(10)).unwrap(),
            0
        );
    }

    #[test]
    fn an_ingress_without_the_root_service_is_an_error() {
        let mut i = ingress();
        i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] =
            json!("someone-else");
        let err = Alb::new(&config())
            .reconcile(&[Some(i)], &desired(10))
            .unwrap_err();
        assert!(err.to_string().starts_with(
            "Ingress default/ingress: no rule has a path whose backend is the Service `stable-service`"
        ), "{err}");
    }

    #[test]
    fn a_root_service_path_on_a_real_port_is_an_error() {
        let mut i = ingress();
        i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] =
            json!({"number": 80});
        let err = Alb::new(&config())
            .reconcile(&[Some(i)], &desired(10))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("set its backend port to `name: use-annotation`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_ingress_is_not_found_and_no_action_is_unknown() {
        let r = Alb::new(&config());
        assert_eq!(
            r.reconcile(&[None], &desired(10)).unwrap_err(),
            RouterError::NotFound("Ingress default/ingress".into())
        );
        let err = r.weight(&[Some(ingress())], &desired(10)).unwrap_err();
        assert!(
            err.to_string().contains(
                "has no `alb.ingress.kubernetes.io/actions.stable-service` annotation yet"
            )
        );
        let mut garbled = ingress();
        garbled["metadata"]["annotations"]["alb.ingress.kubernetes.io/actions.stable-service"] =
            json!("{");
        assert!(matches!(
            r.weight(&[Some(garbled)], &desired(10)),
            Err(RouterError::Invalid { .. })
        ));
    }

    #[test]
    fn header_routes_are_refused_with_a_reason() {
        let mut d = desired(10);
        d.header_routes = vec![HeaderRoute {
            name: "header-route".into(),
            matches: vec![HeaderMatch {
                header_name: "X-Canary".into(),
                header_value: StringMatch::Exact("yes".into()),
            }],
        }];
        let err = Alb::new(&config())
            .reconcile(&[Some(ingress())], &d)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("header route `header-route` is in force"),
            "{err}"
        );
    }
}
