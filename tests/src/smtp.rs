//! A real SMTP server on loopback for mail tests: [`SmtpServer`] runs `tests/support/smtp_sink.py`
//! (Python `aiosmtpd`) as a child process and reads back what it received as [`Mail`].
//!
//! The interpreter is `FERRIDM_TEST_PYTHON` when set; otherwise a virtualenv with
//! `tests/support/requirements.txt` is built once at `<target dir>/smtp-venv` and reused
//! ([`crate::python`]).

use std::fs::File;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helper_process::HelperProcess;
use crate::python::Venv;
use crate::workspace_root;

/// How long the sink may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`SmtpServer::wait_for_messages`] looks at the mailbox.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The credentials [`SmtpServer::start_with_auth`] requires.
const USERNAME: &str = "ferridm";
const PASSWORD: &str = "secret";

/// An SMTP server on 127.0.0.1 that keeps every message it receives; stopped on drop.
pub struct SmtpServer {
    /// The sink (it exits when its standard input closes, even if this process dies).
    process: HelperProcess,
    port: u16,
    auth: bool,
    mailbox: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts a server that accepts mail without authentication.
    pub fn start() -> Self {
        Self::spawn(false)
    }

    /// Starts a server that requires AUTH PLAIN or LOGIN as `ferridm`/`secret` (without TLS).
    pub fn start_with_auth() -> Self {
        Self::spawn(true)
    }

    fn spawn(auth: bool) -> Self {
        let python = python();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a mailbox directory: {e}"));
        let mailbox = dir.path().join("mailbox.jsonl");
        let stderr = dir.path().join("stderr.log");
        let stderr_file = File::create(&stderr).unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr.display()));
        let mut command = Command::new(&python);
        command
            .arg(workspace_root().join("tests/support/smtp_sink.py"))
            .arg(&mailbox);
        if auth {
            command.arg("auth");
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));

        let ready = |line: &str| line.strip_prefix("READY ")?.trim().parse::<u16>().ok();
        let (process, port) = HelperProcess::await_ready(child, READY_TIMEOUT, ready)
            .unwrap_or_else(|why| panic!("the SMTP sink did not start ({why}); stderr:\n{}", read_lossy(&stderr)));
        Self {
            process,
            port,
            auth,
            mailbox,
            stderr,
            _dir: dir,
        }
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file it appends one JSON line to per received message.
    pub fn mailbox_path(&self) -> &Path {
        &self.mailbox
    }

    /// The text of a `conf/external.email.json` that sends mail here (from `noreply@example.com`,
    /// no TLS, with the credentials when the server requires them).
    pub fn email_conf(&self) -> String {
        let auth = if self.auth {
            json!({"enable": true, "username": USERNAME, "password": PASSWORD})
        } else {
            json!({"enable": false})
        };
        json!({
            "host": "127.0.0.1",
            "port": self.port,
            "from": "noreply@example.com",
            "auth": auth,
            "starttls": {"enable": false},
            "ssl": {"enable": false}
        })
        .to_string()
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let bytes = match std::fs::read(&self.mailbox) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == ErrorKind::NotFound => return Vec::new(),
            Err(error) => panic!("cannot read {}: {error}", self.mailbox.display()),
        };
        // A line still being written has no newline yet: it is left for the next look.
        let complete = bytes
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(&[][..], |end| &bytes[..end]);
        String::from_utf8_lossy(complete)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|value| Mail::from_json(&value))
                    .unwrap_or_else(|| panic!("unexpected mailbox line: {line}"))
            })
            .collect()
    }

    /// Waits until at least `count` messages have arrived and returns them all, oldest first;
    /// panics when `timeout` passes first or the sink has exited.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            if let Some(status) = self.process.exited() {
                panic!(
                    "the SMTP sink exited ({status}) after {} of {count} messages; stderr:\n{}",
                    messages.len(),
                    read_lossy(&self.stderr)
                );
            }
            if Instant::now() >= deadline {
                let subjects: Vec<&str> = messages.iter().map(|mail| mail.subject.as_str()).collect();
                panic!(
                    "expected {count} messages within {timeout:?}, got {}: {subjects:?}",
                    messages.len()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// A port on 127.0.0.1 with nothing listening (for "the mail server is down").
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

/// A message the server received.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`).
    pub rcpt_tos: Vec<String>,
    /// The decoded `Subject`.
    pub subject: String,
    /// The type of the part [`Mail::body`] comes from (`text/html` or `text/plain`).
    pub content_type: String,
    /// The decoded text of the HTML part, or else of the plain-text part, with `\n` line ends.
    pub body: String,
    /// The message as sent.
    pub raw: String,
}

impl Mail {
    fn from_json(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key)?.as_str().map(str::to_owned);
        let rcpt_tos = value
            .get("rcptTos")?
            .as_array()?
            .iter()
            .map(|to| to.as_str().map(str::to_owned));
        Some(Self {
            mail_from: text("mailFrom")?,
            rcpt_tos: rcpt_tos.collect::<Option<_>>()?,
            subject: text("subject")?,
            content_type: text("contentType")?,
            body: text("body")?,
            raw: text("raw")?,
        })
    }

    /// The first `href` in the body, or else its first `http(s)://` URL, HTML-unescaped.
    pub fn link(&self) -> Option<String> {
        let body = self.body.as_str();
        let link = if let Some(start) = body.find("href=") {
            let rest = &body[start + "href=".len()..];
            let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
            let rest = &rest[1..];
            &rest[..rest.find(quote)?]
        } else {
            let start = [body.find("http://"), body.find("https://")]
                .into_iter()
                .flatten()
                .min()?;
            let rest = &body[start..];
            let end = rest
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')'])
        };
        Some(unescape_html(link))
    }

    /// The percent-decoded value of `name=` in [`Mail::link`]'s query string or fragment: pairs may
    /// follow `?`, `&` or `#` anywhere after the path (`…/#/passwordreset/&token=abc&code=1`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let link = self.link()?;
        let params = &link[link.find(['?', '#'])?..];
        params
            .split(['?', '&', '#'])
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }
}

