//! Real receivers the notification test controls, on a thread and runtime of their own: an HTTP
//! server standing in for a webhook, Slack's API, a Teams incoming webhook and GitHub's API
//! (recording every request and answering as those services document), and an SMTP server
//! (speaking the protocol over TCP, recording every mail).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, Uri},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::watch,
};

/// One HTTP request received.
#[derive(Clone, Debug)]
pub struct Request {
    pub at: SystemTime,
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// The status answered.
    pub status: u16,
}

/// One mail received.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Default)]
struct Recorded {
    requests: Vec<Request>,
    mails: Vec<Mail>,
    /// Failures answered so far per body on `/flaky`.
    flaky: BTreeMap<String, u32>,
}

/// The receivers; stopped when dropped.
pub struct Receivers {
    pub http: SocketAddr,
    pub smtp: SocketAddr,
    recorded: Arc<Mutex<Recorded>>,
    changed: watch::Receiver<u64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How many times `/flaky` answers 500 to one body before it answers 200.
pub const FLAKY_FAILURES: u32 = 2;

impl Receivers {
    pub fn start() -> Self {
        let recorded: Arc<Mutex<Recorded>> = Arc::default();
        let (tick, changed) = watch::channel(0u64);
        let tick = Arc::new(tick);
        let std_http = std::net::TcpListener::bind("127.0.0.1:0").expect("binding HTTP");
        let std_smtp = std::net::TcpListener::bind("127.0.0.1:0").expect("binding SMTP");
        std_http.set_nonblocking(true).expect("nonblocking");
        std_smtp.set_nonblocking(true).expect("nonblocking");
        let (http, smtp) = (
            std_http.local_addr().expect("addr"),
            std_smtp.local_addr().expect("addr"),
        );
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (rec, t) = (recorded.clone(), tick.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let http = TcpListener::from_std(std_http).expect("listener");
                let smtp = TcpListener::from_std(std_smtp).expect("listener");
                let (rec2, t2) = (rec.clone(), t.clone());
                let app = Router::new().fallback(
                    move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let (rec, t) = (rec.clone(), t.clone());
                        async move { answer(&rec, &t, method, uri, headers, body) }
                    },
                );
                tokio::spawn(async move { axum::serve(http, app).await });
                tokio::spawn(async move {
                    while let Ok((stream, _)) = smtp.accept().await {
                        let (rec, t) = (rec2.clone(), t2.clone());
                        tokio::spawn(async move { smtp_session(stream, &rec, &t).await });
                    }
                });
                let _ = stopped.await;
            });
        });
        Self {
            http,
            smtp,
            recorded,
            changed,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn requests(&self, path_prefix: &str) -> Vec<Request> {
        self.recorded
            .lock()
            .expect("lock")
            .requests
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.recorded.lock().expect("lock").mails.clone()
    }

    /// Waits (up to `seconds`) until `ok` holds for what was received, woken by each arrival.
    pub async fn wait_until(&self, seconds: u64, what: &str, ok: impl Fn(&Self) -> bool) {
        let mut changed = self.changed.clone();
        let waited = tokio::time::timeout(Duration::from_secs(seconds), async {
            loop {
                if ok(self) {
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        let recorded = self.recorded.lock().expect("lock");
        assert!(
            waited.is_ok(),
            "{what} within {seconds} s; received: {:#?}\nmails: {:#?}",
            recorded.requests,
            recorded.mails
        );
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Records a request and answers as the service at its path documents.
fn answer(
    recorded: &Mutex<Recorded>,
    tick: &watch::Sender<u64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_owned();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut recorded = recorded.lock().expect("lock");
    let (status, text) = if path.starts_with("/flaky") {
        let failures = recorded.flaky.entry(body.clone()).or_default();
        if *failures < FLAKY_FAILURES {
            *failures += 1;
            (StatusCode::INTERNAL_SERVER_ERROR, "try again".to_owned())
        } else {
            (StatusCode::OK, String::new())
        }
    } else if path.ends_with("/chat.postMessage") {
        (
            StatusCode::OK,
            r#"{"ok":true,"channel":"C1","ts":"1.2"}"#.to_owned(),
        )
    } else if path.starts_with("/teams/") {
        (StatusCode::OK, "1".to_owned())
    } else if path.ends_with("/access_tokens") {
        (
            StatusCode::CREATED,
            r#"{"token":"ghs_installation"}"#.to_owned(),
        )
    } else if path.contains("/statuses/") {
        (StatusCode::CREATED, "{}".to_owned())
    } else {
        (StatusCode::OK, String::new())
    };
    recorded.requests.push(Request {
        at: SystemTime::now(),
        method: method.to_string(),
        path,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body,
        status: status.as_u16(),
    });
    drop(recorded);
    tick.send_modify(|n| *n += 1);
    (status, text)
}

/// One SMTP session: greets, takes EHLO/MAIL/RCPT/DATA/QUIT, records the mail.
async fn smtp_session(
    stream: tokio::net::TcpStream,
    recorded: &Mutex<Recorded>,
    tick: &watch::Sender<u64>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 receiver ESMTP\r\n").await;
    let (mut from, mut to, mut data, mut in_data) =
        (String::new(), Vec::new(), String::new(), false);
    while let Ok(Some(line)) = lines.next_line().await {
        if in_data {
            if line == "." {
                in_data = false;
                recorded.lock().expect("lock").mails.push(Mail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data: std::mem::take(&mut data),
                });
                tick.send_modify(|n| *n += 1);
                let _ = write.write_all(b"250 queued\r\n").await;
            } else {
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                data.push('\n');
            }
            continue;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-receiver\r\n250 8BITMIME\r\n"
        } else if let Some(rest) = upper.strip_prefix("MAIL FROM:") {
            from = line[line.len() - rest.len()..].trim().to_owned();
            b"250 ok\r\n"
        } else if let Some(rest) = upper.strip_prefix("RCPT TO:") {
            to.push(line[line.len() - rest.len()..].trim().to_owned());
            b"250 ok\r\n"
        } else if upper == "DATA" {
            in_data = true;
            b"354 go ahead\r\n"
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 ok\r\n"
        };
        let _ = write.write_all(reply).await;
    }
}
