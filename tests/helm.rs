//! The Helm chart with the real Helm and the local cluster: it lints, the API server accepts what
//! it renders, an install runs, and its RBAC is enough for the controller's work and no more
//! (the controller runs out of the cluster with the chart's ServiceAccount token).

use std::{collections::BTreeMap, path::PathBuf, process::Stdio};

use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount},
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use sluice_api::{Rollout, RolloutPhase};
use sluice_testkit::{Controller, TestNamespace, helm, kubectl, repo_root, run_ok};

fn chart() -> PathBuf {
    repo_root().join("charts/sluice")
}

/// `helm template` of the chart into `namespace` with `sets`.
fn template(release: &str, namespace: &str, sets: &[&str]) -> String {
    let mut cmd = helm();
    cmd.args(["template", release]).arg(chart()).args([
        "--namespace",
        namespace,
        "--kube-version",
        "1.35.8",
    ]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    run_ok(&mut cmd)
}

/// Sends `manifests` to the API server as a server-side dry run.
fn server_dry_run(manifests: &str) {
    let mut child = kubectl()
        .args(["apply", "--dry-run=server", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting kubectl");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifests.as_bytes())
        .expect("writing the manifests");
    let output = child.wait_with_output().expect("kubectl apply");
    assert!(
        output.status.success(),
        "the API server rejected the chart's output:\n{}\n{manifests}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Uninstalls a release when dropped (its ClusterRoles outlive the namespace otherwise).
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm()
            .args(["uninstall", &self.name, "--namespace", &self.namespace])
            .output();
    }
}

#[tokio::test]
async fn the_chart_lints_and_the_api_server_accepts_what_it_renders() {
    let ns = TestNamespace::new("helm-render").await;
    sluice_testkit::install_crds(&ns.client).await;
    let value_sets: [&[&str]; 4] = [
        &[],
        &["controller.namespaced=true"],
        &[
            "controller.instanceID=blue",
            "controller.networkPolicy.enabled=true",
            "controller.replicas=1",
        ],
        &[
            "controller.leaderElection.enabled=false",
            "rbac.clusterAnalysisTemplates=false",
            "controller.namespaced=true",
        ],
    ];
    for sets in value_sets {
        let mut lint = helm();
        lint.args(["lint", "--strict"]).arg(chart());
        for set in sets {
            lint.args(["--set", set]);
        }
        run_ok(&mut lint);
        // The release name is unique per test run: cluster-scoped names never collide.
        let rendered = template(&ns.name, &ns.name, sets);
        server_dry_run(&rendered);
    }

    // Namespaced mode: no cluster-wide rule but the read of ClusterAnalysisTemplates.
    let namespaced = template(&ns.name, &ns.name, &["controller.namespaced=true"]);
    let cluster_roles: Vec<&str> = namespaced
        .split("\n---")
        .filter(|doc| doc.lines().any(|l| l == "kind: ClusterRole"))
        .collect();
    assert_eq!(cluster_roles.len(), 1, "{namespaced}");
    assert!(cluster_roles[0].contains("clusteranalysistemplates"));
    assert!(!cluster_roles[0].contains("replicasets"));

    // The container runs as the hardening defaults say.
    let rendered = template(&ns.name, &ns.name, &[]);
    for expected in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "- ALL",
        "type: RuntimeDefault",
    ] {
        assert!(
            rendered.contains(expected),
            "{expected} missing:\n{rendered}"
        );
    }
    let monitor = template(
        &ns.name,
        &ns.name,
        &["controller.metrics.serviceMonitor.enabled=true"],
    );
    assert!(monitor.contains("kind: ServiceMonitor"));
}

/// A kubeconfig for the ServiceAccount `account` of `namespace`, from a fresh token.
async fn service_account_kubeconfig(ns: &TestNamespace, account: &str) -> PathBuf {
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": { "audiences": [], "expirationSeconds": 3600 }
    }))
    .expect("a TokenRequest");
    let token = ns
        .api::<ServiceAccount>()
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .expect("a token for the chart's ServiceAccount")
        .status
        .expect("a token")
        .token;
    sluice_testkit::kubeconfig_with_token(&token, &format!("{}-{account}", ns.name))
}

/// The rules of the rendered `kind` (ClusterRole or Role) named `name`: `group/resource` (the
/// core group as ``) to its verbs, sorted.
fn rules(rendered: &str, kind: &str, name: &str) -> BTreeMap<String, Vec<String>> {
    let doc = rendered
        .split("\n---")
        .filter_map(|doc| serde_norway::from_str::<serde_json::Value>(doc).ok())
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in:\n{rendered}"));
    let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in doc["rules"].as_array().expect("rules") {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                let verbs = rules.entry(format!("{group}/{resource}")).or_default();
                verbs.extend(strings("verbs"));
                verbs.sort();
                verbs.dedup();
            }
        }
    }
    rules
}

