//! `create -f FILE… [-w]`: creates the Rollouts, AnalysisTemplates, ClusterAnalysisTemplates and
//! AnalysisRuns of YAML or JSON files, then (`-w`) watches the Rollout as `get rollout --watch`;
//! `create analysisrun --from TEMPLATE | --from-file FILE`: an AnalysisRun made from a template,
//! its arguments filled from `-a NAME=VALUE`, as `kubectl argo rollouts create` does.
//!
//! Objects are created as written (every field kept, also those Sluice does not read), each
//! printed as `KIND.argoproj.io/NAME created`, as Argo's plugin prints them.
//!
//! Where Sluice differs, and why:
//! - a file may hold several documents (Argo's reads one object per file): Helm and kustomize
//!   output is multi-document; every document is checked before the first is created, so a
//!   file with a kind the command does not create (or a second Rollout with `-w`) creates
//!   nothing;
//! - a document naming another namespace than the command's is refused before anything is
//!   created, rather than by the API server halfway through;
//! - `create analysisrun` refuses a template that includes others (`spec.templates`): Argo's
//!   would create a run without the included metrics; a required argument left without a
//!   value is refused with its name before anything is created, as Argo's does;
//! - `--instance-id` adds its label to the template's labels (Argo's replaces them), and the
//!   template's `last-applied-configuration` annotation is not copied onto the run.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, PostParams},
};
use serde::Deserialize as _;
use serde_json::{Value, json};
use sluice_api::{
    AnalysisRun, AnalysisTemplate, AnalysisTemplateSpec, Argument, ClusterAnalysisTemplate,
    Rollout,
    vocab::{GROUP, INSTANCE_ID_LABEL},
};

use super::{Context, Error, print, style::Style};

/// `create`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  # Create the objects of a file, then watch the rollout\n  \
                  kubectl sluice create -f rollout.yaml -w\n\n  \
                  # Several files\n  kubectl sluice create -f analysis.yaml -f rollout.yaml"
)]
pub struct CreateArgs {
    /// An AnalysisRun from a template.
    #[command(subcommand)]
    pub what: Option<Create>,
    /// A YAML or JSON file of Rollouts, AnalysisTemplates, ClusterAnalysisTemplates or
    /// AnalysisRuns (several documents allowed); repeat for several files.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<String>,
    /// Then watch the Rollout created, as `get rollout --watch` (Ctrl-C ends).
    #[arg(short, long)]
    pub watch: bool,
    /// Print the watched tree without colours.
    #[arg(long)]
    pub no_color: bool,
}

/// What to create from a template.
#[derive(Debug, Subcommand)]
pub enum Create {
    /// An AnalysisRun from an AnalysisTemplate or a ClusterAnalysisTemplate.
    #[command(
        name = "analysisrun",
        visible_alias = "ar",
        after_help = "Examples:\n  # From an AnalysisTemplate of the namespace, with an argument\n  \
                      kubectl sluice create analysisrun --from success-rate -a service=shop\n\n  \
                      # From a ClusterAnalysisTemplate\n  \
                      kubectl sluice create analysisrun --global --from success-rate\n\n  \
                      # From a template file, with a fixed name\n  \
                      kubectl sluice create analysisrun --from-file template.yaml --name check-1"
    )]
    AnalysisRun(CreateAnalysisRun),
}

/// `create analysisrun`.
#[derive(Debug, Args)]
pub struct CreateAnalysisRun {
    /// The template in the cluster (an AnalysisTemplate of the namespace; with --global, a
    /// ClusterAnalysisTemplate).
    #[arg(
        long,
        value_name = "TEMPLATE",
        conflicts_with = "from_file",
        required_unless_present = "from_file"
    )]
    pub from: Option<String>,
    /// A file holding the template (AnalysisTemplate or ClusterAnalysisTemplate).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<String>,
    /// --from names a ClusterAnalysisTemplate.
    #[arg(long)]
    pub global: bool,
    /// The run's name (wins over --generate-name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The prefix of a generated name; the template's name and `-` by default.
    #[arg(long, value_name = "PREFIX")]
    pub generate_name: Option<String>,
    /// An argument of the template, NAME=VALUE; repeat for several.
    #[arg(short = 'a', long = "argument", value_name = "NAME=VALUE")]
    pub arguments: Vec<String>,
    /// The controller instance that runs it (the instance-id label).
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
}

