//! Running Sluice for real: two replicas with leader election (a handover in the middle of a
//! rollout), installations kept apart by instance id, a clean SIGTERM, and writes the API refuses
//! (a quota, a name taken) reported on the rollout instead of retried in silence.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    coordination::v1::Lease,
    core::v1::{Event, ResourceQuota, Service},
};
use kube::{
    ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use sluice_api::{
    AnalysisRun, Rollout, RolloutConditionType, RolloutPhase, model::pod_template_hash,
};
use sluice_testkit::{
    Controller, TestNamespace,
    manifests::{self, status},
};

/// A canary Rollout of 4 pods with these metadata labels and steps.
fn rollout(name: &str, labels: Value, steps: Value) -> Rollout {
    let mut rollout = manifests::canary(name, 4, "example/app:1", steps);
    rollout["metadata"]["labels"] = labels;
    serde_json::from_value(rollout).expect("a Rollout")
}

fn healthy(r: Option<&Rollout>) -> bool {
    r.is_some_and(|r| {
        status(r).phase == Some(RolloutPhase::Healthy)
            && status(r).observed_generation == r.metadata.generation.map(|g| g.to_string())
    })
}

async fn leader_controller(ns: &TestNamespace) -> Controller {
    Controller::start_with(
        &ns.name,
        &sluice_testkit::kubeconfig(),
        &[
            "--leader-elect",
            "--leader-election-namespace",
            &ns.name,
            "--leader-election-lease-duration",
            "4s",
            "--leader-election-grace",
            "2s",
        ],
    )
    .await
}

/// The pid at the end of the Lease's holder identity (`<host>-<pid>` out of a cluster).
async fn holder_pid(ns: &TestNamespace) -> Option<u32> {
    let lease = ns
        .api::<Lease>()
        .get_opt("sluice-controller")
        .await
        .ok()??;
    lease
        .spec?
        .holder_identity?
        .rsplit('-')
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn of_two_replicas_one_reconciles_and_the_other_takes_over_mid_rollout() {
    let ns = TestNamespace::new("leader").await;
    sluice_testkit::install_crds(&ns.client).await;
    let mut first = leader_controller(&ns).await;
    let mut second = leader_controller(&ns).await;
    let leader = sluice_testkit::wait(
        async {
            loop {
                if let Some(pid) = holder_pid(&ns).await {
                    return Ok::<_, ()>(pid);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
        20,
        "a leader",
    )
    .await;
    let (leader, standby) = if leader == first.pid() {
        (&mut first, &mut second)
    } else {
        assert_eq!(leader, second.pid(), "the holder is one of the two");
        (&mut second, &mut first)
    };

    let rollouts = ns.api::<Rollout>();
    let steps =
        json!([{ "setWeight": 50 }, { "pause": { "duration": "6s" } }, { "setWeight": 75 }]);
    rollouts
        .create(&PostParams::default(), &rollout("app", json!({}), steps))
        .await
        .expect("creating the Rollout");
    ns.wait_for("app", 30, "Healthy", healthy).await;
    // The standby asks for the Lease and nothing else: no watch, no cache, no write.
    let standby_metrics = standby.get("/metrics").await.unwrap_or_default();
    let not_the_lease: Vec<&str> = standby_metrics
        .lines()
        .filter(|l| {
            l.starts_with("sluice_kube_requests_total") && !l.contains(r#"resource="leases""#)
        })
        .collect();
    assert!(
        not_the_lease.is_empty(),
        "the standby made API requests besides the Lease: {not_the_lease:?}"
    );
    let leader_metrics = leader.get("/metrics").await.unwrap_or_default();
    assert!(
        leader_metrics
            .contains(r#"sluice_kube_requests_total{verb="update",resource="rollouts/status""#),
        "the leader's status writes are counted:\n{leader_metrics}"
    );
    assert!(
        leader_metrics.contains(r#"sluice_reconcile_kube_requests_count{controller="rollout"}"#),
        "the leader's reconciles are counted:\n{leader_metrics}"
    );

    let patch = json!({ "spec": { "template": { "metadata": { "annotations": { "v": "2" } } } } });
    rollouts
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("a new version");
    let pausing = ns
        .wait_for("app", 30, "the timed pause", |r: Option<&Rollout>| {
            r.is_some_and(|r| !status(r).pause_conditions.is_empty())
        })
        .await;
    let pause_started = status(&pausing).pause_conditions[0].start_time.clone();

    // The leader dies in the middle of the pause; the standby takes over within the lease and
    // keeps the pause's start: the timer lives in the status, not in the process.
    leader.kill();
    let standby_pid = standby.pid();
    sluice_testkit::wait(
        async {
            while holder_pid(&ns).await != Some(standby_pid) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, ()>(())
        },
        20,
        "the standby holding the Lease",
    )
    .await;
    let during = rollouts.get("app").await.expect("the rollout");
    if let Some(pause) = status(&during).pause_conditions.first() {
        assert_eq!(pause.start_time, pause_started, "the pause restarted");
    }
    let done = ns
        .wait_for("app", 40, "Healthy under the new leader", healthy)
        .await;
    let s = status(&done);
    assert_eq!(s.current_step_index, Some(3));
    assert_eq!(s.stable_rs, s.current_pod_hash);
    let sets = ns
        .api::<k8s_openapi::api::apps::v1::ReplicaSet>()
        .list(&Default::default())
        .await
        .expect("ReplicaSets");
    assert_eq!(
        sets.items.len(),
        2,
        "one ReplicaSet per version, none twice"
    );
}

#[tokio::test]
async fn instance_ids_keep_two_installations_apart() {
    let ns = TestNamespace::new("instance-id").await;
    sluice_testkit::install_crds(&ns.client).await;
    let mut blue = Controller::start_with(
        &ns.name,
        &sluice_testkit::kubeconfig(),
        &["--instance-id", "blue"],
    )
    .await;
    let rollouts = ns.api::<Rollout>();
    let runs = ns.api::<AnalysisRun>();
    let label = json!({ "argo-rollouts.argoproj.io/controller-instance-id": "blue" });
    for (name, labels) in [("mine", label.clone()), ("unlabelled", json!({}))] {
        rollouts
            .create(
                &PostParams::default(),
                &rollout(name, labels.clone(), json!([])),
            )
            .await
            .expect("creating a Rollout");
        runs.create(&PostParams::default(), &analysis_run(name, labels))
            .await
            .expect("creating an AnalysisRun");
    }
    ns.wait_for("mine", 30, "the blue rollout Healthy", healthy)
        .await;
    ns.wait_for("mine", 30, "the blue AnalysisRun measured", measured)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let other = rollouts.get("unlabelled").await.expect("the other rollout");
    assert!(other.status.is_none(), "the blue controller touched it");
    let other = runs.get("unlabelled").await.expect("the other AnalysisRun");
    assert!(other.status.is_none(), "the blue controller measured it");

    // An installation without an instance id takes the unlabelled ones only: with the blue
    // controller gone, a new blue run waits for it.
    blue.kill();
    let _default = Controller::start(&ns.name).await;
    ns.wait_for("unlabelled", 30, "the unlabelled rollout Healthy", healthy)
        .await;
    ns.wait_for(
        "unlabelled",
        30,
        "the unlabelled AnalysisRun measured",
        measured,
    )
    .await;
    runs.create(&PostParams::default(), &analysis_run("later", label))
        .await
        .expect("creating an AnalysisRun");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = runs.get("later").await.expect("the later blue AnalysisRun");
    assert!(later.status.is_none(), "the default controller measured it");
}

/// A run of one web metric against a closed port: whoever measures it records an error.
fn analysis_run(name: &str, labels: Value) -> AnalysisRun {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "spec": { "metrics": [{
            "name": "up",
            "provider": { "web": { "url": "http://127.0.0.1:1/" } }
        }] }
    }))
    .expect("an AnalysisRun")
}

fn measured(run: Option<&AnalysisRun>) -> bool {
    run.and_then(|r| r.status.as_ref())
        .is_some_and(|s| s.metric_results.iter().any(|m| !m.measurements.is_empty()))
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_hands_the_lease_over_at_once() {
    let ns = TestNamespace::new("sigterm").await;
    sluice_testkit::install_crds(&ns.client).await;
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "unused" }, "spec": { "ports": [{ "port": 80 }] }
    }))
    .expect("a Service");
    ns.api::<Service>()
        .create(&PostParams::default(), &service)
        .await
        .expect("creating a Service");
    let mut only = leader_controller(&ns).await;
    sluice_testkit::wait(
        async {
            while holder_pid(&ns).await != Some(only.pid()) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<_, ()>(())
        },
        20,
        "the Lease held",
    )
    .await;
    assert!(only.terminate(), "sluice exits 0 on SIGTERM");
    let lease = ns
        .api::<Lease>()
        .get("sluice-controller")
        .await
        .expect("the Lease");
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert!(
        holder.as_deref().is_none_or(str::is_empty),
        "the Lease is released on shutdown, not left to expire: {holder:?}"
    );
    assert!(only.log_tail(5).contains("stopped"), "{}", only.log_tail(5));
}

fn replica_failure(r: &Rollout) -> Option<(String, String)> {
    status(r)
        .conditions
        .iter()
        .find(|c| c.type_ == RolloutConditionType::ReplicaFailure)
        .map(|c| (c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn a_replica_set_the_quota_refuses_is_reported_on_the_rollout_and_cleared_once_created() {
    let ns = TestNamespace::new("quota").await;
    sluice_testkit::install_crds(&ns.client).await;
    let _controller = Controller::start(&ns.name).await;
    let rollouts = ns.api::<Rollout>();
    rollouts
        .create(
            &PostParams::default(),
            &rollout("app", json!({}), json!([])),
        )
        .await
        .expect("creating the Rollout");
    ns.wait_for("app", 30, "the first version Healthy", healthy)
        .await;
    // Room for the one ReplicaSet there is, and no more.
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": { "name": "sets" },
        "spec": { "hard": { "count/replicasets.apps": "1" } }
    }))
    .expect("a ResourceQuota");
    let quotas = ns.api::<ResourceQuota>();
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("creating the quota");
    ns.wait_for(
        "sets",
        30,
        "the quota counted",
        |q: Option<&ResourceQuota>| {
            q.and_then(|q| q.status.as_ref())
                .and_then(|s| s.used.as_ref())
                .is_some_and(|u| u.contains_key("count/replicasets.apps"))
        },
    )
    .await;

    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "app", "image": "example/app:2" }
    ] } } } });
    rollouts
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("a new version");
    let refused = ns
        .wait_for("app", 30, "the refusal reported", |r: Option<&Rollout>| {
            r.is_some_and(|r| replica_failure(r).is_some())
        })
        .await;
    let (reason, message) = replica_failure(&refused).expect("a ReplicaFailure condition");
    assert_eq!(reason, "ReplicaSetCreateError");
    assert!(
        message.starts_with("Failed to create new replica set \"app-")
            && message.contains("exceeded quota"),
        "the API's own words: {message}"
    );
    let warned = sluice_testkit::wait(
        async {
            loop {
                let events = ns
                    .api::<Event>()
                    .list(&ListParams::default().fields("involvedObject.name=app"))
                    .await
                    .expect("listing events");
                if let Some(event) = events.items.into_iter().find(|e| {
                    e.reason.as_deref() == Some("ReplicaSetCreateError")
                        && e.type_.as_deref() == Some("Warning")
                }) {
                    return Ok::<_, ()>(event);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        },
        30,
        "a Warning event",
    )
    .await;
    assert!(
        warned
            .message
            .unwrap_or_default()
            .contains("exceeded quota"),
        "the event says why"
    );

    // The quota raised: the set is created on a later attempt, and the condition goes.
    quotas
        .patch(
            "sets",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "hard": { "count/replicasets.apps": "10" } } })),
        )
        .await
        .expect("raising the quota");
    let done = ns
        .wait_for("app", 90, "the new version Healthy", healthy)
        .await;
    assert_eq!(
        replica_failure(&done),
        None,
        "{:?}",
        status(&done).conditions
    );
}

