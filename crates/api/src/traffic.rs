//! `canary.trafficRouting`: which traffic router splits requests by weight, and how to find
//! the objects (Ingress, VirtualService, TrafficSplit, …) it rewrites.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The routers a canary may use; Argo allows several at once (e.g. nginx and a plugin).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficRouting {
    /// Istio VirtualService / DestinationRule routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTrafficRouting>,
    /// NGINX Ingress canary annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxTrafficRouting>,
    /// AWS Load Balancer Controller Ingress actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<AlbTrafficRouting>,
    /// SMI TrafficSplit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smi: Option<SmiTrafficRouting>,
    /// Ambassador (Emissary) Mappings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambassador: Option<AmbassadorTrafficRouting>,
    /// AWS App Mesh virtual routers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_mesh: Option<AppMeshTrafficRouting>,
    /// Traefik weighted TraefikService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traefik: Option<TraefikTrafficRouting>,
    /// Apache APISIX Route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apisix: Option<ApisixTrafficRouting>,
    /// Traffic router plugins by plugin name, each with its own free-form configuration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::open_object")]
    pub plugins: BTreeMap<String, serde_json::Value>,
    /// Routes the rollout manages (header and mirror routes), in precedence order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_routes: Vec<ManagedRoute>,
    /// The weight that means "all traffic" (100 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_traffic_weight: Option<i32>,
}

/// A route the rollout creates and deletes itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ManagedRoute {
    /// Name referred to by `setHeaderRoute` / `setMirrorRoute` steps.
    pub name: String,
}

/// NGINX Ingress: a canary Ingress with weight annotations beside the stable one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NginxTrafficRouting {
    /// Annotation prefix of the ingress controller (`nginx.ingress.kubernetes.io` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// The Ingress that routes to the stable Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_ingress: Option<String>,
    /// Several stable Ingresses, instead of `stableIngress`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stable_ingresses: Vec<String>,
    /// Extra annotations for the canary Ingress (e.g. header-based canary).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_ingress_annotations: BTreeMap<String, String>,
    /// Annotations set on the canary Ingress only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub canary_ingress_annotations: BTreeMap<String, String>,
}

/// Istio: weights written into VirtualService routes, optionally DestinationRule subsets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioTrafficRouting {
    /// The VirtualService to rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<IstioVirtualService>,
    /// Several VirtualServices, instead of `virtualService`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_services: Vec<IstioVirtualService>,
    /// DestinationRule whose subsets select canary and stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<IstioDestinationRule>,
}

/// An Istio VirtualService and the routes in it to rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioVirtualService {
    /// Name of the VirtualService.
    pub name: String,
    /// Names of its HTTP routes; the only one when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Its TLS routes to rewrite.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_routes: Vec<IstioTlsRoute>,
    /// Its TCP routes to rewrite.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_routes: Vec<IstioTcpRoute>,
}

/// A TLS route of a VirtualService, found by port and SNI hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioTlsRoute {
    /// Port of the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// SNI hosts of the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
}

/// A TCP route of a VirtualService, found by port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct IstioTcpRoute {
    /// Port of the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// An Istio DestinationRule with one subset per version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IstioDestinationRule {
    /// Name of the DestinationRule.
    pub name: String,
    /// Subset pointed at canary pods.
    pub canary_subset_name: String,
    /// Subset pointed at stable pods.
    pub stable_subset_name: String,
    /// Further subsets of the DestinationRule that Argo Rollouts does not manage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_subset_names: Vec<String>,
}

/// AWS Load Balancer Controller: weighted forward actions on an Ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlbTrafficRouting {
    /// The Ingress to annotate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
    /// Several Ingresses, instead of `ingress`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingresses: Vec<String>,
    /// Service port the action forwards to.
    pub service_port: i32,
    /// Service named in the Ingress rule (the stable Service when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_service: Option<String>,
    /// Annotation prefix of the controller (`alb.ingress.kubernetes.io` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
    /// Target group stickiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness_config: Option<StickinessConfig>,
}

/// Duration-based stickiness of ALB target groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickinessConfig {
    /// Whether stickiness is on.
    pub enabled: bool,
    /// How long a client sticks to a target group.
    pub duration_seconds: i64,
}

/// SMI: a TrafficSplit between the canary and stable Services.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmiTrafficRouting {
    /// The Service clients call (the stable Service when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_service: Option<String>,
    /// Name of the TrafficSplit (the rollout's name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_split_name: Option<String>,
}

