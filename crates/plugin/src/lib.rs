//! The `kubectl sluice` plugin: one file per command, rendering as pure functions of objects.
//!
//! - reading: `get` (tree of a rollout, an AnalysisRun, an Experiment), `list` (rollouts,
//!   experiments), `status`;
//! - creating: `create -f` (Rollouts, analysis templates and runs from files), `create
//!   analysisrun` (a run from a template);
//! - writing, with the same patches as Argo CD's resource actions and the Argo Rollouts plugin:
//!   `promote`, `abort`, `retry`, `pause`, `restart`, `set image`, `undo`, `skip-step`,
//!   `terminate` (an AnalysisRun, an Experiment);
//! - offline: `lint`, `version`, `completion`;
//! - `notifications`: the notification templates and triggers, shown and tried;
//! - `dashboard`: a web page on localhost showing the rollouts live, with the writing commands
//!   as buttons.
//!
//! [`info`] turns the objects into the model every view prints; [`style`] and [`table`] make it
//! fit the terminal; [`fetch`] reads and watches the cluster.
//!
//! The plugin reads the API ([`sluice_api`], with its read model) and the analysis rules for
//! `lint`; it never links the planner or the controllers.

#![forbid(unsafe_code)]

mod abort;
mod completion;
mod create;
pub mod dashboard;
pub mod error;
pub mod experiment;
pub mod fetch;
mod fields;
#[cfg(test)]
mod fixtures;
pub mod get;
pub mod info;
mod lint;
pub mod list;
mod notifications;
pub mod owned;
mod pause;
mod promote;
mod restart;
mod retry;
mod set;
mod skip_step;
pub mod status;
pub mod style;
pub mod table;
mod terminate;
#[cfg(test)]
mod tests;
mod undo;
mod version;
#[cfg(test)]
mod write_tests;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::NamespaceResourceScope;
use kube::{Api, Client, Resource};
use serde::Serialize;
use sluice_api::Rollout;

pub use self::error::Error;
use self::{error::Request, style::Style};

const EXAMPLES: &str = "\
Examples:
  # Watch a rollout progress, step by step
  kubectl sluice get rollout shop --watch

  # Let a paused canary continue, or send everything back to the stable version
  kubectl sluice promote shop
  kubectl sluice abort shop

  # Gate a CI pipeline on the rollout reaching Healthy (or Paused) within 10 minutes
  kubectl sluice status shop --timeout 10m";

/// Watch, promote and abort Sluice (and Argo Rollouts) progressive rollouts.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-sluice",
    version,
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    /// Cluster connection, as kubectl takes it.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line of this process, with usage and errors spelled `kubectl sluice`, as
    /// users type it (clap exits with its message and code 2 on a usage error).
    pub fn from_env() -> Self {
        let matches = <Self as clap::CommandFactory>::command()
            .bin_name("kubectl sluice")
            .get_matches();
        <Self as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// The flags kubectl users expect on every command.
#[derive(Debug, Clone, Default, Args)]
pub struct Global {
    /// Namespace of the rollout; the current context's namespace when absent.
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Kubeconfig file(s), separated as in KUBECONFIG (which it overrides).
    #[arg(
        long,
        global = true,
        env = "KUBECONFIG",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub kubeconfig: Option<String>,
    /// Kubeconfig cluster to use instead of the context's.
    #[arg(long, global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Kubeconfig user to use instead of the context's.
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// The API server's address (URL, or host:port for https), instead of the cluster's.
    #[arg(short = 's', long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token to authenticate with, instead of the user's credentials.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<sluice_kube::Token>,
    /// User to impersonate (a user, or system:serviceaccount:NAMESPACE:NAME).
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Group to impersonate; repeat the flag for several (needs --as).
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_groups: Vec<String>,
    /// PEM file of the certificate authorities to trust.
    #[arg(long, global = true, value_name = "PATH")]
    pub certificate_authority: Option<PathBuf>,
    /// PEM file of the client certificate.
    #[arg(long, global = true, value_name = "PATH")]
    pub client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's key.
    #[arg(long, global = true, value_name = "PATH")]
    pub client_key: Option<PathBuf>,
    /// Do not check the server's certificate (insecure).
    #[arg(
        long,
        global = true,
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub insecure_skip_tls_verify: bool,
    /// Longest wait for one request to the server (30s, 1m, or seconds); 0: no limit.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<Duration>,
}

impl Global {
    /// The connection flags as overrides of the kubeconfig.
    fn overrides(&self) -> sluice_kube::Overrides {
        sluice_kube::Overrides {
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
            server: self.server.clone(),
            certificate_authority: self.certificate_authority.clone(),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            token: self.token.clone(),
            client_certificate: self.client_certificate.clone(),
            client_key: self.client_key.clone(),
            impersonate: self.as_user.clone(),
            impersonate_groups: self.as_groups.clone(),
            request_timeout: self.request_timeout.filter(|t| !t.is_zero()),
        }
    }
}

/// kubectl's `--request-timeout`: a whole number of seconds, or a Go duration (`30s`, `1m`);
/// `0` means no limit.
pub fn parse_request_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    status::parse_duration(text).map_err(|e| {
        format!("{e}: expected a whole number of seconds, or a number with a unit (1s, 2m, 3h)")
    })
}