/// The kinds `create -f` creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Rollout.
    Rollout,
    /// An AnalysisTemplate.
    AnalysisTemplate,
    /// A ClusterAnalysisTemplate (cluster-scoped).
    ClusterAnalysisTemplate,
    /// An AnalysisRun.
    AnalysisRun,
}

impl Kind {
    /// The kind of an object as written, when the command creates it.
    fn of(object: &Value) -> Option<Self> {
        let group = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|v| v.split_once('/'))
            .map(|(g, _)| g);
        if group != Some(GROUP) {
            return None;
        }
        match object.get("kind").and_then(Value::as_str)? {
            "Rollout" => Some(Self::Rollout),
            "AnalysisTemplate" => Some(Self::AnalysisTemplate),
            "ClusterAnalysisTemplate" => Some(Self::ClusterAnalysisTemplate),
            "AnalysisRun" => Some(Self::AnalysisRun),
            _ => None,
        }
    }

    /// The resource, for the dynamic client.
    fn resource(self) -> ApiResource {
        match self {
            Self::Rollout => ApiResource::erase::<Rollout>(&()),
            Self::AnalysisTemplate => ApiResource::erase::<AnalysisTemplate>(&()),
            Self::ClusterAnalysisTemplate => ApiResource::erase::<ClusterAnalysisTemplate>(&()),
            Self::AnalysisRun => ApiResource::erase::<AnalysisRun>(&()),
        }
    }

    /// Whether objects of the kind live in a namespace.
    fn namespaced(self) -> bool {
        self != Self::ClusterAnalysisTemplate
    }

    /// Whether `object` reads as this kind: the check the controller would make on it.
    fn check(self, object: &Value) -> Result<(), String> {
        let e = |e: serde_json::Error| e.to_string();
        match self {
            Self::Rollout => Rollout::deserialize(object).map(drop).map_err(e),
            Self::AnalysisTemplate => AnalysisTemplate::deserialize(object).map(drop).map_err(e),
            Self::ClusterAnalysisTemplate => ClusterAnalysisTemplate::deserialize(object)
                .map(drop)
                .map_err(e),
            Self::AnalysisRun => AnalysisRun::deserialize(object).map(drop).map_err(e),
        }
    }
}

/// One object to create, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Its kind.
    pub kind: Kind,
    /// The object as written.
    pub object: Value,
}

/// The objects of one file's text, each checked, in order; `file` names it in errors. Empty
/// documents are skipped. Pure.
pub fn documents(text: &str, file: &str, namespace: &str) -> Result<Vec<Document>, Error> {
    let mut out = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let at = format!("{file}, document {}", i + 1);
        let object = Value::deserialize(document)
            .map_err(|e| Error::Refused(format!("{at} is not valid YAML or JSON: {e}")))?;
        if object.is_null() {
            continue;
        }
        let written = |field: &str| {
            object
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        let kind = Kind::of(&object).ok_or_else(|| {
            Error::Refused(format!(
                "{at}: {}/{} is not created by this command (it creates Rollouts, \
                 AnalysisTemplates, ClusterAnalysisTemplates and AnalysisRuns of {GROUP}): \
                 nothing was created",
                written("apiVersion"),
                written("kind")
            ))
        })?;
        kind.check(&object).map_err(|e| {
            Error::Refused(format!(
                "{at} is not a valid {kind:?}: {e}; nothing was created"
            ))
        })?;
        let theirs = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        if let Some(theirs) = theirs.filter(|ns| kind.namespaced() && *ns != namespace) {
            return Err(Error::Refused(format!(
                "{at} belongs to namespace \"{theirs}\", not \"{namespace}\": pass -n {theirs}; \
                 nothing was created"
            )));
        }
        out.push(Document { kind, object });
    }
    Ok(out)
}

