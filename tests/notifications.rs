//! Notifications end to end, as an Argo Rollouts user configures them: the
//! `argo-rollouts-notification-configmap` and `-secret` in the controller's namespace, a Rollout
//! subscribing through `notifications.argoproj.io/subscribe.<trigger>.<service>` annotations and
//! a default subscription, and real receivers the test controls (an HTTP server answering as a
//! webhook, Slack, Teams and GitHub do; an SMTP server). One scenario, several assertions:
//! each notification arrives once with its rendered fields, a controller killed mid-rollout does
//! not send again what it sent, a receiver failing twice gets the notification on a retry
//! without slowing the rollout, the metrics count it, and `kubectl sluice notifications
//! template notify` sends through the same configuration.
#[path = "notifications/receivers.rs"]
mod receivers;

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use receivers::{FLAKY_FAILURES, Receivers};
use serde_json::{Value, json};
use sluice_api::{Rollout, RolloutPhase};
use sluice_testkit::{
    Controller, TestNamespace, binaries,
    manifests::{self, image_patch, observed, status},
};

/// The configuration, as a user writes it.
fn config_map(r: &Receivers) -> Value {
    let completed = r##"
message: Rollout {{.rollout.metadata.name}} has been completed with {{range .rollout.spec.template.spec.containers}}{{.image}}{{end}}.
email:
  subject: Rollout {{.rollout.metadata.name}} has been completed.
slack:
  attachments: |
    [{"title": "{{.rollout.metadata.name}}", "color": "#18be52", "fields": [{"title": "Strategy", "value": "{{if .rollout.spec.strategy.blueGreen}}BlueGreen{{end}}{{if .rollout.spec.strategy.canary}}Canary{{end}}"}]}]
github:
  repoURLPath: '{{index .rollout.metadata.annotations "example.com/repo"}}'
  revisionPath: '{{index .rollout.metadata.annotations "example.com/sha"}}'
  status:
    state: success
    label: continuous-delivery/{{.rollout.metadata.name}}
    targetURL: https://example.com/rollouts/{{.rollout.metadata.name}}
"##;
    let step = r##"
message: step
webhook:
  hook:
    method: POST
    path: /steps/{{.rollout.metadata.name}}
    body: '{"rollout": "{{.rollout.metadata.name}}", "step": {{.rollout.status.currentStepIndex}}, "image": "{{range .rollout.spec.template.spec.containers}}{{.image}}{{end}}"}'
"##;
    let aborted = r##"
message: Rollout {{.rollout.metadata.name}} has been aborted.
teams:
  title: Aborted {{.rollout.metadata.name}}
  themeColor: "#E01E5A"
"##;
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "argo-rollouts-notification-configmap" },
        "data": {
            "trigger.on-rollout-step-completed": "- send: [step]",
            "trigger.on-rollout-completed": "- send: [completed]",
            "trigger.on-rollout-aborted": "- send: [aborted]",
            "template.step": step,
            "template.completed": completed,
            "template.aborted": aborted,
            "service.webhook.hook": format!(
                "url: {}\nheaders:\n- name: X-Token\n  value: $hook-token\nbasicAuth:\n  username: sluice\n  password: $hook-password\n",
                r.url("/hook")
            ),
            "service.webhook.flaky": format!("url: {}", r.url("/flaky")),
            "service.slack": format!("token: $slack-token\nusername: sluice\napiURL: {}", r.url("/slack/api/")),
            "service.teams": format!("recipientUrls:\n  ops: {}", r.url("/teams/ops")),
            "service.email": format!("host: 127.0.0.1\nport: {}\nfrom: sluice@example.com", r.smtp.port()),
            "service.github": format!(
                "appID: 12345\ninstallationID: 67890\nprivateKey: $github-privateKey\nenterpriseBaseURL: {}",
                r.url("/api/v3")
            ),
            "subscriptions": "- recipients: [flaky]\n  triggers: [on-rollout-completed]",
            "template.broken": "message: '{{ .rollout.metadata.name'",
        },
    })
}

/// A GitHub App's private key, made for the test by openssl (which the cluster's setup needs).
fn private_key() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("running openssl");
    assert!(out.status.success(), "openssl genrsa: {out:?}");
    String::from_utf8(out.stdout).expect("PEM")
}

