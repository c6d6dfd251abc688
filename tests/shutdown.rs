//! Stopping the controller on the local cluster: SIGTERM ends the process well within a pod's
//! termination grace period even while a measurement waits on a server that never answers; the
//! pass in flight is dropped, nothing written for it.
mod support;

use std::time::{Duration, Instant};

use kube::api::PostParams;
use serde_json::json;
use sluice::api::AnalysisRun;
use support::{Controller, TestNamespace, install_crds, wait};
use tokio::{io::AsyncReadExt, net::TcpListener, sync::mpsc};

/// A server that reads each request and never answers it; reports each request's first line.
async fn silent_server() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!(
        "http://{}/never",
        listener.local_addr().expect("an address")
    );
    let (sender, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = vec![0; 4096];
            let n = stream.read(&mut buffer).await.unwrap_or(0);
            let line = String::from_utf8_lossy(&buffer[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let _ = sender.send(line);
            // Kept open and silent: the client waits for its timeout.
            held.push(stream);
        }
    });
    (url, requests)
}

#[tokio::test]
async fn sigterm_ends_the_process_while_a_measurement_waits() {
    let t = TestNamespace::new("shutdown-busy").await;
    install_crds(&t.client).await;
    let (url, mut requests) = silent_server().await;
    let mut controller = Controller::start(&t.name).await;

    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": { "name": "slow" },
        "spec": { "metrics": [{
            "name": "slow",
            "provider": { "web": { "url": url, "timeoutSeconds": 3600 } },
        }] },
    }))
    .expect("an AnalysisRun");
    t.api::<AnalysisRun>()
        .create(&PostParams::default(), &run)
        .await
        .expect("creating the run");
    let first = wait(
        async { requests.recv().await.ok_or("the server stopped") },
        30,
        "the measurement's request to reach the server",
    )
    .await;
    assert!(first.starts_with("GET /never"), "{first}");

    let asked = Instant::now();
    let clean = controller.terminate();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?} to end the process:\n{}",
        controller.log_tail(30)
    );
    assert!(
        clean,
        "the process did not exit 0:\n{}",
        controller.log_tail(30)
    );
    // The pass in flight was dropped: nothing was written for it.
    let run = t
        .api::<AnalysisRun>()
        .get("slow")
        .await
        .expect("reading the run");
    let measured = run
        .status
        .iter()
        .flat_map(|s| &s.metric_results)
        .flat_map(|r| &r.measurements)
        .count();
    assert_eq!(measured, 0, "{:?}", run.status);
}
