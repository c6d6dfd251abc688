//! The Gateway API router against HTTPRoutes shaped as Argo users write them.

use serde_json::{Value, json};
use sluice_api::{GatewayApiConfig, HeaderMatch, RouteMatch, StringMatch};

use super::GatewayApi;
use crate::{Desired, HeaderRoute, MirrorRoute, Router, RouterError, Write};

fn desired(weight: i32) -> Desired {
    Desired {
        canary_hash: "c".into(),
        stable_hash: "s".into(),
        ..crate::common::tests::desired("web", "shop", "web-canary", "web-stable", weight)
    }
}

fn router(config: Value) -> GatewayApi {
    let config: GatewayApiConfig = serde_json::from_value(config).expect("a plugin config");
    GatewayApi::new(&config, &["canary-header".into(), "mirror".into()])
}

/// The HTTPRoute of Argo's Gateway API plugin docs, plus a rule for another app.
fn route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "web-route", "namespace": "shop", "resourceVersion": "7" },
        "spec": {
            "parentRefs": [{ "name": "gw" }],
            "rules": [
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                  "backendRefs": [
                      { "name": "web-stable", "port": 80, "weight": 100 },
                      { "name": "web-canary", "port": 80, "weight": 0 }
                  ] },
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/admin" } }],
                  "backendRefs": [{ "name": "admin", "port": 80 }] }
            ]
        }
    })
}

fn replaced(writes: Vec<Write>) -> Value {
    match writes.as_slice() {
        [Write::Replace(object, body)] => {
            assert_eq!(object.to_string(), "HTTPRoute shop/web-route");
            body.clone()
        }
        other => panic!("expected one replace, got {other:?}"),
    }
}

#[test]
fn a_weight_goes_into_the_rule_that_names_both_services_and_nowhere_else() {
    let r = router(json!({ "httpRoute": "web-route" }));
    let body = replaced(r.reconcile(&[Some(route())], &desired(20)).expect("writes"));
    let rules = &body["spec"]["rules"];
    assert_eq!(rules[0]["backendRefs"][0]["weight"], 80);
    assert_eq!(rules[0]["backendRefs"][1]["weight"], 20);
    assert_eq!(
        rules[1],
        route()["spec"]["rules"][1],
        "the other app's rule is untouched"
    );
    assert_eq!(body["spec"]["parentRefs"], route()["spec"]["parentRefs"]);
    assert_eq!(
        body["metadata"]["resourceVersion"], "7",
        "written against what was read"
    );
    assert_eq!(r.weight(&[Some(body.clone())], &desired(20)), Ok(20));
    assert_eq!(
        r.reconcile(&[Some(body)], &desired(20)),
        Ok(Vec::new()),
        "idempotent"
    );
}