/// Ambassador: canary copies of the listed Mappings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct AmbassadorTrafficRouting {
    /// Names of the Mappings to copy.
    pub mappings: Vec<String>,
}

/// AWS App Mesh: weighted targets of a virtual router.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshTrafficRouting {
    /// The virtual service and its routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<AppMeshVirtualService>,
    /// The virtual nodes of each version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_node_group: Option<AppMeshVirtualNodeGroup>,
}

/// An App Mesh virtual service and the routes to rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct AppMeshVirtualService {
    /// Name of the virtual service.
    pub name: String,
    /// Routes of its virtual router; the only one when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// The App Mesh virtual nodes of the canary and stable versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMeshVirtualNodeGroup {
    /// Virtual node of the canary pods.
    pub canary_virtual_node_ref: AppMeshVirtualNodeRef,
    /// Virtual node of the stable pods.
    pub stable_virtual_node_ref: AppMeshVirtualNodeRef,
}

/// A reference to an App Mesh VirtualNode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct AppMeshVirtualNodeRef {
    /// Name of the VirtualNode.
    pub name: String,
}

/// Traefik: a weighted TraefikService.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraefikTrafficRouting {
    /// Name of the TraefikService to rewrite.
    pub weighted_traefik_service_name: String,
}

/// Apache APISIX: weighted upstreams of an ApisixRoute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ApisixTrafficRouting {
    /// The ApisixRoute to rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<ApisixRoute>,
}

/// An ApisixRoute and the HTTP rules in it to rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct ApisixRoute {
    /// Name of the ApisixRoute.
    pub name: String,
    /// Names of its HTTP rules; the only one when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// The name Argo users register the Gateway API traffic router plugin under; Sluice routes
/// through Gateway API natively when `trafficRouting.plugins` names it.
pub const GATEWAY_API_PLUGIN: &str = "argoproj-labs/gatewayAPI";

/// The configuration of `trafficRouting.plugins["argoproj-labs/gatewayAPI"]`, in the plugin's
/// own shape: one route of a kind by name, or several with their options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiConfig {
    /// One HTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<String>,
    /// Several HTTPRoutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_routes: Vec<GatewayApiRoute>,
    /// One GRPCRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_route: Option<String>,
    /// Several GRPCRoutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grpc_routes: Vec<GatewayApiRoute>,
    /// One TCPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_route: Option<String>,
    /// Several TCPRoutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp_routes: Vec<GatewayApiRoute>,
    /// The routes' namespace (the rollout's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The plugin's ConfigMap for header routes; read and ignored (Sluice keeps header routes as
    /// named rules in the route itself, as the plugin does since v0.13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
}

/// One route named in a Gateway API plugin configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRoute {
    /// The route's name.
    pub name: String,
    /// Whether header routes (`setHeaderRoute`) are added to this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_header_routes: Option<bool>,
}

/// The kinds of Gateway API route a rollout can weigh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GatewayRouteKind {
    /// `HTTPRoute`.
    Http,
    /// `GRPCRoute`.
    Grpc,
    /// `TCPRoute`.
    Tcp,
}

impl GatewayApiConfig {
    /// The configuration in a rollout's `trafficRouting`, if it names the plugin; an error
    /// message when the configuration does not read as the plugin's.
    pub fn of(routing: &TrafficRouting) -> Option<Result<Self, String>> {
        let raw = routing.plugins.get(GATEWAY_API_PLUGIN)?;
        Some(serde_json::from_value(raw.clone()).map_err(|e| e.to_string()))
    }

    /// Every route named, with its kind and whether header routes go into it (an `httpRoute`
    /// given by name alone takes them, as with the plugin).
    pub fn routes(&self) -> Vec<(GatewayRouteKind, GatewayApiRoute)> {
        let one = |name: &Option<String>, header: bool| {
            name.iter()
                .map(move |n| GatewayApiRoute {
                    name: n.clone(),
                    use_header_routes: Some(header),
                })
                .collect::<Vec<_>>()
        };
        let kinds = [
            (
                GatewayRouteKind::Http,
                one(&self.http_route, true),
                &self.http_routes,
            ),
            (
                GatewayRouteKind::Grpc,
                one(&self.grpc_route, true),
                &self.grpc_routes,
            ),
            (
                GatewayRouteKind::Tcp,
                one(&self.tcp_route, false),
                &self.tcp_routes,
            ),
        ];
        kinds
            .into_iter()
            .flat_map(|(kind, single, many)| {
                single
                    .into_iter()
                    .chain(many.iter().cloned())
                    .map(move |r| (kind, r))
            })
            .collect()
    }
}