#[tokio::test]
async fn a_replica_set_name_taken_by_another_owner_is_a_collision_and_the_next_name_is_used() {
    let ns = TestNamespace::new("collision").await;
    sluice_testkit::install_crds(&ns.client).await;
    // The Rollout first, with no controller running yet, to know the name it will want.
    let rollouts = ns.api::<Rollout>();
    let created = rollouts
        .create(
            &PostParams::default(),
            &rollout("app", json!({}), json!([])),
        )
        .await
        .expect("creating the Rollout");
    let template = created.spec.template.clone().expect("a template");
    let taken = format!("app-{}", pod_template_hash(&template, None));
    // Someone else's ReplicaSet (a leftover of another app) holds that name.
    let foreign: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": taken, "labels": { "app": "other" } },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": "other" } },
            "template": {
                "metadata": { "labels": { "app": "other" } },
                "spec": { "containers": [{ "name": "other", "image": "example/other:1" }] }
            }
        }
    }))
    .expect("a ReplicaSet");
    let sets = ns.api::<ReplicaSet>();
    sets.create(&PostParams::default(), &foreign)
        .await
        .expect("creating the foreign ReplicaSet");

    let _controller = Controller::start(&ns.name).await;
    let done = ns
        .wait_for("app", 60, "Healthy under another name", healthy)
        .await;
    assert_eq!(status(&done).collision_count, Some(1));
    let expected = pod_template_hash(&template, Some(1));
    assert_eq!(
        status(&done).current_pod_hash.as_deref(),
        Some(expected.as_str())
    );
    let ours = sets
        .get(&format!("app-{expected}"))
        .await
        .expect("the rollout's ReplicaSet under the next name");
    assert_eq!(
        ours.owner_references()[0].uid,
        created.uid().unwrap_or_default()
    );
    let theirs = sets.get(&taken).await.expect("the foreign ReplicaSet");
    assert!(
        theirs.owner_references().is_empty() && theirs.spec.and_then(|s| s.replicas) == Some(0),
        "the foreign set is left alone"
    );
}