/// Runs `create`.
pub async fn run(ctx: &Context, args: CreateArgs) -> Result<ExitCode, Error> {
    if let Some(Create::AnalysisRun(run)) = args.what {
        return create_run(ctx, run).await;
    }
    if args.files.is_empty() {
        return Err(Error::Refused(
            "create needs -f FILE (or `create analysisrun --from TEMPLATE`)".into(),
        ));
    }
    let mut all = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        all.extend(documents(&text, file, &ctx.namespace)?);
    }
    let rollouts = all.iter().filter(|d| d.kind == Kind::Rollout).count();
    if args.watch && rollouts != 1 {
        return Err(Error::Refused(format!(
            "-w watches one Rollout, and the files hold {rollouts}: nothing was created"
        )));
    }
    let mut watched = None;
    for document in all {
        let name = create(ctx, &document).await?;
        let kind = format!("{:?}", document.kind).to_lowercase();
        print(&format!("{kind}.{GROUP}/{name} created\n"));
        if document.kind == Kind::Rollout {
            watched = Some(name);
        }
    }
    match watched.filter(|_| args.watch) {
        Some(name) => {
            let ctx = Context {
                style: Style {
                    color: ctx.style.color && !args.no_color,
                    ..ctx.style
                },
                ..ctx.clone()
            };
            super::get::watch(&ctx, &name, None).await
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Creates one object as written; returns its name (generated or not).
async fn create(ctx: &Context, document: &Document) -> Result<String, Error> {
    let resource = document.kind.resource();
    let api: Api<DynamicObject> = if document.kind.namespaced() {
        Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource)
    } else {
        Api::all_with(ctx.client.clone(), &resource)
    };
    let object: DynamicObject = serde_json::from_value(document.object.clone())
        .map_err(|e| Error::Refused(format!("reading the object: {e}")))?;
    let name = object.metadata.name.clone();
    let (plural, kind) = names(document.kind);
    let mut request = ctx.request("create", plural, kind, name.as_deref());
    if !document.kind.namespaced() {
        request.namespace = "";
    }
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .map_err(|e| request.error(e))?;
    Ok(created.metadata.name.unwrap_or_default())
}

/// The plural and the kind, for messages.
fn names(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Rollout => ("rollouts", "Rollout"),
        Kind::AnalysisTemplate => ("analysistemplates", "AnalysisTemplate"),
        Kind::ClusterAnalysisTemplate => ("clusteranalysistemplates", "ClusterAnalysisTemplate"),
        Kind::AnalysisRun => ("analysisruns", "AnalysisRun"),
    }
}

/// `-a NAME=VALUE` flags as arguments with values.
fn parse_arguments(flags: &[String]) -> Result<Vec<Argument>, Error> {
    flags
        .iter()
        .map(|flag| match flag.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok(Argument {
                name: name.to_string(),
                value: Some(value.to_string()),
                value_from: None,
            }),
            _ => Err(Error::Refused(format!(
                "-a expects NAME=VALUE, got \"{flag}\""
            ))),
        })
        .collect()
}

/// What names the run: `--name`, else `--generate-name`, else the template's name and `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunName {
    /// `metadata.name`.
    Name(String),
    /// `metadata.generateName`.
    Generate(String),
}

/// The AnalysisRun made from `template` (an AnalysisTemplate or ClusterAnalysisTemplate
/// object, as JSON): its spec with `arguments` merged into the template's (a required one left
/// without a value is refused, naming it), its labels and annotations, in `namespace`. Pure.
pub fn analysis_run(
    template: &Value,
    arguments: &[Argument],
    name: RunName,
    instance_id: Option<&str>,
    namespace: &str,
) -> Result<Value, Error> {
    let template_name = template
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("template");
    let raw_spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let spec = AnalysisTemplateSpec::deserialize(&raw_spec).map_err(|e| {
        Error::Refused(format!(
            "template \"{template_name}\" is not a valid AnalysisTemplate: {e}"
        ))
    })?;
    if !spec.templates.is_empty() {
        return Err(Error::Refused(format!(
            "template \"{template_name}\" includes other templates (spec.templates): create \
             analysisrun takes a template with its own metrics"
        )));
    }
    let args = sluice_analysis::args::merge_args(arguments, &spec.args)
        .map_err(|e| Error::Refused(format!("template \"{template_name}\": {e}")))?;
    let mut run_spec = raw_spec;
    if let Some(fields) = run_spec.as_object_mut() {
        fields.remove("templates");
        if args.is_empty() {
            fields.remove("args");
        } else {
            fields.insert(
                "args".into(),
                serde_json::to_value(&args).map_err(|e| Error::Output(e.to_string()))?,
            );
        }
    }
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Some(id) = instance_id {
        labels[INSTANCE_ID_LABEL] = json!(id);
    }
    let mut annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    let mut metadata = json!({ "namespace": namespace });
    match name {
        RunName::Name(n) => metadata["name"] = json!(n),
        RunName::Generate(prefix) => metadata["generateName"] = json!(prefix),
    }
    for (field, value) in [("labels", labels), ("annotations", annotations)] {
        if value.as_object().is_some_and(|m| !m.is_empty()) {
            metadata[field] = value;
        }
    }
    Ok(json!({
        "apiVersion": format!("{GROUP}/v1alpha1"),
        "kind": "AnalysisRun",
        "metadata": metadata,
        "spec": run_spec,
    }))
}