/// Exactly the verbs the controller's code uses, per resource: a watcher lists and watches, a
/// status write is an update (`replace_status`), ReplicaSets and AnalysisRuns are patched and
/// never updated, and events go through events.k8s.io only (kube's Recorder).
const CONTROLLER_VERBS: &[(&str, &[&str])] = &[
    ("/pods", &["list", "patch"]),
    ("/pods/eviction", &["create"]),
    ("/secrets", &["get"]),
    (
        "/services",
        &["create", "delete", "get", "list", "patch", "watch"],
    ),
    ("apps/deployments", &["get", "list", "patch", "watch"]),
    (
        "apps/replicasets",
        &["create", "delete", "get", "list", "patch", "watch"],
    ),
    (
        "argoproj.io/analysisruns",
        &["create", "delete", "get", "list", "patch", "watch"],
    ),
    ("argoproj.io/analysisruns/finalizers", &["update"]),
    ("argoproj.io/analysisruns/status", &["patch", "update"]),
    ("argoproj.io/analysistemplates", &["get", "list", "watch"]),
    (
        "argoproj.io/experiments",
        &["create", "get", "list", "patch", "watch"],
    ),
    ("argoproj.io/experiments/finalizers", &["update"]),
    ("argoproj.io/experiments/status", &["patch", "update"]),
    ("argoproj.io/rollouts", &["list", "watch"]),
    ("argoproj.io/rollouts/finalizers", &["update"]),
    ("argoproj.io/rollouts/status", &["update"]),
    ("batch/jobs", &["create", "delete", "get", "list", "watch"]),
    ("events.k8s.io/events", &["create", "patch"]),
    (
        "apisix.apache.org/apisixroutes",
        &["create", "delete", "get", "update"],
    ),
    ("gateway.networking.k8s.io/grpcroutes", &["get", "update"]),
    (
        "getambassador.io/mappings",
        &["create", "delete", "get", "update"],
    ),
    ("gateway.networking.k8s.io/httproutes", &["get", "update"]),
    ("gateway.networking.k8s.io/tcproutes", &["get", "update"]),
    ("networking.istio.io/destinationrules", &["get", "update"]),
    ("networking.istio.io/virtualservices", &["get", "update"]),
    ("networking.k8s.io/ingresses", &["create", "get", "update"]),
    (
        "split.smi-spec.io/trafficsplits",
        &["create", "get", "update"],
    ),
    ("traefik.io/traefikservices", &["get", "update"]),
];

fn expected(extra: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    CONTROLLER_VERBS
        .iter()
        .chain(extra)
        .map(|(resource, verbs)| {
            let mut verbs: Vec<String> = verbs.iter().map(|v| v.to_string()).collect();
            verbs.sort();
            (resource.to_string(), verbs)
        })
        .collect()
}

#[test]
fn the_chart_grants_exactly_the_verbs_the_controller_uses() {
    let cluster = template("sluice", "sluice", &[]);
    assert_eq!(
        rules(&cluster, "ClusterRole", "sluice"),
        expected(&[(
            "argoproj.io/clusteranalysistemplates",
            &["get", "list", "watch"]
        )]),
    );
    assert_eq!(
        rules(&cluster, "Role", "sluice-leader-election"),
        BTreeMap::from([(
            "coordination.k8s.io/leases".to_string(),
            vec!["create".to_string(), "get".to_string(), "patch".to_string()],
        )]),
        "kube-lease-manager creates the Lease, reads it, and patches it (apply and strategic)"
    );
    assert_eq!(
        rules(&cluster, "Role", "sluice-notifications"),
        BTreeMap::from([
            (
                "/configmaps".to_string(),
                ["get", "list", "watch"].map(String::from).to_vec()
            ),
            (
                "/secrets".to_string(),
                ["get", "list", "watch"].map(String::from).to_vec()
            ),
        ]),
        "the notification ConfigMap and Secret are read and watched, by name"
    );
    let namespaced = template("sluice", "sluice", &["controller.namespaced=true"]);
    assert_eq!(rules(&namespaced, "Role", "sluice"), expected(&[]));
    assert_eq!(
        rules(&namespaced, "ClusterRole", "sluice-cluster-templates"),
        BTreeMap::from([(
            "argoproj.io/clusteranalysistemplates".to_string(),
            vec!["get".to_string(), "list".to_string(), "watch".to_string()]
        )]),
    );
}

