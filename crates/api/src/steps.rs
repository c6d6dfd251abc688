//! Canary steps. A step Sluice runs is one action, so it is an enum serialised the way Argo
//! writes it: `- setWeight: 20`, `- pause: {duration: 30s}`, `- pause: {}`.
//!
//! Argo's step is a struct whose actions are all optional, so a manifest may put two actions in
//! one step (Argo's apisix example: `setCanaryScale` and `setHeaderRoute`). [`CanarySteps`] reads
//! such a step: its first action is the step, the others are kept beside it
//! ([`CanarySteps::extra_actions`]) and written back after it, and `validate` reports the step.

use std::{
    collections::BTreeMap,
    fmt,
    ops::{Deref, DerefMut},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    AnalysisRunArgument, AnalysisRunMetadata, DryRun, Duration, PodTemplateMetadata,
    RolloutAnalysis, keyed::one_key_map,
};

/// One entry of `spec.strategy.canary.steps`.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(rename_all = "camelCase")]
pub enum CanaryStep {
    /// Send this percentage (0 to 100) of the rollout to the canary.
    SetWeight(#[schemars(range(min = 0, max = 100))] i32),
    /// Wait for a duration, or until promoted when no duration is given.
    Pause(PauseStep),
    /// Scale the canary independently of its traffic weight.
    SetCanaryScale(SetCanaryScale),
    /// Run an AnalysisRun and wait for its result.
    Analysis(RolloutAnalysis),
    /// Run an Experiment (extra ReplicaSets plus analyses) and wait for it.
    Experiment(ExperimentStep),
    /// Route requests with matching headers to the canary.
    SetHeaderRoute(SetHeaderRoute),
    /// Mirror matching requests to the canary.
    SetMirrorRoute(SetMirrorRoute),
    /// Run a step plugin.
    Plugin(PluginStep),
}

one_key_map!(CanaryStep, "a canary step", {
    SetWeight => "setWeight",
    Pause => "pause",
    SetCanaryScale => "setCanaryScale",
    Analysis => "analysis",
    Experiment => "experiment",
    SetHeaderRoute => "setHeaderRoute",
    SetMirrorRoute => "setMirrorRoute",
    Plugin => "plugin",
});

/// `spec.strategy.canary.steps`: the steps in order, each its first action, with the further
/// actions of any step that holds several.
///
/// Dereferences to the `Vec<CanaryStep>` of first actions, which is what the planner runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CanarySteps {
    /// The first action of each step.
    steps: Vec<CanaryStep>,
    /// The actions after the first, by step index, in the order they were written.
    extra: BTreeMap<usize, Vec<CanaryStep>>,
}

impl CanarySteps {
    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The actions a step holds after its first one; empty for a step of one action.
    pub fn extra_actions(&self, index: usize) -> &[CanaryStep] {
        self.extra.get(&index).map_or(&[], Vec::as_slice)
    }

    /// Every action of a step, the first one first; empty past the last step.
    pub fn actions(&self, index: usize) -> Vec<&CanaryStep> {
        self.steps
            .get(index)
            .into_iter()
            .chain(self.extra_actions(index))
            .collect()
    }

    /// Every action of every step with its step's index, in written order.
    pub fn every_action(&self) -> impl Iterator<Item = (usize, &CanaryStep)> + '_ {
        (0..self.steps.len()).flat_map(move |i| self.actions(i).into_iter().map(move |a| (i, a)))
    }

    /// The steps holding more than one action: `(index, every action)`.
    pub fn with_several_actions(&self) -> impl Iterator<Item = (usize, Vec<&CanaryStep>)> + '_ {
        self.extra
            .iter()
            .filter(|(i, extra)| !extra.is_empty() && *i < &self.steps.len())
            .map(|(i, _)| (*i, self.actions(*i)))
    }
}

impl From<Vec<CanaryStep>> for CanarySteps {
    fn from(steps: Vec<CanaryStep>) -> Self {
        Self {
            steps,
            extra: BTreeMap::new(),
        }
    }
}

impl Deref for CanarySteps {
    type Target = Vec<CanaryStep>;

    fn deref(&self) -> &Self::Target {
        &self.steps
    }
}

impl DerefMut for CanarySteps {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.steps
    }
}

impl Serialize for CanarySteps {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;

        /// One step written as one map: its first action's key, then the others'.
        struct Step<'a>(Vec<&'a CanaryStep>);

        impl Serialize for Step<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for action in &self.0 {
                    action.serialize_entry(&mut map)?;
                }
                map.end()
            }
        }

        let mut seq = serializer.serialize_seq(Some(self.steps.len()))?;
        for index in 0..self.steps.len() {
            seq.serialize_element(&Step(self.actions(index)))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for CanarySteps {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let all = Vec::<StepActions>::deserialize(deserializer)?;
        let mut steps = Self::default();
        for (index, StepActions(first, rest)) in all.into_iter().enumerate() {
            steps.steps.push(first);
            if !rest.is_empty() {
                steps.extra.insert(index, rest);
            }
        }
        Ok(steps)
    }
}

impl JsonSchema for CanarySteps {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CanarySteps".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Vec::<CanaryStep>::json_schema(generator)
    }
}

/// Every action of one step as written: the first, and the others in order.
struct StepActions(CanaryStep, Vec<CanaryStep>);

impl<'de> Deserialize<'de> for StepActions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StepActions;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a canary step with one or more of: {}",
                    CanaryStep::KEYS.join(", ")
                )
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StepActions, A::Error> {
                let mut actions = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    actions.push(CanaryStep::from_entry(&key, &mut map)?);
                }
                let mut actions = actions.into_iter();
                let Some(first) = actions.next() else {
                    return Err(serde::de::Error::custom(format!(
                        "a canary step is empty; it needs one of: {}",
                        CanaryStep::KEYS.join(", ")
                    )));
                };
                Ok(StepActions(first, actions.collect()))
            }
        }

        deserializer.deserialize_map(Visitor)
    }
}

