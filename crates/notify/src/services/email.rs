//! The email service, over SMTP: from `from` to the recipient, the template's `email.subject`
//! and `email.body` (the message without one), as HTML when `html: true`. TLS as Argo's mailer
//! does it: implicit TLS on port 465, else STARTTLS whenever the server offers it; a login
//! when `username` is set. The whole exchange is bounded in time.

use serde::Deserialize;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::header::ContentType,
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};

use crate::{Notification, subscription::Destination};

/// `service.email` options.
#[derive(Clone, Default, Deserialize)]
pub struct EmailOptions {
    /// The SMTP server.
    #[serde(default)]
    pub host: String,
    /// Its port (587 when absent).
    #[serde(default)]
    pub port: Option<u16>,
    /// The sender's address.
    #[serde(default)]
    pub from: String,
    /// The login (none when empty).
    #[serde(default)]
    pub username: String,
    /// The password.
    #[serde(default)]
    pub password: String,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Send the body as HTML.
    #[serde(default)]
    pub html: bool,
}

impl std::fmt::Debug for EmailOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("html", &self.html)
            .finish_non_exhaustive()
    }
}

/// The mail of one notification.
pub(super) fn message(
    options: &EmailOptions,
    notification: &Notification,
    to: &str,
) -> Result<Message, String> {
    let from = options
        .from
        .parse()
        .map_err(|e| format!("from {:?} is not an address: {e}", options.from))?;
    let to = to
        .parse()
        .map_err(|e| format!("recipient {to:?} is not an address: {e}"))?;
    let body = match notification.text(&["email", "body"]) {
        "" => notification.message(),
        b => b,
    };
    let content_type = if options.html {
        ContentType::TEXT_HTML
    } else {
        ContentType::TEXT_PLAIN
    };
    Message::builder()
        .from(from)
        .to(to)
        .subject(notification.text(&["email", "subject"]))
        .header(content_type)
        .body(body.to_owned())
        .map_err(|e| format!("building the mail: {e}"))
}

/// Sends one mail.
pub(super) async fn send(
    options: &EmailOptions,
    notification: &Notification,
    destination: &Destination,
) -> Result<(), String> {
    let mail = message(options, notification, &destination.recipient)?;
    let host = options.host.as_str();
    let port = options.port.unwrap_or(587);
    let tls = TlsParameters::builder(host.to_owned())
        .dangerous_accept_invalid_certs(options.insecure_skip_verify)
        .build()
        .map_err(|e| format!("TLS settings for {host}: {e}"))?;
    let tls = if port == 465 {
        Tls::Wrapper(tls)
    } else {
        Tls::Opportunistic(tls)
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(super::CONNECT_TIMEOUT));
    if !options.username.is_empty() {
        transport = transport.credentials(Credentials::new(
            options.username.clone(),
            options.password.clone(),
        ));
    }
    let transport = transport.build();
    match tokio::time::timeout(super::REQUEST_TIMEOUT, transport.send(mail)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "the SMTP server {host}:{port} refused the mail: {e}"
        )),
        Err(_) => Err(format!(
            "the SMTP server {host}:{port} did not answer within {:?}",
            super::REQUEST_TIMEOUT
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_mail_has_the_subject_body_and_type_the_template_and_options_give() {
        let options = EmailOptions {
            host: "smtp.example.com".into(),
            from: "sluice@example.com".into(),
            password: "hunter2".into(),
            html: true,
            ..EmailOptions::default()
        };
        let notification = Notification(json!({
            "message": "plain",
            "email": {"subject": "Rollout shop has been completed.", "body": "<b>done</b>"},
        }));
        let mail = String::from_utf8(
            message(&options, &notification, "ops@example.com")
                .expect("mail")
                .formatted(),
        )
        .expect("text");
        assert!(
            mail.contains("Subject: Rollout shop has been completed."),
            "{mail}"
        );
        assert!(mail.contains("To: ops@example.com"), "{mail}");
        assert!(mail.contains("Content-Type: text/html"), "{mail}");
        assert!(mail.contains("<b>done</b>"), "{mail}");
        assert!(message(&options, &notification, "not an address").is_err());
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