/// The controller's args as the chart renders them with `sets`.
fn controller_args(sets: &[&str]) -> Vec<String> {
    let rendered = template("sluice", "sluice", sets);
    rendered
        .split("\n---")
        .filter_map(|doc| serde_norway::from_str::<Deployment>(doc).ok())
        .find(|d| d.metadata.name.as_deref() == Some("sluice"))
        .and_then(|d| d.spec)
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].args.clone().unwrap_or_default())
        .expect("the controller's args")
}

#[test]
fn web_metric_hosts_are_open_by_default_and_limited_to_the_listed_ones_when_set() {
    let flag = "--web-metric-allowed-hosts";
    let args = controller_args(&[]);
    assert!(
        !args.iter().any(|a| a.starts_with(flag)),
        "no list: any host, as in Argo Rollouts: {args:?}"
    );
    let args = controller_args(&[
        "controller.webMetricAllowedHosts={prometheus.monitoring.svc,*.example.com}",
    ]);
    let passed: Vec<&String> = args.iter().filter(|a| a.starts_with(flag)).collect();
    assert_eq!(
        passed,
        [&format!("{flag}=prometheus.monitoring.svc,*.example.com")],
        "{args:?}"
    );
}

#[tokio::test]
async fn an_installed_chart_grants_enough_for_a_canary_and_nothing_more() {
    let system = TestNamespace::new("helm-system").await;
    sluice_testkit::install_crds(&system.client).await;
    let release = Release {
        name: system.name.clone(),
        namespace: system.name.clone(),
    };
    run_ok(helm().args(["install", &release.name]).arg(chart()).args([
        "--namespace",
        &system.name,
        "--skip-crds",
        "--wait",
        "--timeout",
        "90s",
    ]));
    // kwok plays the controller's pods: the Deployment becomes available.
    let deployment = system
        .api::<Deployment>()
        .get(&release.name)
        .await
        .expect("the chart's Deployment");
    assert_eq!(
        deployment.status.and_then(|s| s.available_replicas),
        Some(2)
    );

    // The controller itself, out of the cluster, with nothing but the chart's ServiceAccount.
    let identity = service_account_kubeconfig(&system, &release.name).await;
    let apps = TestNamespace::new("helm-apps").await;
    for name in ["app-stable", "app-canary"] {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "selector": { "app": "app" }, "ports": [{ "port": 80 }] }
        }))
        .expect("a Service");
        apps.api::<Service>()
            .create(&PostParams::default(), &service)
            .await
            .expect("creating a Service");
    }
    // With leader election as the chart runs it: the Lease in the release's namespace.
    let _controller = Controller::start_with(
        &apps.name,
        &identity,
        &[
            "--leader-elect",
            "--leader-election-namespace",
            &system.name,
        ],
    )
    .await;
    let rollouts = apps.api::<Rollout>();
    let rollout: Rollout = serde_json::from_value(json!({
        "metadata": { "name": "app" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "app" } },
            "template": {
                "metadata": { "labels": { "app": "app" } },
                "spec": { "containers": [{ "name": "app", "image": "example/app:1" }] }
            },
            "strategy": { "canary": {
                "canaryService": "app-canary",
                "stableService": "app-stable",
                "steps": [{ "setWeight": 50 }, { "pause": {} }]
            } }
        }
    }))
    .expect("a Rollout");
    rollouts
        .create(&PostParams::default(), &rollout)
        .await
        .expect("creating the Rollout");
    let healthy = |r: Option<&Rollout>| {
        r.and_then(|r| r.status.as_ref())
            .is_some_and(|s| s.phase == Some(RolloutPhase::Healthy))
    };
    apps.wait_for("app", 30, "Healthy under the chart's RBAC", healthy)
        .await;
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": { "v": "2" } } } } });
    rollouts
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("a new version");
    apps.wait_for(
        "app",
        30,
        "paused at the canary step",
        |r: Option<&Rollout>| {
            r.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.phase == Some(RolloutPhase::Paused))
        },
    )
    .await;
    rollouts
        .patch_status(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "pauseConditions": null } })),
        )
        .await
        .expect("promoting");
    apps.wait_for("app", 30, "Healthy after promotion", healthy)
        .await;
    // A restart: the pods are listed and evicted under the same identity.
    let at = sluice_testkit::restart_time().await;
    rollouts
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "restartAt": at.to_string() } })),
        )
        .await
        .expect("asking for a restart");
    apps.wait_for("app", 60, "the restart done", |r: Option<&Rollout>| {
        r.and_then(|r| r.status.as_ref())
            .and_then(|s| s.restarted_at.as_ref())
            .is_some_and(|t| t.0 >= at)
    })
    .await;
    let events = apps
        .api::<k8s_openapi::api::core::v1::Event>()
        .list(&ListParams::default().fields("involvedObject.kind=Rollout"))
        .await
        .expect("events");
    assert!(
        !events.items.is_empty(),
        "the controller could record events"
    );

    // And no more: what the controller never does is forbidden to it.
    let as_controller = sluice_testkit::client_for(&identity).await;
    let forbidden = |result: Result<(), kube::Error>, what: &str| match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} should be forbidden to the controller: {other:?}"),
    };
    let config_map: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "x" } })).expect("a ConfigMap");
    forbidden(
        Api::<ConfigMap>::namespaced(as_controller.clone(), &apps.name)
            .create(&PostParams::default(), &config_map)
            .await
            .map(drop),
        "creating a ConfigMap",
    );
    forbidden(
        Api::<Secret>::namespaced(as_controller.clone(), &apps.name)
            .list(&ListParams::default())
            .await
            .map(drop),
        "listing Secrets",
    );
    // The notification configuration is watched by name; nothing else in the release's
    // namespace is listed.
    let by_name = |name: &str| ListParams::default().fields(&format!("metadata.name={name}"));
    for (what, listed) in [
        (
            "the notification ConfigMap",
            Api::<ConfigMap>::namespaced(as_controller.clone(), &system.name)
                .list(&by_name("argo-rollouts-notification-configmap"))
                .await
                .map(drop),
        ),
        (
            "the notification Secret",
            Api::<Secret>::namespaced(as_controller.clone(), &system.name)
                .list(&by_name("argo-rollouts-notification-secret"))
                .await
                .map(drop),
        ),
    ] {
        assert!(listed.is_ok(), "listing {what} by name: {listed:?}");
    }
    forbidden(
        Api::<Secret>::namespaced(as_controller.clone(), &system.name)
            .list(&ListParams::default())
            .await
            .map(drop),
        "listing every Secret of the release's namespace",
    );
    forbidden(
        Api::<Deployment>::namespaced(as_controller.clone(), &system.name)
            .delete(&release.name, &Default::default())
            .await
            .map(drop),
        "deleting a Deployment",
    );
    // Pods are evicted (which honours PodDisruptionBudgets), never deleted.
    forbidden(
        Api::<Pod>::namespaced(as_controller, &apps.name)
            .delete("any", &Default::default())
            .await
            .map(drop),
        "deleting a Pod",
    );
}

