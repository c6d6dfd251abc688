//! The Microsoft Teams service (incoming webhooks): the recipient names one of `recipientUrls`;
//! the body is the template's `teams.template` as written, else a MessageCard built as Argo's
//! teams service builds it: `@type`, `context` (Argo's spelling), `title`, `summary`, `text` (the message unless
//! `teams.text`), `themeColor`, `sections` (+ a section of `facts`), `potentialAction`. Teams
//! answers `1` (or nothing) when it took the card.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{Notification, subscription::Destination};

/// `service.teams` options.
#[derive(Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamsOptions {
    /// The webhook URL of each recipient (secrets: they carry the webhook's key).
    #[serde(default)]
    pub recipient_urls: BTreeMap<String, String>,
}

impl std::fmt::Debug for TeamsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsOptions")
            .field(
                "recipients",
                &self.recipient_urls.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The body posted for `notification`.
pub(super) fn body(notification: &Notification) -> Result<String, String> {
    let own = notification.text(&["teams", "template"]);
    if !own.is_empty() {
        return Ok(own.to_owned());
    }
    let field = |key: &str| notification.text(&["teams", key]);
    let json_field = |key: &str| -> Result<Option<Value>, String> {
        let text = field(key);
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("the template's teams.{key} is not JSON: {e}"))
    };
    let text = match field("text") {
        "" => notification.message(),
        t => t,
    };
    let mut card = Map::new();
    card.insert("@type".into(), json!("MessageCard"));
    card.insert("context".into(), json!("https://schema.org/extensions"));
    card.insert("title".into(), json!(field("title")));
    card.insert("summary".into(), json!(field("summary")));
    card.insert("text".into(), json!(text));
    if !field("themeColor").is_empty() {
        card.insert("themeColor".into(), json!(field("themeColor")));
    }
    let mut sections = match json_field("sections")? {
        Some(Value::Array(items)) => items,
        Some(_) => return Err("the template's teams.sections is not a JSON list".into()),
        None => Vec::new(),
    };
    if let Some(facts) = json_field("facts")? {
        sections.push(json!({ "facts": facts }));
    }
    if !sections.is_empty() {
        card.insert("sections".into(), Value::Array(sections));
    }
    if let Some(actions) = json_field("potentialAction")? {
        card.insert("potentialAction".into(), actions);
    }
    Ok(Value::Object(card).to_string())
}

/// Posts one card.
pub(super) async fn send(
    http: &reqwest::Client,
    options: &TeamsOptions,
    notification: &Notification,
    destination: &Destination,
) -> Result<(), String> {
    let url = options
        .recipient_urls
        .get(&destination.recipient)
        .ok_or_else(|| {
            format!(
                "no recipientUrls entry for recipient {:?}",
                destination.recipient
            )
        })?;
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body(notification)?)
        .send()
        .await
        .map_err(super::request_error)?;
    let text = super::check_status(response).await?;
    match text.trim() {
        "" | "1" => Ok(()),
        other => Err(format!("Teams refused the card: {}", super::excerpt(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::testing::{client, receiver},
        *,
    };

    #[tokio::test]
    async fn the_message_card_goes_to_the_recipient_s_url() {
        let (url, seen) = receiver(vec![(200, "1".into())]).await;
        let options = TeamsOptions {
            recipient_urls: [("ops".to_owned(), format!("{url}/webhookb2/key"))].into(),
        };
        let notification = Notification(json!({
            "message": "Rollout shop has been aborted.",
            "teams": {"title": "Aborted", "themeColor": "#E01E5A", "facts": "[{\"name\": \"Rollout\", \"value\": \"shop\"}]"},
        }));
        let destination = Destination {
            service: "teams".into(),
            recipient: "ops".into(),
        };
        send(&client(), &options, &notification, &destination)
            .await
            .expect("sent");
        let request = seen.lock().expect("lock")[0].clone();
        assert_eq!(request.line, "POST /webhookb2/key HTTP/1.1");
        let card: Value = serde_json::from_str(&request.body).expect("JSON");
        assert_eq!(card["@type"], "MessageCard");
        assert_eq!(card["title"], "Aborted");
        assert_eq!(card["text"], "Rollout shop has been aborted.");
        assert_eq!(card["themeColor"], "#E01E5A");
        assert_eq!(card["sections"][0]["facts"][0]["value"], "shop");
        let unknown = Destination {
            service: "teams".into(),
            recipient: "nobody".into(),
        };
        let error = send(&client(), &options, &notification, &unknown)
            .await
            .expect_err("no URL");
        assert!(error.contains("nobody"), "{error}");
        assert!(!format!("{options:?}").contains("webhookb2"));
    }

    #[test]
    fn the_template_s_own_card_is_sent_as_written() {
        let notification =
            Notification(json!({"message": "m", "teams": {"template": "{\"type\":\"message\"}"}}));
        assert_eq!(body(&notification).as_deref(), Ok("{\"type\":\"message\"}"));
    }
}