/// The kind of a step, without its settings: for tables, messages and field paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// `setWeight`.
    SetWeight,
    /// `pause`.
    Pause,
    /// `setCanaryScale`.
    SetCanaryScale,
    /// `analysis`.
    Analysis,
    /// `experiment`.
    Experiment,
    /// `setHeaderRoute`.
    SetHeaderRoute,
    /// `setMirrorRoute`.
    SetMirrorRoute,
    /// `plugin`.
    Plugin,
}

impl CanaryStep {
    /// What kind of step this is.
    pub fn kind(&self) -> StepKind {
        match self {
            Self::SetWeight(_) => StepKind::SetWeight,
            Self::Pause(_) => StepKind::Pause,
            Self::SetCanaryScale(_) => StepKind::SetCanaryScale,
            Self::Analysis(_) => StepKind::Analysis,
            Self::Experiment(_) => StepKind::Experiment,
            Self::SetHeaderRoute(_) => StepKind::SetHeaderRoute,
            Self::SetMirrorRoute(_) => StepKind::SetMirrorRoute,
            Self::Plugin(_) => StepKind::Plugin,
        }
    }
}

impl StepKind {
    /// The step's key in a manifest.
    pub fn json_name(self) -> &'static str {
        match self {
            Self::SetWeight => "setWeight",
            Self::Pause => "pause",
            Self::SetCanaryScale => "setCanaryScale",
            Self::Analysis => "analysis",
            Self::Experiment => "experiment",
            Self::SetHeaderRoute => "setHeaderRoute",
            Self::SetMirrorRoute => "setMirrorRoute",
            Self::Plugin => "plugin",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json_name())
    }
}

/// `pause`: `{}` waits for promotion, `{duration: 30s}` waits that long.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct PauseStep {
    /// How long to wait; absent means until the rollout is promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
}

/// `setCanaryScale`: replicas of the canary, decoupled from its traffic weight.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// Canary replicas as a percentage of `spec.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: Option<i32>,
    /// Canary replicas as an absolute count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Go back to scaling the canary by its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
}

/// `experiment`: ReplicaSets of given templates, run side by side with analyses.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStep {
    /// The ReplicaSets to create.
    pub templates: Vec<ExperimentTemplate>,
    /// How long the experiment runs; until its analyses finish when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Analyses run against the experiment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<ExperimentAnalysis>,
    /// Metrics whose failures are reported but do not fail the experiment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Labels and annotations for the experiment's AnalysisRuns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<AnalysisRunMetadata>,
    /// Seconds to wait before scaling down the experiment's ReplicaSets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
}

/// One ReplicaSet of an experiment.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentTemplate {
    /// Name of the template within the experiment.
    pub name: String,
    /// Whose pod template to copy: the canary's or the stable's.
    pub spec_ref: SpecRef,
    /// Replicas of this ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Labels and annotations for its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMetadata>,
    /// Selector overriding the rollout's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::label_selector")]
    pub selector: Option<LabelSelector>,
    /// Percentage of traffic this ReplicaSet receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub weight: Option<i32>,
    /// A Service to create for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TemplateService>,
}

/// Which ReplicaSet an experiment template copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum SpecRef {
    /// The new (canary) pod template.
    #[default]
    #[serde(rename = "canary")]
    Canary,
    /// The stable pod template.
    #[serde(rename = "stable")]
    Stable,
}

/// A Service created for an experiment template.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct TemplateService {
    /// Name of the Service; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// An analysis run as part of an experiment.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysis {
    /// Name of this analysis within the experiment.
    pub name: String,
    /// The AnalysisTemplate (or ClusterAnalysisTemplate) to run.
    pub template_name: String,
    /// Look the template up as a ClusterAnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    /// Arguments passed to the template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
    /// The experiment is not complete until this analysis is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_for_completion: Option<bool>,
}

/// `setHeaderRoute`: requests matching all listed headers go to the canary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct SetHeaderRoute {
    /// Name of the managed route (listed in `trafficRouting.managedRoutes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Header conditions; an empty list removes the route.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HeaderMatch>,
}

/// One header condition of a header route.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    /// The request header.
    pub header_name: String,
    /// How its value must match.
    pub header_value: StringMatch,
}

/// How a string must match: exactly one of exact, prefix and regex.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "camelCase")]
pub enum StringMatch {
    /// Equal to this string.
    Exact(String),
    /// Starting with this string.
    Prefix(String),
    /// Matching this regular expression.
    Regex(String),
}

one_key_map!(StringMatch, "a string match", {
    Exact => "exact",
    Prefix => "prefix",
    Regex => "regex",
});

/// `setMirrorRoute`: copy matching requests to the canary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct SetMirrorRoute {
    /// Name of the managed route (listed in `trafficRouting.managedRoutes`).
    pub name: String,
    /// Request conditions; an empty list removes the route.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// Percentage of matching requests to mirror.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percentage: Option<i32>,
}

/// Conditions on a request's method, path and headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct RouteMatch {
    /// HTTP method condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// URL path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    /// Header conditions by header name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
}

/// `plugin`: a step carried out by a step plugin with its own configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct PluginStep {
    /// Name of the plugin, as registered with the controller.
    pub name: String,
    /// The plugin's configuration, passed through verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::any_json")]
    pub config: Option<serde_json::Value>,
}