#[tokio::test]
async fn the_binary_understands_every_flag_the_chart_passes() {
    let ns = TestNamespace::new("helm-args").await;
    sluice_testkit::install_crds(&ns.client).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let rendered = template(
        &ns.name,
        &ns.name,
        &[
            &format!("controller.metrics.port={port}"),
            &format!("controller.watchNamespace={}", ns.name),
            "controller.instanceID=blue",
            "controller.webMetricAllowedHosts={prometheus.monitoring.svc,*.example.com}",
        ],
    );
    let deployment = rendered
        .split("\n---")
        .filter_map(|doc| serde_norway::from_str::<Deployment>(doc).ok())
        .find(|d| d.metadata.name.as_deref() == Some(ns.name.as_str()))
        .expect("the chart renders a Deployment");
    let args = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].args.clone().unwrap_or_default())
        .expect("the controller's args");
    assert!(args.iter().any(|a| a == "--leader-elect"), "{args:?}");
    assert!(
        args.iter()
            .any(|a| a.starts_with("--web-metric-allowed-hosts=")),
        "{args:?}"
    );
    // The chart's args exactly, as the pod would run them (POD_NAMESPACE from the downward API).
    let log = repo_root().join(format!("target/test-logs/{}.log", ns.name));
    std::fs::create_dir_all(log.parent().expect("a directory")).expect("target/test-logs");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--kubeconfig")
        .arg(sluice_testkit::kubeconfig())
        .args(&args)
        .env("POD_NAME", "sluice-0")
        .env("POD_NAMESPACE", &ns.name)
        .stdout(std::fs::File::create(&log).expect("a log file"))
        .stderr(std::fs::File::create(log.with_extension("err")).expect("a log file"))
        .spawn()
        .expect("starting sluice");
    let ready = async {
        loop {
            if let Some(status) = child.try_wait().expect("polling sluice") {
                return Err(format!(
                    "sluice exited ({status}) with the chart's args {args:?}:\n{}",
                    std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
                ));
            }
            if readyz(port).await {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    sluice_testkit::wait(ready, 30, "sluice ready with the chart's args").await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("waiting for sluice");
    assert!(status.success(), "sluice did not stop cleanly: {status}");
}

/// Whether `/readyz` on 127.0.0.1:`port` answers 200.
async fn readyz(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.starts_with("HTTP/1.1 200")
}
