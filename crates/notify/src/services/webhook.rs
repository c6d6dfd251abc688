//! The webhook service: the template's `webhook.<service name>` gives the method (`GET` by
//! default, as Argo), a path appended to the URL and the body (`message` without one); the
//! service's options give the URL, headers and basic auth.

use serde::Deserialize;

use crate::Notification;

/// `service.webhook.<name>` options.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOptions {
    /// The name subscriptions use (the key's last part).
    #[serde(skip)]
    pub name: String,
    /// The URL requests go to.
    #[serde(default)]
    pub url: String,
    /// Headers every request carries (values may be secrets).
    #[serde(default)]
    pub headers: Vec<Header>,
    /// Basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
}

impl std::fmt::Debug for WebhookOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL, header values and password may be secrets: only their shape is shown.
        f.debug_struct("WebhookOptions")
            .field("name", &self.name)
            .field(
                "headers",
                &self.headers.iter().map(|h| &h.name).collect::<Vec<_>>(),
            )
            .field("basic_auth", &self.basic_auth.is_some())
            .finish_non_exhaustive()
    }
}

/// One header.
#[derive(Clone, Deserialize)]
pub struct Header {
    /// Its name.
    pub name: String,
    /// Its value.
    #[serde(default)]
    pub value: String,
}

/// A username and password.
#[derive(Clone, Deserialize)]
pub struct BasicAuth {
    /// The username.
    #[serde(default)]
    pub username: String,
    /// The password.
    #[serde(default)]
    pub password: String,
}

/// Sends one webhook request.
pub(super) async fn send(
    http: &reqwest::Client,
    options: &WebhookOptions,
    notification: &Notification,
) -> Result<(), String> {
    let own = notification.get(&["webhook", &options.name]);
    let field = |key: &str| {
        own.and_then(|o| o.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    let body = if own.is_some() {
        field("body").to_owned()
    } else {
        notification.message().to_owned()
    };
    let method = match field("method") {
        "" => "GET",
        m => m,
    };
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{method:?} is not an HTTP method"))?;
    let mut url = options.url.clone();
    let path = field("path");
    if !path.is_empty() {
        url = format!(
            "{}/{}",
            url.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
    }
    let mut request = http.request(method, &url).body(body);
    for header in &options.headers {
        request = request.header(&header.name, &header.value);
    }
    if let Some(auth) = &options.basic_auth {
        request = request.basic_auth(&auth.username, Some(&auth.password));
    }
    let response = request.send().await.map_err(super::request_error)?;
    super::check_status(response).await.map(drop)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{
        super::testing::{client, receiver},
        *,
    };

    #[tokio::test]
    async fn the_template_s_method_path_and_body_go_out_with_the_service_s_headers_and_auth() {
        let (url, seen) = receiver(vec![(200, String::new())]).await;
        let options = WebhookOptions {
            name: "hook".into(),
            url: format!("{url}/base/"),
            headers: vec![Header {
                name: "X-Token".into(),
                value: "t0ken".into(),
            }],
            basic_auth: Some(BasicAuth {
                username: "user".into(),
                password: "pass".into(),
            }),
        };
        let notification = Notification(json!({
            "message": "plain",
            "webhook": {"hook": {"method": "POST", "path": "/rollouts/shop", "body": "{\"name\":\"shop\"}"}},
        }));
        let http = client();
        send(&http, &options, &notification).await.expect("sent");
        let plain = Notification(json!({"message": "plain"}));
        send(&http, &options, &plain).await.expect("sent");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen[0].line, "POST /base/rollouts/shop HTTP/1.1");
        assert_eq!(seen[0].body, "{\"name\":\"shop\"}");
        assert_eq!(seen[0].header("x-token"), Some("t0ken"));
        assert_eq!(seen[0].header("authorization"), Some("Basic dXNlcjpwYXNz"));
        assert_eq!(seen[1].line, "GET /base/ HTTP/1.1");
        assert_eq!(seen[1].body, "plain");
        assert!(!format!("{options:?}").contains("t0ken"));
        assert!(!format!("{options:?}").contains("pass"));
    }

    #[tokio::test]
    async fn a_failing_receiver_is_an_error_with_its_status_and_no_url() {
        let (url, _) = receiver(vec![(500, "down".into())]).await;
        let options = WebhookOptions {
            name: "hook".into(),
            url: format!("{url}/secret-token-in-path"),
            ..WebhookOptions::default()
        };
        let error = send(&client(), &options, &Notification(json!({"message": "m"})))
            .await
            .expect_err("500");
        assert!(error.contains("500") && error.contains("down"), "{error}");
        assert!(!error.contains("secret-token"), "{error}");
        let options = WebhookOptions {
            name: "hook".into(),
            url: "http://127.0.0.1:1/secret-token-in-path".into(),
            ..WebhookOptions::default()
        };
        let error = send(&client(), &options, &Notification(json!({"message": "m"})))
            .await
            .expect_err("refused");
        assert!(!error.contains("secret-token"), "{error}");
    }
}