/// Reads the template `create analysisrun` names: from the cluster, or the one document of a
/// file.
async fn template(ctx: &Context, args: &CreateAnalysisRun) -> Result<Value, Error> {
    if let Some(file) = &args.from_file {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        let mut documents = Vec::new();
        for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(document).map_err(|e| {
                Error::Refused(format!(
                    "{file}, document {} is not valid YAML or JSON: {e}",
                    i + 1
                ))
            })?;
            if !value.is_null() {
                documents.push(value);
            }
        }
        let [template] = <[Value; 1]>::try_from(documents).map_err(|d| {
            Error::Refused(format!(
                "{file} holds {} documents: --from-file takes one template",
                d.len()
            ))
        })?;
        return match Kind::of(&template) {
            Some(Kind::AnalysisTemplate | Kind::ClusterAnalysisTemplate) => Ok(template),
            _ => Err(Error::Refused(format!(
                "{file} is not an AnalysisTemplate or ClusterAnalysisTemplate of {GROUP}"
            ))),
        };
    }
    let name = args.from.clone().unwrap_or_default();
    let (kind, api) = if args.global {
        let resource = Kind::ClusterAnalysisTemplate.resource();
        (
            Kind::ClusterAnalysisTemplate,
            Api::<DynamicObject>::all_with(ctx.client.clone(), &resource),
        )
    } else {
        let resource = Kind::AnalysisTemplate.resource();
        (
            Kind::AnalysisTemplate,
            Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &resource),
        )
    };
    let (plural, kind_name) = names(kind);
    let mut request = ctx.request("get", plural, kind_name, Some(&name));
    if args.global {
        request.namespace = "";
    }
    let object = api.get(&name).await.map_err(|e| request.error(e))?;
    serde_json::to_value(object).map_err(|e| Error::Output(e.to_string()))
}

