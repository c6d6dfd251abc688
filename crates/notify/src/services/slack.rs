//! The Slack service: `chat.postMessage` as Argo's (the slack-go client) calls it: a form with
//! `channel` (the recipient), `text` (the message), `attachments` and `blocks` (the template's
//! JSON, checked), `username`, `icon_emoji` or `icon_url`; the token as a Bearer header. Slack
//! answers 200 with `{"ok": false, "error": ...}` on failure, which is an error here too.
//! `apiURL` points elsewhere (Slack Enterprise Grid, a test receiver).

use serde::Deserialize;

use crate::{Notification, subscription::Destination};

/// `service.slack` options.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackOptions {
    /// The bot token.
    #[serde(default)]
    pub token: String,
    /// The default username.
    #[serde(default)]
    pub username: String,
    /// The default icon: `:emoji:` or a URL.
    #[serde(default)]
    pub icon: String,
    /// The API's base URL, `https://slack.com/api/` by default.
    #[serde(default, rename = "apiURL")]
    pub api_url: String,
}

impl std::fmt::Debug for SlackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackOptions")
            .field("username", &self.username)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// The form of one `chat.postMessage` call.
pub(super) fn form(
    options: &SlackOptions,
    notification: &Notification,
    channel: &str,
) -> Result<Vec<(&'static str, String)>, String> {
    let mut form = vec![
        ("channel", channel.to_owned()),
        ("text", notification.message().to_owned()),
    ];
    for key in ["attachments", "blocks"] {
        let json = notification.text(&["slack", key]);
        if json.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| format!("the template's slack.{key} is not JSON: {e}"))?;
        form.push((key, value.to_string()));
    }
    let username = match notification.text(&["slack", "username"]) {
        "" => options.username.as_str(),
        u => u,
    };
    if !username.is_empty() {
        form.push(("username", username.to_owned()));
    }
    let icon = match notification.text(&["slack", "icon"]) {
        "" => options.icon.as_str(),
        i => i,
    };
    if icon.len() > 2 && icon.starts_with(':') && icon.ends_with(':') {
        form.push(("icon_emoji", icon.to_owned()));
    } else if icon.starts_with("http://") || icon.starts_with("https://") {
        form.push(("icon_url", icon.to_owned()));
    }
    Ok(form)
}

/// Posts one message.
pub(super) async fn send(
    http: &reqwest::Client,
    options: &SlackOptions,
    notification: &Notification,
    destination: &Destination,
) -> Result<(), String> {
    let form = form(options, notification, &destination.recipient)?;
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let base = match options.api_url.as_str() {
        "" => "https://slack.com/api/",
        url => url,
    };
    let url = format!("{}/chat.postMessage", base.trim_end_matches('/'));
    let response = http
        .post(url)
        .bearer_auth(&options.token)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(super::request_error)?;
    let text = super::check_status(response).await?;
    let answer: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
        format!(
            "Slack answered something else than JSON: {}",
            super::excerpt(&text)
        )
    })?;
    if answer["ok"] == true {
        Ok(())
    } else {
        Err(format!(
            "Slack refused the message: {}",
            answer["error"].as_str().unwrap_or("no reason given")
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{
        super::testing::{client, receiver},
        *,
    };

    fn destination() -> Destination {
        Destination {
            service: "slack".into(),
            recipient: "deploys".into(),
        }
    }

    #[tokio::test]
    async fn chat_post_message_carries_the_channel_text_attachments_and_token() {
        let (url, seen) = receiver(vec![(200, "{\"ok\":true}".into())]).await;
        let options = SlackOptions {
            token: "xoxb-secret".into(),
            username: "sluice".into(),
            icon: ":ship:".into(),
            api_url: format!("{url}/api/"),
        };
        let notification = Notification(json!({
            "message": "Rollout shop has been completed.",
            "slack": {"attachments": "[{\"title\": \"shop\"}]"},
        }));
        send(&client(), &options, &notification, &destination())
            .await
            .expect("sent");
        let request = seen.lock().expect("lock")[0].clone();
        assert_eq!(request.line, "POST /api/chat.postMessage HTTP/1.1");
        assert_eq!(request.header("authorization"), Some("Bearer xoxb-secret"));
        let form: std::collections::BTreeMap<String, String> =
            form_urlencoded::parse(request.body.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(form["channel"], "deploys");
        assert_eq!(form["text"], "Rollout shop has been completed.");
        assert_eq!(form["attachments"], "[{\"title\":\"shop\"}]");
        assert_eq!(form["username"], "sluice");
        assert_eq!(form["icon_emoji"], ":ship:");
        assert!(!format!("{options:?}").contains("xoxb"));
    }

    #[tokio::test]
    async fn slack_s_ok_false_and_bad_attachments_are_errors() {
        let (url, _) = receiver(vec![(
            200,
            "{\"ok\":false,\"error\":\"channel_not_found\"}".into(),
        )])
        .await;
        let options = SlackOptions {
            api_url: url,
            ..SlackOptions::default()
        };
        let http = client();
        let error = send(
            &http,
            &options,
            &Notification(json!({"message": "m"})),
            &destination(),
        )
        .await
        .expect_err("refused");
        assert!(error.contains("channel_not_found"), "{error}");
        let bad = Notification(json!({"message": "m", "slack": {"blocks": "[{,"}}));
        assert!(
            form(&options, &bad, "c")
                .expect_err("not JSON")
                .contains("slack.blocks")
        );
    }
}
