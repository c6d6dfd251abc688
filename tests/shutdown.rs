//! Stopping the controller on the local cluster: SIGTERM ends the process well within a pod's
//! termination grace period even while a measurement waits on a server that never answers; the
//! pass in flight is dropped, nothing written for it.

use std::time::{Duration, Instant};

use kube::api::PostParams;
use serde_json::json;
use sluice_api::AnalysisRun;
use sluice_testkit::{Controller, TestNamespace, install_crds, wait};
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

/// Sends SIGTERM and asserts the process exits 0 well within a pod's termination grace.
fn terminate_within_grace(controller: &mut Controller) {
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

    terminate_within_grace(&mut controller);
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

/// A server that answers every request at once with `body`, and reports each request.
async fn answering_server(body: &'static str) -> (String, mpsc::UnboundedReceiver<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!("http://{}/n", listener.local_addr().expect("an address"));
    let (sender, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = vec![0; 4096];
            let _ = stream.read(&mut buffer).await;
            let _ = sender.send(());
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (url, requests)
}

/// The pids of condition workers started by the controller `pid` (a worker names its
/// controller's pid among its arguments).
fn workers_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.iter().any(|a| *a == b"__condition-worker")
                && args.iter().any(|a| *a == pid.to_string().as_bytes())
        })
        .collect()
}

#[tokio::test]
async fn sigterm_ends_the_process_and_its_workers_while_a_condition_evaluates() {
    let t = TestNamespace::new("shutdown-evaluating").await;
    install_crds(&t.client).await;
    let (url, mut requests) = answering_server(r#"{"n": 1000}"#).await;
    let mut controller = Controller::start(&t.name).await;

    // Within every static cap, and 10^9 elements from the data: each measurement evaluates
    // until its time budget stops it.
    let run: AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisRun",
        "metadata": { "name": "evaluating" },
        "spec": { "metrics": [{
            "name": "endless",
            "interval": "1s",
            "count": 30,
            "consecutiveErrorLimit": 30,
            "successCondition": "len(map(0..result.n, {map(0..result.n, {map(0..result.n, {#})})})) > 0",
            "provider": { "web": { "url": url } },
        }] },
    }))
    .expect("an AnalysisRun");
    t.api::<AnalysisRun>()
        .create(&PostParams::default(), &run)
        .await
        .expect("creating the run");
    wait(
        async { requests.recv().await.ok_or("the server stopped") },
        30,
        "the first measurement's request",
    )
    .await;
    // The answer came back at once: its condition is being evaluated now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = controller.pid();
    assert!(
        !workers_of(pid).is_empty(),
        "the condition is evaluated in a worker process"
    );

    terminate_within_grace(&mut controller);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !workers_of(pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "workers outlived their controller: {:?}",
            workers_of(pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
