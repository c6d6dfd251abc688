//! The dashboard's HTTP server: the page and its assets (compiled in, gzipped once), the data as
//! JSON, changes as Server-Sent Events, and the actions as POSTs.
//!
//! Security: it listens on 127.0.0.1 by default; every request must name that address (or
//! `localhost`) in its Host header, so that a web page cannot reach it through DNS rebinding;
//! a write must carry the header `X-Sluice-Dashboard` (which a cross-site form cannot send, and a
//! cross-site script can only send after a CORS preflight the server never grants), and a
//! browser's `Origin` and `Sec-Fetch-Site`, when present, must say the request comes from the
//! dashboard itself. Bodies are capped at [`MAX_BODY`]; open streams at [`MAX_STREAMS`].

use std::{convert::Infallible, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{
        IntoResponse, Redirect, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::{Stream, StreamExt as _, future::ready, stream};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;

use super::state::{Detail, ListState, differs};
use crate::{Context, Error, info::Objects};

/// Largest request body accepted: an action's body is a container name and an image.
pub const MAX_BODY: usize = 8 * 1024;

/// Pages open at once (each holds a stream, and a rollout's page four watches on the cluster).
pub const MAX_STREAMS: usize = 64;

/// The header a write must carry: a browser sends it cross-site only after a CORS preflight,
/// which this server never grants.
pub const WRITE_HEADER: &str = "x-sluice-dashboard";

/// The page, one template for both views (the script picks the view from the path).
const INDEX: &str = include_str!("assets/index.html");
/// The style sheet.
const CSS: &str = include_str!("assets/app.css");
/// The script (an ES module, no build step).
const JS: &str = include_str!("assets/app.js");

/// What the server is started with.
pub struct Config {
    /// The cluster connection; its namespace is the one shown unless `all_namespaces`.
    pub ctx: Context,
    /// Show and act on every namespace.
    pub all_namespaces: bool,
    /// The path everything is served under, starting and ending with `/`.
    pub root: String,
    /// The address listened on, for the Host check.
    pub local: SocketAddr,
    /// The list of rollouts, kept by [`super::state::keep`].
    pub list: Arc<ListState>,
}

/// The server's shared state: cheap to clone into every handler.
#[derive(Clone)]
pub struct App(Arc<Shared>);

struct Shared {
    ctx: Context,
    all_namespaces: bool,
    root: String,
    /// Host headers accepted; `None` when listening on every address.
    hosts: Option<Vec<String>>,
    list: Arc<ListState>,
    streams: Arc<Semaphore>,
    index: Asset,
    css: Asset,
    js: Asset,
}

/// A response body prepared once, plain and gzipped.
struct Asset {
    plain: Bytes,
    gzip: Option<Bytes>,
    content_type: &'static str,
    cache: &'static str,
}

impl Asset {
    fn new(body: Vec<u8>, content_type: &'static str, cache: &'static str) -> Self {
        Self {
            gzip: gzip(&body).map(Bytes::from),
            plain: Bytes::from(body),
            content_type,
            cache,
        }
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let (body, encoded) = match &self.gzip {
            Some(gz) if accepts_gzip(request) => (gz.clone(), true),
            _ => (self.plain.clone(), false),
        };
        let mut response = body.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(self.cache));
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if encoded {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }
}

/// `data` gzipped, when it is worth it (and `None` if compressing failed, which a `Vec` never
/// makes it do).
fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    if data.len() < 1024 {
        return None;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

/// Whether the client takes gzip (`Accept-Encoding`, without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next() == Some("gzip") && parts.all(|p| p.replace(' ', "") != "q=0")
        })
}

/// A short stable fingerprint of the assets, so that a new build's page never runs an old
/// cached script (FNV-1a).
fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}

/// `text` safe inside HTML text and double-quoted attributes.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The Host headers a browser sends when it was given the printed address (or `localhost`).
fn allowed_hosts(local: SocketAddr) -> Option<Vec<String>> {
    if local.ip().is_unspecified() {
        return None;
    }
    let port = local.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        local.to_string(),
    ];
    if port == 80 {
        hosts.extend(["127.0.0.1", "localhost", "[::1]"].map(String::from));
        hosts.push(local.ip().to_string());
    }
    Some(hosts)
}