fn rollout() -> Value {
    let mut rollout = manifests::canary(
        "app",
        1,
        "example/app:1",
        json!([{ "setWeight": 50 }, { "pause": { "duration": "4s" } }]),
    );
    rollout["metadata"]["annotations"] = json!({
        "notifications.argoproj.io/subscribe.on-rollout-step-completed.hook": "",
        "notifications.argoproj.io/subscribe.on-rollout-completed.slack": "deploys",
        "notifications.argoproj.io/subscribe.on-rollout-completed.email": "ops@example.com",
        "notifications.argoproj.io/subscribe.on-rollout-completed.github": "",
        "notifications.argoproj.io/subscribe.on-rollout-aborted.teams": "ops",
        "notifications.argoproj.io/subscribe.on-rollout-completed.pigeon": "coo",
        "example.com/repo": "https://github.com/example/shop.git",
        "example.com/sha": "0123456789abcdef0123456789abcdef01234567",
    });
    rollout
}

/// The sample `name{labels} value` of a scrape whose labels include all of `labels`.
fn sample(scrape: &str, name: &str, labels: &[&str]) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn argo_notification_configuration_delivers_each_event_once_through_every_service() {
    let receivers = Receivers::start();
    let ns = TestNamespace::new("notifications").await;
    sluice_testkit::install_crds(&ns.client).await;
    ns.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(config_map(&receivers)).expect("a ConfigMap"),
        )
        .await
        .expect("creating the ConfigMap");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "argo-rollouts-notification-secret" },
        "stringData": {
            "hook-token": "t0ken-hook",
            "hook-password": "pa55word",
            "slack-token": "xoxb-test-token",
            "github-privateKey": private_key(),
        },
    }))
    .expect("a Secret");
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the Secret");
    let kubeconfig = sluice_testkit::kubeconfig();
    let env = [("POD_NAMESPACE", ns.name.as_str())];
    let mut controller = Controller::start_with_env(&ns.name, &kubeconfig, &[], &env).await;
    let rollouts = ns.api::<Rollout>();
    rollouts
        .create(
            &PostParams::default(),
            &serde_json::from_value(rollout()).expect("a Rollout"),
        )
        .await
        .expect("creating the Rollout");
    ns.wait_for(
        "app",
        60,
        "the first revision Healthy",
        |r: Option<&Rollout>| r.is_some_and(|r| healthy_on(r, "example/app:1")),
    )
    .await;

    // An update: two steps, each notified once to the webhook.
    rollouts
        .patch(
            "app",
            &PatchParams::default(),
            &image_patch("example/app:2"),
        )
        .await
        .expect("updating the image");
    let steps_of = |image: &str| {
        let image = image.to_owned();
        move |r: &Receivers| -> Vec<Value> {
            r.requests("/hook/steps/")
                .iter()
                .filter_map(|q| serde_json::from_str::<Value>(&q.body).ok())
                .filter(|b| b["image"] == image.as_str())
                .collect()
        }
    };
    let v2_steps = steps_of("example/app:2");
    receivers
        .wait_until(60, "the first step's webhook", |r| !v2_steps(r).is_empty())
        .await;
    let first = receivers
        .requests("/hook/steps/")
        .into_iter()
        .find(|q| q.body.contains("example/app:2"))
        .expect("the first step's request");
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/hook/steps/app");
    assert_eq!(
        first.headers.get("x-token").map(String::as_str),
        Some("t0ken-hook")
    );
    assert_eq!(
        first.headers.get("authorization").map(String::as_str),
        Some("Basic c2x1aWNlOnBhNTV3b3Jk")
    );

    // Killed during the pause, as a crash or an eviction ends it; a new process takes over.
    controller.kill();
    let mut controller = Controller::start_with_env(&ns.name, &kubeconfig, &[], &env).await;
    let done = ns
        .wait_for("app", 60, "the update Healthy", |r: Option<&Rollout>| {
            r.is_some_and(|r| healthy_on(r, "example/app:2"))
        })
        .await;
    let completed_at = SystemTime::now();
    let v2 = |r: &Receivers| {
        r.requests("/flaky")
            .iter()
            .any(|q| q.status == 200 && q.body.contains("example/app:2"))
    };
    receivers
        .wait_until(30, "every notification of the completed update", |r| {
            v2(r)
                && v2_steps(r).len() >= 2
                && !r.requests("/slack/").is_empty()
                && !r.requests("/api/v3/repos/").is_empty()
                && !r.mails().is_empty()
        })
        .await;
    assert_eq!(status(&done).current_step_index, Some(2));

    // Each step once, across the restart.
    let steps: Vec<i64> = v2_steps(&receivers)
        .iter()
        .filter_map(|b| b["step"].as_i64())
        .collect();
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        steps.len(),
        "a step notified twice: {steps:?}"
    );
    assert_eq!(sorted, [1, 2], "{steps:?}");

    // Slack: chat.postMessage with the token, the channel, the text and the attachments.
    let slack: Vec<_> = receivers
        .requests("/slack/")
        .into_iter()
        .filter(|q| q.body.contains("example%2Fapp%3A2"))
        .collect();
    assert_eq!(slack.len(), 1, "{slack:#?}");
    assert_eq!(slack[0].path, "/slack/api/chat.postMessage");
    assert_eq!(
        slack[0].headers.get("authorization").map(String::as_str),
        Some("Bearer xoxb-test-token")
    );
    let form: std::collections::BTreeMap<String, String> =
        url_form(&slack[0].body).into_iter().collect();
    assert_eq!(form["channel"], "deploys");
    assert_eq!(
        form["text"],
        "Rollout app has been completed with example/app:2."
    );
    assert_eq!(form["username"], "sluice");
    let attachments: Value = serde_json::from_str(&form["attachments"]).expect("JSON");
    assert_eq!(attachments[0]["fields"][0]["value"], "Canary");

    // Email, once, with the subject and the message.
    let mails: Vec<_> = receivers
        .mails()
        .into_iter()
        .filter(|m| m.data.contains("example/app:2"))
        .collect();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].from, "<sluice@example.com>");
    assert_eq!(mails[0].to, ["<ops@example.com>"]);
    assert!(
        mails[0]
            .data
            .contains("Subject: Rollout app has been completed."),
        "{}",
        mails[0].data
    );

    // GitHub: an installation token bought with the App's JWT, then the commit status.
    let tokens = receivers.requests("/api/v3/app/installations/67890/access_tokens");
    assert!(!tokens.is_empty());
    let jwt = tokens[0].headers["authorization"]
        .strip_prefix("Bearer ")
        .expect("a bearer JWT");
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let statuses = receivers
        .requests("/api/v3/repos/example/shop/statuses/0123456789abcdef0123456789abcdef01234567");
    let v2_status: Vec<_> = statuses
        .iter()
        .filter(|q| q.body.contains("example/app:2"))
        .collect();
    assert_eq!(v2_status.len(), 1, "{statuses:#?}");
    assert_eq!(
        v2_status[0]
            .headers
            .get("authorization")
            .map(String::as_str),
        Some("token ghs_installation")
    );
    let body: Value = serde_json::from_str(&v2_status[0].body).expect("JSON");
    assert_eq!(body["state"], "success");
    assert_eq!(body["context"], "continuous-delivery/app");
    assert_eq!(body["target_url"], "https://example.com/rollouts/app");

    // The default subscription's receiver failed twice; the retry delivered it after the
    // rollout had completed: the rollout did not wait for it.
    let flaky: Vec<_> = receivers
        .requests("/flaky")
        .into_iter()
        .filter(|q| q.body.contains("example/app:2"))
        .collect();
    assert_eq!(
        flaky.iter().map(|q| q.status).collect::<Vec<_>>(),
        [500, 500, 200],
        "{flaky:#?}"
    );
    assert!(
        flaky[2].at > completed_at,
        "delivered after the rollout completed"
    );

    // The metrics count what the new process sent, and every failed attempt. A receiver has
    // the request before the controller has its answer: the counts may lag a moment.
    let labels = [
        r#"name="app""#,
        r#"type="Normal""#,
        r#"reason="RolloutCompleted""#,
    ];
    let counts = |scrape: &str| {
        (
            sample(scrape, "notification_send_success", &labels),
            sample(scrape, "notification_send_error", &labels),
        )
    };
    let want = (Some(4.0), Some(f64::from(FLAKY_FAILURES)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut scrape = controller.get("/metrics").await.unwrap_or_default();
    while counts(&scrape) != want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        scrape = controller.get("/metrics").await.unwrap_or_default();
    }
    assert_eq!(counts(&scrape), want, "{scrape}");

    // The figure: from each step's event (recorded after its status write) to the webhook.
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing events");
    let step_times: Vec<SystemTime> = events
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("RolloutStepCompleted"))
        .filter_map(|e| {
            let micros = e.event_time.as_ref()?.0.as_microsecond();
            Some(SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).ok()?))
        })
        .collect();
    for request in receivers.requests("/hook/steps/") {
        if let Some(delay) = step_times
            .iter()
            .filter_map(|t| request.at.duration_since(*t).ok())
            .min()
        {
            println!("notification delay (step event -> webhook receiver): {delay:?}");
        }
    }

    // An aborted update: Teams hears of it, with the title the configuration says now (a change
    // applies without a restart).
    let retitled = r##"