/// A TCP proxy to the API server that can be frozen: while frozen, it accepts connections and
/// reads requests but passes nothing on, as an API server gone unreachable behind a silent
/// network does (requests hang; nothing fails fast).
struct FreezingProxy {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl FreezingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use tokio::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let port = listener.local_addr().expect("its address").port();
        let (frozen, thawed) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut thawed = thawed.clone();
                tokio::spawn(async move {
                    let _ = thawed.wait_for(|frozen| !*frozen).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(Self::pipe(client_read, server_write, thawed.clone()));
                    tokio::spawn(Self::pipe(server_read, client_write, thawed));
                });
            }
        });
        Self { port, frozen }
    }

    /// Copies `from` to `to`, holding every byte back while frozen.
    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut thawed: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if thawed.wait_for(|frozen| !*frozen).await.is_err()
                || to.write_all(&buf[..n]).await.is_err()
            {
                return;
            }
        }
    }

    fn freeze(&self) {
        let _ = self.frozen.send(true);
    }

    /// The test cluster's kubeconfig, pointed at this proxy.
    fn kubeconfig(&self, name: &str) -> std::path::PathBuf {
        let text =
            std::fs::read_to_string(sluice_testkit::kubeconfig()).expect("the test kubeconfig");
        let proxied = text.replace(
            "https://127.0.0.1:6443",
            &format!("https://127.0.0.1:{}", self.port),
        );
        assert_ne!(
            proxied, text,
            "the kubeconfig names the API server as expected"
        );
        let path = sluice_testkit::repo_root().join(format!("target/test-logs/{name}.kubeconfig"));
        std::fs::write(&path, proxied).expect("writing the kubeconfig");
        path
    }
}