impl App {
    /// The server's state, with the page rendered for this root path and scope.
    pub fn new(config: Config) -> Self {
        let scope = if config.all_namespaces {
            "all namespaces".to_string()
        } else {
            format!("namespace {}", config.ctx.namespace)
        };
        let version = fingerprint(&[INDEX, CSS, JS]);
        let index = INDEX
            .replace("{{ROOT}}", &escape_html(&config.root))
            .replace("{{SCOPE}}", &escape_html(&scope))
            .replace(
                "{{ALL}}",
                if config.all_namespaces {
                    "true"
                } else {
                    "false"
                },
            )
            .replace("{{V}}", &version);
        // Assets are addressed with their fingerprint: cached for good.
        let immutable = "public, max-age=31536000, immutable";
        Self(Arc::new(Shared {
            hosts: allowed_hosts(config.local),
            ctx: config.ctx,
            all_namespaces: config.all_namespaces,
            root: config.root,
            list: config.list,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            index: Asset::new(index.into_bytes(), "text/html; charset=utf-8", "no-cache"),
            css: Asset::new(
                CSS.as_bytes().to_vec(),
                "text/css; charset=utf-8",
                immutable,
            ),
            js: Asset::new(
                JS.as_bytes().to_vec(),
                "text/javascript; charset=utf-8",
                immutable,
            ),
        }))
    }

    /// The routes, under the root path, behind the Host and cross-site checks.
    pub fn router(&self) -> Router {
        let root = self.0.root.clone();
        let at = |path: &str| format!("{root}{path}");
        let mut router = Router::new()
            .route(&root, get(index))
            .route(&at("rollouts/{namespace}/{name}"), get(index))
            .route(&at("assets/app.css"), get(css))
            .route(&at("assets/app.js"), get(js))
            .route(&at("api/rollouts"), get(list))
            .route(&at("api/events"), get(list_events))
            .route(&at("api/rollouts/{namespace}/{name}"), get(detail))
            .route(
                &at("api/rollouts/{namespace}/{name}/events"),
                get(detail_events),
            )
            .route(
                &at("api/rollouts/{namespace}/{name}/actions/{action}"),
                post(act),
            );
        if root != "/" {
            let target = root.clone();
            router = router.route(
                root.trim_end_matches('/'),
                get(move || ready(Redirect::permanent(&target))),
            );
        }
        router
            .fallback(|| ready(problem(StatusCode::NOT_FOUND, "no such page")))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .layer(middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }

    /// A connection for the rollout's namespace, or why not: a namespace the dashboard does not
    /// show, or a name no object can have.
    fn scoped(&self, namespace: &str, name: &str) -> Result<Context, Refusal> {
        let dns = |s: &str, max: usize, dots: bool| {
            !s.is_empty()
                && s.len() <= max
                && s.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.')
                })
        };
        if !dns(namespace, 63, false) || !dns(name, 253, true) {
            return Err((StatusCode::NOT_FOUND, "no such rollout".into()));
        }
        if !self.0.all_namespaces && namespace != self.0.ctx.namespace {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "the dashboard shows namespace \"{}\" only (start it with -A for all)",
                    self.0.ctx.namespace
                ),
            ));
        }
        Ok(Context {
            namespace: namespace.to_string(),
            ..self.0.ctx.clone()
        })
    }
}