/// Runs `create analysisrun`.
async fn create_run(ctx: &Context, args: CreateAnalysisRun) -> Result<ExitCode, Error> {
    let arguments = parse_arguments(&args.arguments)?;
    let template = template(ctx, &args).await?;
    let name = match (&args.name, &args.generate_name) {
        (Some(name), _) => RunName::Name(name.clone()),
        (None, Some(prefix)) => RunName::Generate(prefix.clone()),
        (None, None) => RunName::Generate(format!(
            "{}-",
            template
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("analysis")
        )),
    };
    let run = analysis_run(
        &template,
        &arguments,
        name,
        args.instance_id.as_deref(),
        &ctx.namespace,
    )?;
    let document = Document {
        kind: Kind::AnalysisRun,
        object: run,
    };
    Kind::AnalysisRun
        .check(&document.object)
        .map_err(|e| Error::Refused(format!("the run made from the template is not valid: {e}")))?;
    let name = create(ctx, &document).await?;
    print(&format!("analysisrun.{GROUP}/{name} created\n"));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
  namespace: shop
  uid: 0b5c1f7e-0000-0000-0000-000000000000
  resourceVersion: "42"
  labels: { team: web }
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: "{}"
    owner: web
spec:
  args:
    - name: service
    - name: threshold
      value: "0.95"
  metrics:
    - name: rate
      interval: 30s
      successCondition: "result[0] >= {{args.threshold}}"
      provider:
        prometheus:
          address: http://prometheus:9090
          query: rate(ok{service="{{args.service}}"}[1m])
"#;

    fn template() -> Value {
        serde_norway::from_str(TEMPLATE).expect("a template")
    }

    #[test]
    fn a_run_gets_the_template_s_spec_with_the_arguments_filled() {
        let args =
            parse_arguments(&["service=shop".into(), "threshold=0.99".into()]).expect("arguments");
        let run = analysis_run(
            &template(),
            &args,
            RunName::Generate("success-rate-".into()),
            Some("blue"),
            "shop",
        )
        .expect("a run");
        assert_eq!(
            run,
            json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "AnalysisRun",
                "metadata": {
                    "namespace": "shop",
                    "generateName": "success-rate-",
                    "labels": { "team": "web", INSTANCE_ID_LABEL: "blue" },
                    "annotations": { "owner": "web" }
                },
                "spec": {
                    "args": [
                        { "name": "service", "value": "shop" },
                        { "name": "threshold", "value": "0.99" }
                    ],
                    "metrics": [{
                        "name": "rate",
                        "interval": "30s",
                        "successCondition": "result[0] >= {{args.threshold}}",
                        "provider": { "prometheus": {
                            "address": "http://prometheus:9090",
                            "query": "rate(ok{service=\"{{args.service}}\"}[1m])"
                        } }
                    }]
                }
            })
        );
        let parsed: AnalysisRun = serde_json::from_value(run).expect("an AnalysisRun");
        assert_eq!(parsed.spec.args.len(), 2);
    }

    #[test]
    fn a_required_argument_left_without_a_value_is_refused_with_its_name() {
        let e = analysis_run(
            &template(),
            &[],
            RunName::Name("check".into()),
            None,
            "shop",
        )
        .expect_err("service is required");
        assert_eq!(
            e.to_string(),
            "template \"success-rate\": args.service was not resolved: the template requires \
             it and no value was supplied"
        );
        let e = parse_arguments(&["service".into()]).expect_err("no =");
        assert_eq!(e.to_string(), "-a expects NAME=VALUE, got \"service\"");
    }

    #[test]
    fn a_template_including_others_is_refused() {
        let mut composed = template();
        composed["spec"]["templates"] = json!([{ "templateName": "latency" }]);
        let e = analysis_run(&composed, &[], RunName::Name("x".into()), None, "shop")
            .expect_err("composition");
        assert!(e.to_string().contains("includes other templates"), "{e}");
    }

    #[test]
    fn files_are_read_document_by_document_and_checked_before_anything_is_created() {
        let text = format!(
            "{TEMPLATE}\n---\n{}\n---\n",
            r#"{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{"name":"app"},
               "spec":{"selector":{"matchLabels":{"app":"app"}},
                       "template":{"metadata":{"labels":{"app":"app"}},
                                   "spec":{"containers":[{"name":"app","image":"app:1"}]}}}}"#
        );
        let docs = documents(&text, "all.yaml", "shop").expect("two objects");
        let kinds: Vec<Kind> = docs.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [Kind::AnalysisTemplate, Kind::Rollout]);
        // The object is created as written: fields Sluice does not read stay.
        assert_eq!(docs[0].object["metadata"]["labels"]["team"], "web");

        let e = documents(&text, "all.yaml", "prod").expect_err("another namespace");
        assert_eq!(
            e.to_string(),
            "all.yaml, document 1 belongs to namespace \"shop\", not \"prod\": pass -n shop; \
             nothing was created"
        );
        let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n";
        let e = documents(service, "svc.yaml", "shop").expect_err("not ours");
        assert!(
            e.to_string()
                .starts_with("svc.yaml, document 1: v1/Service is not created by this command"),
            "{e}"
        );
        let broken = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: x}\nspec: {replicas: many}\n";
        let e = documents(broken, "bad.yaml", "shop").expect_err("not a Rollout");
        assert!(
            e.to_string()
                .starts_with("bad.yaml, document 1 is not a valid Rollout"),
            "{e}"
        );
    }
}
