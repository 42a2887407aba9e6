//! `external.email.json` (IDM's keys): the SMTP server self-service mail goes through. Parsed
//! with the rest of a generation, so a broken file is refused at reload like any other; without
//! the file (or with an empty `host`) mail is written to the outbox under the data directory.

use serde::Deserialize;

/// Where mail goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EmailConfig {
    /// The SMTP host (empty: write to the outbox).
    pub host: String,
    /// The port (the transport's default when absent).
    pub port: Option<u16>,
    /// The default sender.
    pub from: Option<String>,
    /// SMTP authentication.
    pub auth: Option<SmtpAuth>,
    /// STARTTLS.
    pub starttls: Option<Toggle>,
    /// TLS from the start (SMTPS).
    pub ssl: Option<Toggle>,
}

impl EmailConfig {
    /// True when mail goes to an SMTP server.
    pub fn has_server(&self) -> bool {
        !self.host.is_empty()
    }
}

/// `auth`: SMTP credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SmtpAuth {
    /// Whether to authenticate.
    pub enable: bool,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// `{"enable": bool}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Toggle {
    /// On or off.
    pub enable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn idm_documents_parse_and_wrong_types_are_refused() {
        let config: EmailConfig = serde_json::from_value(json!({
            "host": "127.0.0.1", "port": 2525, "from": "idm@example.com",
            "auth": {"enable": true, "username": "u", "password": "p"},
            "starttls": {"enable": false}, "debug": false
        }))
        .unwrap();
        assert!(config.has_server());
        assert_eq!(config.port, Some(2525));
        assert!(serde_json::from_value::<EmailConfig>(json!({"host": "h", "port": "twenty-five"})).is_err());
        assert!(!EmailConfig::default().has_server());
    }
}