/// The plugin's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a rollout as a tree of revisions, ReplicaSets, pods and AnalysisRuns, or an AnalysisRun.
    #[command(
        subcommand,
        after_help = "Examples:\n  kubectl sluice get rollout shop --watch\n  kubectl sluice get analysisrun shop-6f9c7d-2"
    )]
    Get(get::Get),
    /// List rollouts with their strategy, status, step and weights.
    #[command(
        subcommand,
        after_help = "Example:\n  kubectl sluice list rollouts --all-namespaces"
    )]
    List(list::List),
    /// Wait until a rollout is Healthy or Degraded, printing its status (--watch=false: once).
    Status(status::StatusArgs),
    /// Let a paused rollout continue (or, with --full, skip all remaining steps).
    Promote(promote::PromoteArgs),
    /// Abort the update: traffic and replicas go back to the stable version.
    Abort(abort::AbortArgs),
    /// Retry an aborted rollout.
    #[command(
        subcommand,
        after_help = "Example:\n  kubectl sluice retry rollout shop"
    )]
    Retry(retry::Retry),
    /// Pause a rollout where it is (spec.paused), until promoted.
    Pause(pause::PauseArgs),
    /// Restart every pod of a rollout, a few at a time (spec.restartAt).
    Restart(restart::RestartArgs),
    /// Change part of a rollout's spec.
    #[command(
        subcommand,
        after_help = "Example:\n  kubectl sluice set image shop app=registry.example/shop:2.1"
    )]
    Set(set::Set),
    /// Roll back to the pod template of the previous (or a given) revision.
    Undo(undo::UndoArgs),
    /// Skip the canary step the rollout stands at.
    SkipStep(skip_step::SkipStepArgs),
    /// Check Rollout manifests offline, as the controller does.
    Lint(lint::LintArgs),
    /// Print the plugin's version.
    Version(version::VersionArgs),
    /// Create Rollouts, AnalysisTemplates and AnalysisRuns from files, or a run from a template.
    Create(create::CreateArgs),
    /// Print a shell completion script.
    Completion(completion::CompletionArgs),
    /// Serve a live web dashboard of the rollouts on localhost, with promote, abort and the rest.
    Dashboard(dashboard::DashboardArgs),
    /// End a running AnalysisRun (its measurements stop).
    #[command(
        subcommand,
        after_help = "Example:\n  kubectl sluice terminate analysisrun shop-6f9c7d-2-1"
    )]
    Terminate(terminate::Terminate),
    /// Show and try the notification templates and triggers the controller sends with.
    #[command(
        subcommand,
        after_help = "Example:\n  kubectl sluice notifications template get"
    )]
    Notifications(notifications::Notifications),
}