message: Rollout {{.rollout.metadata.name}} has been aborted.
teams:
  title: Stopped {{.rollout.metadata.name}}
  themeColor: "#E01E5A"
"##;
    ns.api::<ConfigMap>()
        .patch(
            "argo-rollouts-notification-configmap",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "template.aborted": retitled } })),
        )
        .await
        .expect("changing the abort's template");
    rollouts
        .patch(
            "app",
            &PatchParams::default(),
            &image_patch("example/app:3"),
        )
        .await
        .expect("updating the image");
    let v3_steps = steps_of("example/app:3");
    receivers
        .wait_until(60, "the third revision's first step", |r| {
            !v3_steps(r).is_empty()
        })
        .await;
    rollouts
        .patch_status(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "abort": true } })),
        )
        .await
        .expect("aborting");
    receivers
        .wait_until(60, "the Teams card of the abort", |r| {
            !r.requests("/teams/").is_empty()
        })
        .await;
    let teams = receivers.requests("/teams/ops");
    assert_eq!(teams.len(), 1, "{teams:#?}");
    let card: Value = serde_json::from_str(&teams[0].body).expect("JSON");
    assert_eq!(card["@type"], "MessageCard");
    assert_eq!(card["title"], "Stopped app", "the template as changed");
    assert_eq!(card["text"], "Rollout app has been aborted.");

    // The plugin sends a template through the same configuration.
    let before = receivers.requests("/hook/steps/").len();
    let plugin = binaries::workspace_binary("kubectl-sluice", "kubectl-sluice");
    let out = tokio::process::Command::new(plugin)
        .args([
            "notifications",
            "template",
            "notify",
            "step",
            "app",
            "--recipient",
            "hook:",
        ])
        .args(["-n", &ns.name])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .await
        .expect("running kubectl-sluice");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(receivers.requests("/hook/steps/").len(), before + 1);

    // Neither the log nor the plugin's output show a secret.
    let log = std::fs::read_to_string(&controller.log).unwrap_or_default();
    for secret in [
        "t0ken-hook",
        "pa55word",
        "xoxb-test-token",
        "BEGIN RSA PRIVATE KEY",
        "ghs_installation",
    ] {
        assert!(!log.contains(secret), "the log shows {secret}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
        assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
    }
    assert!(
        log.contains("template.broken"),
        "the malformed entry is reported"
    );
    // A subscription to a service nobody configured is a Warning on the Rollout.
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("listing events");
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("NotificationFailed")
                && e.type_.as_deref() == Some("Warning")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("\"pigeon\""))),
        "{:#?}",
        events
            .items
            .iter()
            .map(|e| (&e.reason, &e.message))
            .collect::<Vec<_>>()
    );
    assert!(
        controller.terminate(),
        "a clean stop with the notification worker drained"
    );
}

/// Whether the rollout is Healthy and up to date on `image`.
fn healthy_on(r: &Rollout, image: &str) -> bool {
    status(r).phase == Some(RolloutPhase::Healthy) && observed(r) && manifests::image(r) == image
}

/// `application/x-www-form-urlencoded` pairs.
fn url_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
