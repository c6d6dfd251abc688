//! A web metric's server the tests control: it answers `{"ok":true}` on paths starting with
//! `/pass` and `{"ok":false}` on any other, and records every path it was asked for, so a test
//! decides an analysis's verdict and sees the arguments the run was given.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// A running verdict server; it stops with the test's runtime.
pub struct Verdicts {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Verdicts {
    /// Starts a server on a free local port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the verdict server");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let paths: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = paths.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 4096];
                    let read = stream.read(&mut buffer).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buffer[..read]);
                    let path = request.split(' ').nth(1).unwrap_or_default().to_string();
                    let ok = path.starts_with("/pass");
                    record
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(path);
                    let body = format!("{{\"ok\":{ok}}}");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { url, paths }
    }

    /// Every path asked for so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// An AnalysisTemplate `name` of one web metric calling
    /// `{{args.url}}?hash={{args.hash}}` `count` times a second apart, passing when the answer's
    /// `ok` is true; `url` and `hash` are its arguments.
    pub fn template(name: &str, count: u32) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AnalysisTemplate",
            "metadata": { "name": name },
            "spec": {
                "args": [{ "name": "url" }, { "name": "hash" }],
                "metrics": [{
                    "name": "ok",
                    "count": count,
                    "interval": "1s",
                    "successCondition": "result == true",
                    "provider": { "web": {
                        "url": "{{args.url}}?hash={{args.hash}}",
                        "jsonPath": "{$.ok}"
                    } },
                }],
            },
        })
    }
}