/// Data formats of `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// JSON, indented.
    Json,
    /// YAML.
    Yaml,
}

/// Runs one invocation of the plugin; the exit code tells scripts how it went.
pub async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let style = Style::of_stdout();
    // Only the commands that talk to the cluster load the kubeconfig.
    let connect = || Context::connect(&cli.global, style);
    match cli.command {
        Command::Version(args) => Ok(version::run(&args)),
        Command::Completion(args) => Ok(completion::run(&args)),
        Command::Lint(args) => lint::run(&args),
        Command::Create(args) => create::run(&connect().await?, args).await,
        Command::Get(args) => get::run(&connect().await?, args).await,
        Command::List(args) => list::run(&connect().await?, args).await,
        Command::Status(args) => Ok(status::exit(
            async { status::run(&connect().await?, args).await }.await,
        )),
        Command::Promote(args) => promote::run(&connect().await?, args).await,
        Command::Abort(args) => abort::run(&connect().await?, args).await,
        Command::Retry(args) => retry::run(&connect().await?, args).await,
        Command::Pause(args) => pause::run(&connect().await?, args).await,
        Command::Restart(args) => restart::run(&connect().await?, args).await,
        Command::Set(args) => set::run(&connect().await?, args).await,
        Command::Undo(args) => undo::run(&connect().await?, args).await,
        Command::SkipStep(args) => skip_step::run(&connect().await?, args).await,
        Command::Dashboard(args) => dashboard::run(&connect().await?, args).await,
        Command::Terminate(args) => terminate::run(&connect().await?, args).await,
        Command::Notifications(args) => notifications::run(&connect().await?, args).await,
    }
}

/// A connection to the cluster and where to print: what every online command needs.
#[derive(Clone)]
pub struct Context {
    /// The client.
    pub client: Client,
    /// The namespace of the rollout.
    pub namespace: String,
    /// The API server's URL, for "no cluster reachable".
    pub server: String,
    /// How standard output looks.
    pub style: Style,
}

impl Context {
    /// Loads the kubeconfig(s) as kubectl does and connects.
    pub async fn connect(global: &Global, style: Style) -> Result<Self, Error> {
        let mut config =
            sluice_kube::config_with(global.kubeconfig.as_deref(), &global.overrides())
                .await
                .map_err(Error::Config)?;
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("kubectl-sluice/", env!("CARGO_PKG_VERSION"))),
        ));
        let namespace = global
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config)
            .map_err(|e| Error::Config(anyhow::Error::new(e).context("creating the client")))?;
        Ok(Self {
            client,
            namespace,
            server,
            style,
        })
    }

    /// An API of a namespaced kind in the rollout's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A request, described for error messages.
    pub fn request<'a>(
        &'a self,
        verb: &'static str,
        resource: &'static str,
        kind: &'static str,
        name: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            verb,
            resource,
            kind,
            name,
            namespace: &self.namespace,
            server: &self.server,
        }
    }

    /// Reads the named rollout.
    pub async fn rollout(&self, name: &str) -> Result<Rollout, Error> {
        self.api::<Rollout>().get(name).await.map_err(|e| {
            self.request("get", "rollouts", "Rollout", Some(name))
                .error(e)
        })
    }

    /// Merge-patches the rollout's spec (the main resource).
    pub async fn patch_spec(&self, name: &str, patch: serde_json::Value) -> Result<Rollout, Error> {
        self.api::<Rollout>()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| {
                self.request("patch", "rollouts", "Rollout", Some(name))
                    .error(e)
            })
    }

    /// Applies a JSON patch (RFC 6902) to the rollout.
    pub async fn json_patch(&self, name: &str, patch: serde_json::Value) -> Result<Rollout, Error> {
        let patch = serde_json::from_value(patch)
            .map_err(|e| Error::Refused(format!("building the JSON patch: {e}")))?;
        self.api::<Rollout>()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Json::<()>(patch),
            )
            .await
            .map_err(|e| {
                self.request("patch", "rollouts", "Rollout", Some(name))
                    .error(e)
            })
    }

    /// Merge-patches the rollout's status subresource.
    pub async fn patch_status(
        &self,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<Rollout, Error> {
        self.api::<Rollout>()
            .patch_status(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| {
                self.request("patch", "rollouts/status", "Rollout", Some(name))
                    .error(e)
            })
    }
}

