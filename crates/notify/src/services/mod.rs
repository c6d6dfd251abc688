//! The services that deliver notifications, configured as Argo's are (`service.<type>` keys) and
//! sending what Argo's send, so the receivers users set up keep working:
//!
//! | type | request |
//! |---|---|
//! | `webhook` | the method, URL (+ `path`), headers, basic auth and body the template gives (`message` by default), as Argo's webhook service |
//! | `slack` | `POST {apiURL}chat.postMessage`, form-encoded `channel`, `text`, `attachments`, `blocks`, `username`, `icon_emoji`/`icon_url`, token as a Bearer header |
//! | `teams` | `POST` of a MessageCard (or the template's own `teams.template`) to the recipient's URL |
//! | `email` | SMTP: implicit TLS on port 465, else STARTTLS when offered; login when a username is set |
//! | `github` | a GitHub App installation token, then `POST /repos/{owner}/{repo}/statuses/{sha}` |
//!
//! Every request is bounded: 10 s to connect, 30 s in all, 64 KiB of answer read. A failed
//! request is an error naming the service and the HTTP status, with no header, token or password
//! in it. Retrying is the caller's (the controller retries with backoff; the plugin does not).

mod email;
mod github;
mod slack;
mod teams;
mod webhook;

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

pub use self::{
    email::EmailOptions, github::GitHubOptions, slack::SlackOptions, teams::TeamsOptions,
    webhook::WebhookOptions,
};
use crate::{Notification, subscription::Destination};

/// One configured service.
#[derive(Clone, Debug)]
pub enum Service {
    /// `service.webhook.<name>`.
    Webhook(WebhookOptions),
    /// `service.slack`.
    Slack(SlackOptions),
    /// `service.teams`.
    Teams(TeamsOptions),
    /// `service.email`.
    Email(EmailOptions),
    /// `service.github`.
    GitHub(GitHubOptions),
}

/// The service types Sluice delivers to.
pub const TYPES: [&str; 5] = ["webhook", "slack", "teams", "email", "github"];

impl Service {
    /// Reads a service's options (secrets already substituted); `name` is the name
    /// subscriptions use.
    pub fn from_options(type_: &str, name: &str, options: Value) -> Result<Self, String> {
        fn read<T: for<'de> Deserialize<'de>>(type_: &str, options: Value) -> Result<T, String> {
            // An empty value (`service.email: ""`) is an empty mapping, as in Argo.
            let options = if options.is_null() {
                Value::Object(serde_json::Map::new())
            } else {
                options
            };
            serde_json::from_value(options)
                .map_err(|e| format!("the {type_} service's options do not read: {e}"))
        }
        let service = match type_ {
            "webhook" => Self::Webhook(WebhookOptions {
                name: name.to_owned(),
                ..read(type_, options)?
            }),
            "slack" => Self::Slack(read(type_, options)?),
            "teams" => Self::Teams(read(type_, options)?),
            "email" => Self::Email(read(type_, options)?),
            "github" => Self::GitHub(read(type_, options)?),
            other => {
                return Err(format!(
                    "service type {other:?} is not one Sluice delivers to (it delivers to {})",
                    TYPES.join(", ")
                ));
            }
        };
        service.validate()?;
        Ok(service)
    }

    /// The service's type, as in its key.
    pub fn type_(&self) -> &'static str {
        match self {
            Self::Webhook(_) => "webhook",
            Self::Slack(_) => "slack",
            Self::Teams(_) => "teams",
            Self::Email(_) => "email",
            Self::GitHub(_) => "github",
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Self::Webhook(o) if o.url.is_empty() => Err("a webhook needs a url".into()),
            Self::Email(o) if o.host.is_empty() => Err("email needs a host".into()),
            Self::GitHub(o) => o.validate(),
            _ => Ok(()),
        }
    }
}

/// How long a request may take to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of an answer read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a notification was not delivered: what the receiver answered, never a secret.
#[derive(Debug, thiserror::Error)]
#[error("{service}: {message}")]
pub struct SendError {
    /// The service's name.
    pub service: String,
    /// What went wrong.
    pub message: String,
}

/// Delivers notifications; one HTTP client (connections pooled) for every service.
#[derive(Clone, Debug)]
pub struct Sender {
    http: reqwest::Client,
}

impl Sender {
    /// A sender with the bounded HTTP client every service uses.
    pub fn new() -> Result<Self, String> {
        ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("sluice-notifications/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self { http })
    }

    /// Delivers `notification` to `destination` through `service`.
    pub async fn send(
        &self,
        service: &Service,
        notification: &Notification,
        destination: &Destination,
    ) -> Result<(), SendError> {
        let result = match service {
            Service::Webhook(o) => webhook::send(&self.http, o, notification).await,
            Service::Slack(o) => slack::send(&self.http, o, notification, destination).await,
            Service::Teams(o) => teams::send(&self.http, o, notification, destination).await,
            Service::Email(o) => email::send(o, notification, destination).await,
            Service::GitHub(o) => github::send(&self.http, o, notification).await,
        };
        result.map_err(|message| SendError {
            service: destination.service.clone(),
            message,
        })
    }
}

/// rustls needs a process-wide crypto provider before reqwest builds a client (reqwest is built
/// without one: ring, as kube uses, is the only one in the process).
fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer, as text.
async fn bounded_text(mut response: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", e.without_url()))?
    {
        let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Fails on a status outside 2xx, with the status and the start of the answer.
async fn check_status(response: reqwest::Response) -> Result<String, String> {
    let status = response.status();
    let text = bounded_text(response).await?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!(
            "the receiver answered {status}: {}",
            excerpt(&text)
        ))
    }
}

/// The start of an answer, for a message.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A request error without its URL (a webhook URL may carry a token, as Slack's and Teams'
/// incoming-webhook URLs do).
fn request_error(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    format!("the request {kind}: {}", e.without_url())
}

#[cfg(test)]
pub(crate) mod testing {
    //! A local HTTP receiver for the services' unit tests: records each request, answers with
    //! the status and body it is given.

    use std::sync::{Arc, Mutex};

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    /// A recorded request: the request line, the headers (lower-case names) and the body.
    #[derive(Clone, Debug, Default)]
    pub struct Request {
        pub line: String,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Request {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// An HTTP client as the services' (a crypto provider installed first).
    pub fn client() -> reqwest::Client {
        super::ensure_crypto_provider();
        reqwest::Client::new()
    }

    /// Serves `answers` in turn (the last one repeated) on 127.0.0.1; returns the base URL and
    /// the requests seen.
    pub async fn receiver(answers: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<Request>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                let request = loop {
                    let read = stream.read(&mut buf).await.unwrap_or(0);
                    if read == 0 {
                        break None;
                    }
                    data.extend_from_slice(&buf[..read]);
                    let text = String::from_utf8_lossy(&data).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = &text[..end];
                    let mut lines = head.lines();
                    let line = lines.next().unwrap_or_default().to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    if data.len() < end + 4 + length {
                        continue;
                    }
                    let body =
                        String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
                    break Some(Request {
                        line,
                        headers,
                        body,
                    });
                };
                let Some(request) = request else { continue };
                record.lock().expect("lock").push(request);
                let (status, body) = answers[n.min(answers.len() - 1)].clone();
                n += 1;
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{addr}"), seen)
    }
}