/// The checks every request passes (Host; for writes, the cross-site checks) and the headers
/// every answer carries.
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let refused = if app.0.hosts.as_ref().is_some_and(|h| !h.contains(&host)) {
        Some((
            StatusCode::MISDIRECTED_REQUEST,
            "unexpected Host header: open the dashboard at the address it printed",
        ))
    } else if request.method() == Method::POST {
        cross_site(request.headers(), &host).err()
    } else {
        None
    };
    let mut response = match refused {
        Some((status, why)) => {
            tracing::warn!(method = %request.method(), uri = %request.uri(), %host, reason = why, "dashboard request refused");
            problem(status, why)
        }
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// Refuses a write that a page of another site could have made.
fn cross_site(headers: &HeaderMap, host: &str) -> Result<(), (StatusCode, &'static str)> {
    let forbidden = StatusCode::FORBIDDEN;
    if headers.get(WRITE_HEADER).is_none() {
        return Err((
            forbidden,
            "a write must carry the X-Sluice-Dashboard header",
        ));
    }
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if value("sec-fetch-site").is_some_and(|site| site != "same-origin") {
        return Err((forbidden, "cross-site write refused"));
    }
    if value("origin").is_some_and(|origin| origin != format!("http://{host}")) {
        return Err((forbidden, "cross-origin write refused"));
    }
    Ok(())
}

/// A request refused before anything was done: the status and why.
type Refusal = (StatusCode, String);

/// The answer of a refusal.
fn refuse((status, why): Refusal) -> Response {
    problem(status, &why)
}

/// An error answer, as JSON `{"error": "..."}`.
fn problem(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A plugin error as an answer, with the status that fits it.
fn error_response(error: &Error) -> Response {
    let status = match error {
        Error::NotFound { .. } | Error::Deleted { .. } | Error::NoResource { .. } => {
            StatusCode::NOT_FOUND
        }
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Unreachable { .. } | Error::Api { .. } => StatusCode::BAD_GATEWAY,
        Error::Config(_) | Error::Read { .. } | Error::Output(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    problem(status, &error.to_string())
}

/// `value` as JSON, gzipped when the client takes it; never cached.
fn json_response<T: Serialize>(request: &HeaderMap, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Asset::new(body, "application/json", "no-store").respond(request),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn index(State(app): State<App>, headers: HeaderMap) -> Response {
    app.0.index.respond(&headers)
}

async fn css(State(app): State<App>, headers: HeaderMap) -> Response {
    app.0.css.respond(&headers)
}

async fn js(State(app): State<App>, headers: HeaderMap) -> Response {
    app.0.js.respond(&headers)
}

/// The whole list.
async fn list(State(app): State<App>, headers: HeaderMap) -> Response {
    json_response(&headers, &app.0.list.since(None))
}

/// Where a list stream starts.
#[derive(Debug, Deserialize)]
struct Since {
    /// The change number of the list the page has.
    since: Option<u64>,
}

/// An SSE event named `name` carrying `data` (JSON, so on one line).
fn event(name: &'static str, data: String) -> Event {
    Event::default().event(name).data(data)
}

/// The list's changes after the page's, one `delta` event per change (coalesced when the page
/// reads slower than the cluster changes), until the page goes away. A reconnecting browser
/// sends the last change it got as `Last-Event-ID`.
async fn list_events(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<Since>,
) -> Response {
    let Ok(permit) = app.0.streams.clone().try_acquire_owned() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard pages open",
        );
    };
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or(query.since);
    let list = app.0.list.clone();
    let changes = list.subscribe();
    let events = stream::unfold(
        (list, changes, since, permit),
        |(list, mut changes, since, permit)| async move {
            loop {
                let current = *changes.borrow_and_update();
                if since != Some(current) {
                    let delta = list.since(since);
                    let data = serde_json::to_string(&delta).ok()?;
                    let sent = event("delta", data).id(delta.seq.to_string());
                    let seq = Some(delta.seq);
                    return Some((Ok::<_, Infallible>(sent), (list, changes, seq, permit)));
                }
                // The sender lives as long as the server: an error means it is stopping.
                changes.changed().await.ok()?;
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A rollout's detail, read once.
async fn detail(
    State(app): State<App>,
    headers: HeaderMap,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let ctx = match app.scoped(&namespace, &name) {
        Ok(ctx) => ctx,
        Err(refused) => return refuse(refused),
    };
    match crate::fetch::objects(&ctx, &name).await {
        Ok(objects) => json_response(&headers, &Detail::new(&objects)),
        Err(e) => error_response(&e),
    }
}

/// Snapshots of a rollout and what it owns, as [`crate::fetch::watch`] makes them.
type Snapshots = Pin<Box<dyn Stream<Item = Result<Option<Objects>, Error>> + Send>>;

/// A rollout's detail on every change (`detail` events), from the watches `get --watch` uses;
/// a `deleted` or `problem` event ends it. The watches stop when the page goes away.
async fn detail_events(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let ctx = match app.scoped(&namespace, &name) {
        Ok(ctx) => ctx,
        Err(refused) => return refuse(refused),
    };
    let Ok(permit) = app.0.streams.clone().try_acquire_owned() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboard pages open",
        );
    };
    let snapshots: Snapshots = match crate::fetch::watch(&ctx, &name).await {
        Ok(snapshots) => snapshots.boxed(),
        Err(e) => stream::once(ready(Err(e))).boxed(),
    };
    let events = stream::unfold(
        (Some(snapshots), None::<String>, permit),
        |(snapshots, mut last, permit)| async move {
            let mut snapshots = snapshots?;
            loop {
                let (sent, more) = match snapshots.next().await? {
                    Ok(Some(objects)) => {
                        let Ok(text) = serde_json::to_string(&Detail::new(&objects)) else {
                            continue;
                        };
                        match differs(&mut last, text) {
                            Some(text) => (event("detail", text), true),
                            None => continue,
                        }
                    }
                    Ok(None) => (event("deleted", "{}".into()), false),
                    Err(e) => {
                        tracing::warn!(error = %e, "dashboard watch of a rollout ended");
                        let text = json!({ "error": e.to_string() }).to_string();
                        (event("problem", text), false)
                    }
                };
                let next = more.then_some(snapshots);
                return Some((Ok::<_, Infallible>(sent), (next, last, permit)));
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The body of `set-image`.
#[derive(Debug, Deserialize)]
struct ImageBody {
    /// The container's name, or `*` for all.
    container: String,
    /// The image reference.
    image: String,
}

/// The container and image of a `set-image` request, or why it is refused.
fn image_body(headers: &HeaderMap, body: &[u8]) -> Result<ImageBody, Refusal> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "set-image takes a JSON body".into(),
        ));
    }
    let body: ImageBody = serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("expected {{\"container\": ..., \"image\": ...}}: {e}"),
        )
    })?;
    let plain = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if !plain(&body.container, 253) || !plain(&body.image, 1024) {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "the container and the image must be non-empty, without spaces".into(),
        ));
    }
    Ok(body)
}