/// `value` as JSON or YAML text.
pub fn encode<T: Serialize>(value: &T, format: Output) -> Result<String, Error> {
    match format {
        Output::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| Error::Output(e.to_string())),
        Output::Yaml => serde_norway::to_string(value).map_err(|e| Error::Output(e.to_string())),
    }
}

/// Prints `text` to standard output, ending the process quietly when the reader went away
/// (`| head`).
pub fn print(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

#[cfg(test)]
mod help_tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                let help = sub
                    .get_after_help()
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                if !help.contains("Example") {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "kubectl sluice", &mut missing);
        assert!(missing.is_empty(), "no example in --help of: {missing:?}");
    }

    #[test]
    fn global_flags_are_accepted_after_the_command_as_kubectl_users_write_them() {
        let cli = Cli::try_parse_from([
            "kubectl-sluice",
            "promote",
            "shop",
            "-n",
            "prod",
            "--context",
            "staging",
            "--kubeconfig",
            "/a:/b",
        ])
        .expect("valid flags");
        assert_eq!(cli.global.namespace.as_deref(), Some("prod"));
        assert_eq!(cli.global.context.as_deref(), Some("staging"));
        assert_eq!(cli.global.kubeconfig.as_deref(), Some("/a:/b"));
    }

    #[test]
    fn kubectl_s_connection_flags_are_taken_by_every_command() {
        let cli = Cli::try_parse_from([
            "kubectl-sluice",
            "status",
            "shop",
            "--as",
            "jane",
            "--as-group",
            "devs",
            "--as-group",
            "ops",
            "--token",
            "s3cret",
            "-s",
            "https://10.0.0.1:6443",
            "--user",
            "admin",
            "--cluster",
            "prod",
            "--certificate-authority",
            "/ca.pem",
            "--client-certificate",
            "/c.pem",
            "--client-key",
            "/k.pem",
            "--insecure-skip-tls-verify=false",
            "--request-timeout",
            "1m",
        ])
        .expect("valid flags");
        let o = cli.global.overrides();
        assert_eq!(o.impersonate.as_deref(), Some("jane"));
        assert_eq!(o.impersonate_groups, ["devs", "ops"]);
        assert_eq!(o.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert_eq!(
            (o.user.as_deref(), o.cluster.as_deref()),
            (Some("admin"), Some("prod"))
        );
        assert_eq!(o.token, Some(sluice_kube::Token::new("s3cret")));
        assert_eq!(o.request_timeout, Some(std::time::Duration::from_secs(60)));
        assert!(!o.insecure_skip_tls_verify);
        assert!(
            !format!("{cli:?}").contains("s3cret"),
            "the token is never printed"
        );

        let cli = Cli::try_parse_from([
            "kubectl-sluice",
            "list",
            "rollouts",
            "--insecure-skip-tls-verify",
            "--request-timeout",
            "0",
        ])
        .expect("valid flags");
        assert!(cli.global.insecure_skip_tls_verify);
        assert_eq!(cli.global.overrides().request_timeout, None, "0: no limit");
    }

    #[test]
    fn request_timeouts_read_as_kubectl_reads_them() {
        use std::time::Duration;

        use super::parse_request_timeout as parse;
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        let e = parse("soon").expect_err("not a duration");
        assert!(e.contains("whole number of seconds"), "{e}");
    }
}
