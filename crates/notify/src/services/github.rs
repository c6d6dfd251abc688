//! The GitHub service: a commit status, as a GitHub App. The App's JWT (RS256, signed with its
//! private key, valid 10 minutes) buys an installation token
//! (`POST {base}/app/installations/{id}/access_tokens`), which posts the status
//! (`POST {api}/repos/{owner}/{repo}/statuses/{sha}`: `state`, `context` = the label,
//! `target_url`, `description` = the message cut to 140 characters). The repository and the
//! revision come from the template's `github.repoURLPath` and `github.revisionPath` (templates
//! themselves; a Rollout has no default for them, unlike an Argo CD Application).
//! `enterpriseBaseURL` points at GitHub Enterprise (the API under `/api/v3`, as go-github
//! reads it) or a test receiver.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Notification;

/// `service.github` options.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitHubOptions {
    /// The App's ID (a number or a string of one).
    #[serde(default, rename = "appID")]
    pub app_id: Value,
    /// The installation's ID.
    #[serde(default, rename = "installationID")]
    pub installation_id: Value,
    /// The App's private key, PEM.
    #[serde(default)]
    pub private_key: String,
    /// GitHub Enterprise's base URL.
    #[serde(default, rename = "enterpriseBaseURL")]
    pub enterprise_base_url: String,
}

impl std::fmt::Debug for GitHubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubOptions")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("enterprise_base_url", &self.enterprise_base_url)
            .finish_non_exhaustive()
    }
}

fn id(value: &Value, what: &str) -> Result<u64, String> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{what} is not a number"))
}

impl GitHubOptions {
    pub(super) fn validate(&self) -> Result<(), String> {
        id(&self.app_id, "appID")?;
        id(&self.installation_id, "installationID")?;
        jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.as_bytes())
            .map_err(|_| "privateKey is not an RSA private key in PEM".to_owned())?;
        Ok(())
    }

    /// Where the installation token is asked for, and where the REST API is.
    fn urls(&self) -> (String, String) {
        let base = self.enterprise_base_url.trim_end_matches('/');
        if base.is_empty() {
            return (
                "https://api.github.com".into(),
                "https://api.github.com".into(),
            );
        }
        let api = if base.ends_with("/api/v3") {
            base.to_owned()
        } else {
            format!("{base}/api/v3")
        };
        (base.to_owned(), api)
    }
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

/// The App's JWT: issued a minute ago (clock drift), valid ten minutes.
pub(super) fn app_jwt(options: &GitHubOptions, now: u64) -> Result<String, String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(options.private_key.as_bytes())
        .map_err(|_| "privateKey is not an RSA private key in PEM".to_owned())?;
    let claims = Claims {
        iat: now.saturating_sub(60),
        exp: now + 540,
        iss: id(&options.app_id, "appID")?.to_string(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| format!("signing the App's token: {e}"))
}

/// `owner/repo` of a repository URL (`https://github.com/o/r(.git)`, `git@github.com:o/r.git`).
pub(super) fn full_name(url: &str) -> Option<(String, String)> {
    let path = url
        .split_once("://")
        .map(|(_, rest)| rest.split_once('/').map_or("", |(_, p)| p))
        .or_else(|| url.split_once(':').map(|(_, p)| p))?;
    let mut parts = path
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .split('/')
        .filter(|p| !p.is_empty());
    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
}

/// Cuts `text` to `n` characters, ending in `...` when cut, as Argo does.
fn cut(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(n - 3).collect();
    out.push_str("...");
    out
}