#[test]
fn the_weight_read_is_the_canary_share_whatever_the_scale_of_the_numbers() {
    let r = router(json!({ "httpRoute": "web-route" }));
    let mut rt = route();
    rt["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(3);
    rt["spec"]["rules"][0]["backendRefs"][1]["weight"] = json!(1);
    assert_eq!(r.weight(&[Some(rt.clone())], &desired(0)), Ok(25));
    // Gateway API's default weight is 1: two refs without weights split evenly.
    for backend in rt["spec"]["rules"][0]["backendRefs"]
        .as_array_mut()
        .expect("refs")
    {
        backend.as_object_mut().expect("a ref").remove("weight");
    }
    assert_eq!(r.weight(&[Some(rt)], &desired(0)), Ok(50));
}

#[test]
fn a_missing_route_or_one_that_names_neither_service_is_an_error_naming_it() {
    let r = router(json!({ "httpRoutes": [{ "name": "web-route" }] }));
    assert_eq!(
        r.reconcile(&[None], &desired(10)),
        Err(RouterError::NotFound("HTTPRoute shop/web-route".into()))
    );
    let mut rt = route();
    rt["spec"]["rules"].as_array_mut().expect("rules").remove(0);
    let err = r
        .reconcile(&[Some(rt)], &desired(10))
        .expect_err("no weighted rule");
    assert!(
        err.to_string().contains("no rule sends to both Services"),
        "{err}"
    );
}

#[test]
fn a_header_route_sends_only_matching_requests_to_the_canary_and_goes_when_no_longer_in_force() {
    let r = router(json!({ "httpRoutes": [{ "name": "web-route", "useHeaderRoutes": true }] }));
    let mut d = desired(0);
    d.header_routes = vec![HeaderRoute {
        name: "canary-header".into(),
        matches: vec![HeaderMatch {
            header_name: "X-Canary".into(),
            header_value: StringMatch::Exact("yes".into()),
        }],
    }];
    let body = replaced(r.reconcile(&[Some(route())], &d).expect("writes"));
    let rule = &body["spec"]["rules"][2];
    assert_eq!(rule["name"], "canary-header");
    assert_eq!(
        rule["matches"],
        json!([{ "path": { "type": "PathPrefix", "value": "/" },
                 "headers": [{ "type": "Exact", "name": "X-Canary", "value": "yes" }] }])
    );
    assert_eq!(
        rule["backendRefs"],
        json!([{ "name": "web-canary", "port": 80, "weight": 1 }])
    );
    assert_eq!(
        r.reconcile(&[Some(body.clone())], &d),
        Ok(Vec::new()),
        "idempotent"
    );
    // The weight does not count the header rule: the weighted rule still gives the canary 0.
    assert_eq!(r.weight(&[Some(body.clone())], &d), Ok(0));

    let cleared = replaced(r.reconcile(&[Some(body)], &desired(0)).expect("writes"));
    assert_eq!(
        cleared["spec"]["rules"],
        route()["spec"]["rules"],
        "back as the owner wrote it"
    );
}

#[test]
fn header_routes_go_only_into_routes_that_take_them() {
    let r = router(json!({ "httpRoutes": [{ "name": "web-route" }] }));
    let mut d = desired(0);
    d.header_routes = vec![HeaderRoute {
        name: "canary-header".into(),
        matches: vec![HeaderMatch {
            header_name: "X-Canary".into(),
            header_value: StringMatch::Prefix("a.b".into()),
        }],
    }];
    assert_eq!(r.reconcile(&[Some(route())], &d), Ok(Vec::new()));
    let r = router(json!({ "httpRoute": "web-route" }));
    let body = replaced(r.reconcile(&[Some(route())], &d).expect("writes"));
    assert_eq!(
        body["spec"]["rules"][2]["matches"][0]["headers"][0],
        json!({ "type": "RegularExpression", "name": "X-Canary", "value": "^a\\.b.*" }),
        "a prefix becomes an anchored, escaped expression"
    );
}

#[test]
fn a_mirror_route_copies_matching_requests_to_the_canary_and_keeps_their_weighted_targets() {
    let r = router(json!({ "httpRoute": "web-route" }));
    let mut d = desired(10);
    d.mirror_routes = vec![MirrorRoute {
        name: "mirror".into(),
        matches: vec![RouteMatch {
            method: Some(StringMatch::Exact("get".into())),
            path: Some(StringMatch::Prefix("/api".into())),
            headers: Default::default(),
        }],
        percentage: 35,
    }];
    let body = replaced(r.reconcile(&[Some(route())], &d).expect("writes"));
    let rule = &body["spec"]["rules"][2];
    assert_eq!(rule["name"], "mirror");
    assert_eq!(
        rule["matches"],
        json!([{ "method": "GET", "path": { "type": "PathPrefix", "value": "/api" } }])
    );
    assert_eq!(
        rule["filters"],
        json!([{ "type": "RequestMirror",
                 "requestMirror": { "backendRef": { "name": "web-canary", "port": 80 }, "percent": 35 } }])
    );
    assert_eq!(rule["backendRefs"], body["spec"]["rules"][0]["backendRefs"]);
    assert_eq!(rule["backendRefs"][1]["weight"], 10);
}

#[test]
fn every_named_route_of_every_kind_is_read_and_the_largest_canary_share_reported() {
    let r = router(
        json!({ "httpRoute": "web-route", "tcpRoutes": [{ "name": "web-tcp" }], "namespace": "edge" }),
    );
    let objects = r.objects("shop", "web");
    let names: Vec<String> = objects.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["HTTPRoute edge/web-route", "TCPRoute edge/web-tcp"]);
    assert_eq!(
        objects[1].api_version(),
        "gateway.networking.k8s.io/v1alpha2"
    );
    let mut tcp = route();
    tcp["spec"]["rules"]
        .as_array_mut()
        .expect("rules")
        .truncate(1);
    tcp["spec"]["rules"][0]
        .as_object_mut()
        .expect("a rule")
        .remove("matches");
    tcp["spec"]["rules"][0]["backendRefs"][1]["weight"] = json!(30);
    tcp["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(70);
    assert_eq!(r.weight(&[Some(route()), Some(tcp)], &desired(0)), Ok(30));
}