fn unescape_html(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `%XX` to bytes (a `+` stays a `+`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        if bytes[i] == b'%'
            && let Some(hex) = hex
        {
            decoded.push(hex.iter().fold(0, |byte, digit| byte * 16 + hex_value(*digit)));
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// The Python to run the sink with: `FERRIDM_TEST_PYTHON`, or the SMTP virtualenv's.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("FERRIDM_TEST_PYTHON").filter(|python| !python.is_empty()) {
        return PathBuf::from(python);
    }
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(|| SMTP_VENV.bin().map(|bin| bin.join("python"))) {
        Ok(python) => python.clone(),
        Err(error) => panic!("cannot prepare the SMTP sink's virtualenv: {error}"),
    }
}

/// The SMTP sink's virtualenv.
const SMTP_VENV: Venv = Venv {
    name: "smtp-venv",
    requirements: "tests/support/requirements.txt",
    module: "aiosmtpd",
};

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::header::{ContentTransferEncoding, ContentType};
    use lettre::message::{MultiPart, SinglePart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{Message, SmtpTransport, Transport};

    const WAIT: Duration = Duration::from_secs(10);

    fn transport(port: u16, credentials: Option<(&str, &str)>) -> SmtpTransport {
        let mut builder = SmtpTransport::builder_dangerous("127.0.0.1")
            .port(port)
            .timeout(Some(WAIT));
        if let Some((user, password)) = credentials {
            builder = builder.credentials(Credentials::new(user.to_owned(), password.to_owned()));
        }
        builder.build()
    }

    fn message(subject: &str, plain: &str, html: &str) -> Message {
        let quoted_printable = |content_type, text: &str| {
            SinglePart::builder()
                .header(content_type)
                .header(ContentTransferEncoding::QuotedPrintable)
                .body(text.to_owned())
        };
        Message::builder()
            .from("Ferridm <noreply@example.com>".parse().unwrap())
            .to("Bjørn <bjorn@example.com>".parse().unwrap())
            .subject(subject)
            .multipart(
                MultiPart::alternative()
                    .singlepart(quoted_printable(ContentType::TEXT_PLAIN, plain))
                    .singlepart(quoted_printable(ContentType::TEXT_HTML, html)),
            )
            .unwrap()
    }

    #[test]
    fn receives_and_decodes_a_quoted_printable_html_message() {
        let server = SmtpServer::start();
        assert!(server.messages().is_empty());
        let conf: Value = serde_json::from_str(&server.email_conf()).unwrap();
        assert_eq!(conf["port"], server.port());
        assert_eq!(conf["auth"]["enable"], false);

        let link =
            "http://localhost:8080/#/passwordreset/&amp;token=abc.def&amp;code=1234&amp;email=bj%C3%B8rn%40example.com";
        let html = format!(
            "<html><body><p>Bonjour Bjørn, {} cliquez ici :</p>\n<a href=\"{link}\">Réinitialiser</a></body></html>",
            "très long texte ".repeat(10)
        );
        let mail = message(
            "Réinitialisez votre mot de passe",
            "plain https://example.com/plain",
            &html,
        );
        transport(server.port(), None).send(&mail).unwrap();

        let messages = server.wait_for_messages(1, WAIT);
        let [mail] = messages.as_slice() else {
            panic!("one message expected: {messages:?}")
        };
        assert_eq!(mail.mail_from, "noreply@example.com");
        assert_eq!(mail.rcpt_tos, ["bjorn@example.com"]);
        assert_eq!(mail.subject, "Réinitialisez votre mot de passe");
        assert_eq!(mail.content_type, "text/html");
        assert_eq!(mail.body.trim_end(), html);
        assert!(
            mail.raw.contains("Content-Transfer-Encoding: quoted-printable"),
            "{}",
            mail.raw
        );
        assert!(mail.raw.contains("=3D"), "the raw message is encoded: {}", mail.raw);
        assert_eq!(
            mail.link().as_deref(),
            Some("http://localhost:8080/#/passwordreset/&token=abc.def&code=1234&email=bj%C3%B8rn%40example.com")
        );
        assert_eq!(mail.query_param("token").as_deref(), Some("abc.def"));
        assert_eq!(mail.query_param("code").as_deref(), Some("1234"));
        assert_eq!(mail.query_param("email").as_deref(), Some("bjørn@example.com"));
        assert_eq!(mail.query_param("missing"), None);

        transport(server.port(), None)
            .send(&message("Second", "two", "<p>two</p>"))
            .unwrap();
        let subjects: Vec<String> = server
            .wait_for_messages(2, WAIT)
            .into_iter()
            .map(|mail| mail.subject)
            .collect();
        assert_eq!(subjects, ["Réinitialisez votre mot de passe", "Second"]);
    }

    #[test]
    fn the_auth_variant_requires_the_credentials() {
        let server = SmtpServer::start_with_auth();
        let conf: Value = serde_json::from_str(&server.email_conf()).unwrap();
        assert_eq!(
            conf["auth"],
            json!({"enable": true, "username": "ferridm", "password": "secret"})
        );
        let mail = || message("Authenticated", "see https://example.com/x?y=1.", "<p>hi</p>");

        assert!(transport(server.port(), None).send(&mail()).is_err());
        assert!(
            transport(server.port(), Some(("ferridm", "wrong")))
                .send(&mail())
                .is_err()
        );
        transport(server.port(), Some(("ferridm", "secret")))
            .send(&mail())
            .unwrap();

        let messages = server.wait_for_messages(1, WAIT);
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0].subject, "Authenticated");
    }

    #[test]
    fn links_in_plain_text_and_a_port_nobody_listens_on() {
        let mail = Mail {
            mail_from: String::new(),
            rcpt_tos: Vec::new(),
            subject: String::new(),
            content_type: "text/plain".to_owned(),
            body: "Open https://idm.example.com/verify?code=a%2Bb+c&x=1. Thanks".to_owned(),
            raw: String::new(),
        };
        assert_eq!(
            mail.link().as_deref(),
            Some("https://idm.example.com/verify?code=a%2Bb+c&x=1")
        );
        assert_eq!(mail.query_param("code").as_deref(), Some("a+b+c"));
        assert_eq!(mail.query_param("x").as_deref(), Some("1"));

        let down = transport(unused_port(), None).send(&message("Lost", "lost", "<p>lost</p>"));
        assert!(down.is_err());
    }
}