/// Posts the commit status of `notification`.
pub(super) async fn send(
    http: &reqwest::Client,
    options: &GitHubOptions,
    notification: &Notification,
) -> Result<(), String> {
    let Some(status) = notification.get(&["github", "status"]) else {
        return Err("the template has no github.status".into());
    };
    let repo_url = notification.text(&["github", "repoURLPath"]);
    let sha = notification.text(&["github", "revisionPath"]);
    let (owner, repo) = full_name(repo_url)
        .ok_or_else(|| format!("github.repoURLPath gave {repo_url:?}, not a repository URL"))?;
    if sha.trim().is_empty() {
        return Err("github.revisionPath gave no revision".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let jwt = app_jwt(options, now)?;
    let (base, api) = options.urls();
    let installation = id(&options.installation_id, "installationID")?;
    let response = http
        .post(format!(
            "{base}/app/installations/{installation}/access_tokens"
        ))
        .bearer_auth(jwt)
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .send()
        .await
        .map_err(super::request_error)?;
    let answer: Value = serde_json::from_str(&super::check_status(response).await?)
        .map_err(|_| "GitHub's token answer is not JSON".to_owned())?;
    let token = answer["token"]
        .as_str()
        .ok_or_else(|| "GitHub's token answer has no token".to_owned())?;
    let text = |key: &str| status.get(key).and_then(Value::as_str).unwrap_or_default();
    let body = json!({
        "state": text("state"),
        "context": text("label"),
        "target_url": text("targetURL"),
        "description": cut(notification.message(), 140),
    });
    let response = http
        .post(format!(
            "{api}/repos/{owner}/{repo}/statuses/{}",
            sha.trim()
        ))
        .header(reqwest::header::AUTHORIZATION, format!("token {token}"))
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .json(&body)
        .send()
        .await
        .map_err(super::request_error)?;
    super::check_status(response).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::{
        super::testing::{client, receiver},
        *,
    };

    /// An RSA key pair made by openssl (which the project's setup installs): private, public.
    fn key_pair() -> (String, String) {
        let run = |args: &[&str], input: Option<&str>| {
            use std::io::Write as _;
            let mut child = std::process::Command::new("openssl")
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("running openssl");
            if let Some(input) = input {
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(input.as_bytes())
                    .expect("writing");
            }
            let out = child.wait_with_output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}");
            String::from_utf8(out.stdout).expect("PEM")
        };
        let private = run(&["genrsa", "-traditional", "2048"], None);
        let public = run(&["rsa", "-pubout"], Some(&private));
        (private, public)
    }

    #[tokio::test]
    async fn a_commit_status_is_posted_with_an_installation_token_bought_by_the_app_s_jwt() {
        let (url, seen) = receiver(vec![
            (201, "{\"token\": \"ghs_secret\"}".into()),
            (201, "{}".into()),
        ])
        .await;
        let (private, public) = key_pair();
        let options = GitHubOptions {
            app_id: json!(12345),
            installation_id: json!("67890"),
            private_key: private,
            enterprise_base_url: format!("{url}/api/v3"),
        };
        options.validate().expect("valid");
        let notification = Notification(json!({
            "message": "Rollout shop has been completed.",
            "github": {
                "repoURLPath": "https://github.com/example/shop.git",
                "revisionPath": "abc123",
                "status": {"state": "success", "label": "cd/shop", "targetURL": "https://example.com/shop"},
            },
        }));
        send(&client(), &options, &notification)
            .await
            .expect("sent");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen[0].line,
            "POST /api/v3/app/installations/67890/access_tokens HTTP/1.1"
        );
        let jwt = seen[0]
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .expect("a JWT");
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).expect("public key");
        let claims = jsonwebtoken::decode::<Value>(
            jwt,
            &key,
            &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256),
        )
        .expect("signed with the App's key")
        .claims;
        assert_eq!(claims["iss"], "12345");
        assert_eq!(
            seen[1].line,
            "POST /api/v3/repos/example/shop/statuses/abc123 HTTP/1.1"
        );
        assert_eq!(seen[1].header("authorization"), Some("token ghs_secret"));
        let body: Value = serde_json::from_str(&seen[1].body).expect("JSON");
        assert_eq!(
            body,
            json!({"state": "success", "context": "cd/shop", "target_url": "https://example.com/shop",
                   "description": "Rollout shop has been completed."})
        );
        assert!(!format!("{options:?}").contains("PRIVATE KEY"));
        let bad = GitHubOptions {
            private_key: "not a key".into(),
            ..options
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn repository_urls_give_owner_and_name() {
        for url in [
            "https://github.com/argoproj/argo-rollouts",
            "https://github.com/argoproj/argo-rollouts.git",
            "git@github.com:argoproj/argo-rollouts.git",
            "https://ghe.example.com/argoproj/argo-rollouts/",
        ] {
            assert_eq!(
                full_name(url),
                Some(("argoproj".into(), "argo-rollouts".into())),
                "{url}"
            );
        }
        assert_eq!(full_name("nonsense"), None);
        assert_eq!(cut(&"x".repeat(200), 140).chars().count(), 140);
    }

    #[test]
    fn enterprise_urls_put_the_api_under_api_v3() {
        let options = |base: &str| GitHubOptions {
            enterprise_base_url: base.into(),
            ..GitHubOptions::default()
        };
        assert_eq!(
            options("https://ghe.example.com/api/v3/").urls(),
            (
                "https://ghe.example.com/api/v3".into(),
                "https://ghe.example.com/api/v3".into()
            )
        );
        assert_eq!(options("").urls().1, "https://api.github.com");
    }
}
