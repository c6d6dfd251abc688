//! Bounded I/O for the providers: an answer read chunk by chunk up to a cap (never buffered
//! whole), text cut at a UTF-8 boundary before it is stored in a run's status, the redirect
//! policy of the shared HTTP clients, and the allow-list of hosts web metrics may reach.

use std::time::Duration;

use reqwest::Url;

/// The most redirects followed for one request (each to the same scheme, host and port).
pub const MAX_REDIRECTS: usize = 3;

/// The message of an answer larger than `max` bytes.
pub fn too_large(max: usize) -> String {
    format!("answer larger than {max} bytes")
}

/// Reads a response's body, at most `max` bytes: an answer announcing more (Content-Length) is
/// refused before any of it is read, and one streaming more is refused as soon as the count
/// passes `max`; the connection is then dropped, not drained.
pub async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let cap = u64::try_from(max).unwrap_or(u64::MAX);
    if response.content_length().is_some_and(|len| len > cap) {
        return Err(too_large(max));
    }
    let mut body = Vec::with_capacity(
        usize::try_from(response.content_length().unwrap_or(0))
            .unwrap_or(0)
            .min(max)
            .min(64 * 1024),
    );
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", super::error_chain(&e)))?
    {
        if body.len().saturating_add(chunk.len()) > max {
            return Err(too_large(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Cuts `text` to at most `max` bytes at a char boundary, marking the cut
/// (`…(cut at 16384 bytes)`); text that fits is returned unchanged.
pub fn truncate(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = text;
    cut.truncate(end);
    cut.push_str(&format!("…(cut at {max} bytes)"));
    cut
}

/// Why a redirect from `from` to `to` is not followed, `None` when it may be: only to the same
/// host and port, never from https to http, so a template's headers (tokens) never reach
/// another server.
pub fn redirect_refusal(from: &Url, to: &Url) -> Option<String> {
    if from.scheme() == "https" && to.scheme() != "https" {
        return Some(format!("redirect from https to {to} refused"));
    }
    if !from
        .host_str()
        .unwrap_or_default()
        .eq_ignore_ascii_case(to.host_str().unwrap_or_default())
        || from.port_or_known_default() != to.port_or_known_default()
    {
        return Some(format!(
            "redirect to {to} refused: only redirects to the same host and port are followed"
        ));
    }
    None
}

/// The redirect policy of the shared HTTP clients: at most [`MAX_REDIRECTS`] hops, each
/// allowed by [`redirect_refusal`] against the URL first requested.
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let refusal = attempt
            .previous()
            .first()
            .and_then(|first| redirect_refusal(first, attempt.url()));
        match refusal {
            Some(reason) => attempt.error(reason),
            None => attempt.follow(),
        }
    })
}

/// Whether `host` may be reached by web metrics: any host without an allow-list; otherwise one
/// of the list, exactly (`metrics.example.com`, case and a final dot aside) or as a subdomain
/// of a `*.suffix` entry (`*.example.com` allows `a.example.com`, not `example.com`).
pub fn host_allowed(allowed: Option<&[String]>, host: &str) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    let normal = |h: &str| {
        h.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    let host = normal(host);
    if host.is_empty() {
        return false;
    }
    allowed
        .iter()
        .any(|entry| match entry.trim().strip_prefix("*.") {
            Some(suffix) => {
                let suffix = normal(suffix);
                !suffix.is_empty()
                    && host.len() > suffix.len() + 1
                    && host.ends_with(&suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            None => normal(entry) == host,
        })
}

/// Refuses a URL whose host is not in the allow-list of web metrics, before anything is sent.
pub fn check_host(allowed: Option<&[String]>, url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    if host_allowed(allowed, host) {
        Ok(())
    } else {
        Err(format!(
            "host {host} is not in the controller's allowed hosts for web metrics"
        ))
    }
}

/// A metric's timeout (`seconds` if positive, else `default`), never above `max`.
pub fn capped_timeout(seconds: Option<i64>, default: Duration, max: Duration) -> Duration {
    seconds
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .map_or(default, Duration::from_secs)
        .min(max)
}

/// A timeout as a message shows it: `10s`, or `250ms` below a whole second.
pub fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