/// Whether the process has exited (a zombie its parent has not reaped yet counts).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X']))
    })
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_steps_down_before_its_lease_expires() {
    let ns = TestNamespace::new("leader-cut-off").await;
    sluice_testkit::install_crds(&ns.client).await;
    let proxy = FreezingProxy::start(([127, 0, 0, 1], 6443).into()).await;
    let kubeconfig = proxy.kubeconfig(&ns.name);
    let mut leader = Controller::start_with(
        &ns.name,
        &kubeconfig,
        &[
            "--leader-elect",
            "--leader-election-namespace",
            &ns.name,
            "--leader-election-lease-duration",
            "4s",
            "--leader-election-grace",
            "2s",
        ],
    )
    .await;
    let pid = leader.pid();
    // Held, and known to be held: the Lease can name it a moment before the answer to its
    // acquiring write reaches it (a candidate cut off then never learns it led, and never acts).
    sluice_testkit::wait(
        async {
            while holder_pid(&ns).await != Some(pid)
                || !leader.log_tail(50).contains("became the leader")
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok::<_, ()>(())
        },
        20,
        "the Lease held",
    )
    .await;

    // Every request now hangs: the renewals too, so the Lease expires for the others.
    proxy.freeze();
    let cut_off = std::time::Instant::now();
    while !exited(pid) && cut_off.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = cut_off.elapsed();
    let log = leader.log_tail(20);
    assert!(
        exited(pid),
        "still running 15 s after losing the API server:\n{log}"
    );
    assert!(
        took < Duration::from_secs(4),
        "stepped down after {took:?}, later than the 4 s lease duration:\n{log}"
    );
    assert!(log.contains("lost the leader Lease"), "{log}");
    leader.kill();
}

