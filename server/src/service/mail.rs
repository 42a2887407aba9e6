//! Outgoing mail for self-service (e-mail verification). With `conf/external.email.json`
//! naming an SMTP host (typed with the generation), messages go out through it; otherwise they
//! are written, one JSON file each, to the outbox directory under the data directory, where
//! operators and tests read them.

use ferridm_core::{Error, Result};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use serde_json::{Value, json};

use super::context::RequestContext;

const DEFAULT_FROM: &str = "ferridm@localhost";

fn text(message: &Value, key: &str) -> String {
    message.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// Sends (or files) one message `{to, subject, body, mimeType?, from?}`; returns where it went.
pub fn send(ctx: &RequestContext, message: &Value) -> Result<Value> {
    let config = &ctx.generation.email;
    let from = message
        .get("from")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(config.from.clone())
        .unwrap_or_else(|| DEFAULT_FROM.to_owned());
    let to = text(message, "to");
    if to.is_empty() {
        return Err(Error::bad_request("mail should not be empty"));
    }
    if !config.has_server() {
        return write_outbox(ctx, &from, &to, message);
    }
    let mime = text(message, "mimeType");
    let email = Message::builder()
        .from(
            from.parse()
                .map_err(|_| Error::bad_request(format!("Invalid sender address {from}")))?,
        )
        .to(to
            .parse()
            .map_err(|_| Error::bad_request(format!("Invalid e-mail address {to}")))?)
        .subject(text(message, "subject"))
        .header(if mime.contains("html") {
            ContentType::TEXT_HTML
        } else {
            ContentType::TEXT_PLAIN
        })
        .body(text(message, "body"))
        .map_err(|error| Error::bad_request(format!("Invalid message: {error}")))?;
    let builder = if config.ssl.as_ref().is_some_and(|ssl| ssl.enable) {
        SmtpTransport::relay(&config.host)
    } else if config.starttls.as_ref().is_some_and(|tls| tls.enable) {
        SmtpTransport::starttls_relay(&config.host)
    } else {
        Ok(SmtpTransport::builder_dangerous(&config.host))
    };
    let mut builder = builder.map_err(|error| {
        tracing::error!(%error, host = %config.host, "cannot set up SMTP");
        Error::internal("The mail server is misconfigured")
    })?;
    if let Some(port) = config.port {
        builder = builder.port(port);
    }
    if let Some(auth) = config.auth.as_ref().filter(|auth| auth.enable) {
        builder = builder.credentials(Credentials::new(auth.username.clone(), auth.password.clone()));
    }
    builder.build().send(&email).map_err(|error| {
        tracing::error!(%error, host = %config.host, "sending mail failed");
        Error::Unavailable("The mail could not be sent".into())
    })?;
    tracing::info!(host = %config.host, "mail sent");
    Ok(json!({"sent": true}))
}

fn write_outbox(ctx: &RequestContext, from: &str, to: &str, message: &Value) -> Result<Value> {
    let outbox = ctx
        .state
        .paths
        .resolve(&ctx.generation.settings.data_dir)
        .join("outbox");
    std::fs::create_dir_all(&outbox).map_err(|error| {
        tracing::error!(%error, path = %outbox.display(), "cannot create the mail outbox");
        Error::internal("The mail outbox is not writable")
    })?;
    let name = format!(
        "{}-{}.json",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        uuid::Uuid::new_v4().simple()
    );
    let path = outbox.join(&name);
    let record = json!({
        "from": from,
        "to": to,
        "subject": text(message, "subject"),
        "mimeType": message.get("mimeType").cloned().unwrap_or(json!("text/plain")),
        "body": text(message, "body"),
        "date": ctx.now_iso(),
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap_or_default()).map_err(|error| {
        tracing::error!(%error, path = %path.display(), "cannot write to the mail outbox");
        Error::internal("The mail outbox is not writable")
    })?;
    tracing::info!(outbox = %name, "mail written to the outbox (no SMTP host configured)");
    Ok(json!({"outbox": name}))
}