/// An action on a rollout, with the function its command uses; answers `{"message": ...}` as
/// the command prints it, or `{"error": ...}`.
async fn act(
    State(app): State<App>,
    headers: HeaderMap,
    Path((namespace, name, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let ctx = match app.scoped(&namespace, &name) {
        Ok(ctx) => ctx,
        Err(refused) => return refuse(refused),
    };
    let done = match action.as_str() {
        "promote" => crate::promote::promote(&ctx, &name, false).await,
        "promote-full" => crate::promote::promote(&ctx, &name, true).await,
        "abort" => crate::abort::abort(&ctx, &name).await,
        "retry" => crate::retry::retry_rollout(&ctx, &name).await,
        "restart" => crate::restart::restart(&ctx, &name, Duration::ZERO).await,
        "set-image" => match image_body(&headers, &body) {
            Ok(b) => crate::set::set_image(&ctx, &name, &b.container, &b.image).await,
            Err(refused) => return refuse(refused),
        },
        _ => return problem(StatusCode::NOT_FOUND, "no such action"),
    };
    match done {
        Ok(message) => {
            tracing::info!(%namespace, rollout = %name, %action, outcome = %message, "dashboard action");
            Json(json!({ "message": message })).into_response()
        }
        Err(e) => {
            tracing::warn!(%namespace, rollout = %name, %action, error = %e, "dashboard action failed");
            error_response(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_chosen_only_when_accepted() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_gzip(&headers));
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&headers));
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0"),
        );
        assert!(!accepts_gzip(&headers));
    }

    #[test]
    fn writes_from_other_sites_are_refused() {
        let host = "127.0.0.1:3100";
        let mut headers = HeaderMap::new();
        assert!(cross_site(&headers, host).is_err(), "no custom header");
        headers.insert(WRITE_HEADER, HeaderValue::from_static("1"));
        assert!(cross_site(&headers, host).is_ok(), "a non-browser client");
        headers.insert("origin", HeaderValue::from_static("http://127.0.0.1:3100"));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(
            cross_site(&headers, host).is_ok(),
            "the dashboard's own page"
        );
        headers.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(cross_site(&headers, host).is_err());
        headers.insert("origin", HeaderValue::from_static("http://127.0.0.1:3100"));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&headers, host).is_err());
    }

    #[test]
    fn only_the_printed_address_and_localhost_are_accepted_as_host() {
        let hosts = allowed_hosts("127.0.0.1:3100".parse().expect("an address")).expect("hosts");
        assert!(hosts.contains(&"localhost:3100".to_string()));
        assert!(!hosts.contains(&"evil.example:3100".to_string()));
        assert!(allowed_hosts("0.0.0.0:3100".parse().expect("an address")).is_none());
    }
}