#[tokio::test]
async fn an_analysis_run_name_taken_by_another_owner_is_not_taken_for_the_rollout_s_run() {
    let ns = TestNamespace::new("run-collision").await;
    sluice_testkit::install_crds(&ns.client).await;
    let _controller = Controller::start(&ns.name).await;
    let rollouts = ns.api::<Rollout>();
    // The analysis's only metric calls a port nobody listens on and tolerates no error: the
    // rollout's own run ends in phase Error, and the rollout aborts on it.
    ns.api::<sluice_api::AnalysisTemplate>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "unreachable" },
                "spec": {
                    "metrics": [{ "name": "m", "consecutiveErrorLimit": 0, "provider": { "web": {
                        "url": "http://127.0.0.1:9/"
                    } } }]
                }
            }))
            .expect("an AnalysisTemplate"),
        )
        .await
        .expect("creating the AnalysisTemplate");
    let steps = json!([{ "analysis": { "templates": [{ "templateName": "unreachable" }] } }]);
    let created = rollouts
        .create(&PostParams::default(), &rollout("app", json!({}), steps))
        .await
        .expect("creating the Rollout");
    ns.wait_for("app", 30, "the first version Healthy", healthy)
        .await;
    // The step's run of version 2 (revision 2, step 0) would be `app-<hash>-2-0`: a run of
    // someone else holds that name first.
    let mut template = created.spec.template.clone().expect("a template");
    template.spec.as_mut().expect("a pod spec").containers[0].image = Some("example/app:2".into());
    let taken = format!("app-{}-2-0", pod_template_hash(&template, None));
    let runs = ns.api::<AnalysisRun>();
    runs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": { "name": taken, "labels": { "app": "other" } },
            "spec": { "metrics": [] }
        }))
        .expect("an AnalysisRun"),
    )
    .await
    .expect("creating the foreign AnalysisRun");

    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "app", "image": "example/app:2" }
    ] } } } });
    rollouts
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("a new version");
    let aborted = ns
        .wait_for(
            "app",
            60,
            "aborted on its own run",
            |r: Option<&Rollout>| {
                r.is_some_and(|r| status(r).phase == Some(RolloutPhase::Degraded))
            },
        )
        .await;
    let recorded = status(&aborted)
        .canary
        .and_then(|c| c.current_step_analysis_run_status)
        .map(|r| r.name)
        .unwrap_or_default();
    assert_eq!(recorded, format!("{taken}.2"), "the next free name");
    let message = status(&aborted).message.unwrap_or_default();
    assert!(message.contains("consecutiveErrors"), "{message}");
    let ours = runs.get(&recorded).await.expect("the rollout's run");
    assert_eq!(
        ours.owner_references()[0].uid,
        created.uid().unwrap_or_default()
    );
    let theirs = runs.get(&taken).await.expect("the foreign run");
    assert!(
        theirs.owner_references().is_empty()
            && theirs.labels().get("app").map(String::as_str) == Some("other"),
        "the foreign run is left alone: {theirs:?}"
    );
}
