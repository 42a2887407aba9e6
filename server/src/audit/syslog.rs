//! The syslog handler: each event one RFC 5424 message (severity informational, MSGID the topic,
//! the event's JSON as the message), over UDP (a datagram each) or TCP (RFC 6587 octet counting,
//! one connection kept open and re-opened after a failure).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _, UdpSocket};
use std::time::Duration;

use crate::config::audit::SyslogSettings;

use super::Event;

/// RFC 5424's severity "informational".
const INFORMATIONAL: u8 = 6;

/// The open connection of each syslog handler.
#[derive(Debug, Default)]
pub(super) struct SyslogSenders {
    open: BTreeMap<String, (SyslogSettings, Sender)>,
}

#[derive(Debug)]
enum Sender {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
}

impl SyslogSenders {
    /// Sends `events` to the handler's collector, connecting first when needed.
    pub(super) fn write(
        &mut self,
        handler: &str,
        settings: &SyslogSettings,
        events: &[&Event<'_>],
    ) -> std::io::Result<()> {
        if self
            .open
            .get(handler)
            .is_none_or(|(open_settings, _)| open_settings != settings)
        {
            let sender = connect(settings)?;
            self.open.insert(handler.to_owned(), (settings.clone(), sender));
        }
        let outcome = match self.open.get_mut(handler) {
            Some((_, sender)) => send(sender, settings, events),
            None => Ok(()),
        };
        if outcome.is_err() {
            self.open.remove(handler);
        }
        outcome
    }
}

fn connect(settings: &SyslogSettings) -> std::io::Result<Sender> {
    let address = (settings.host.as_str(), settings.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{} does not resolve", settings.host)))?;
    if settings.tcp {
        let timeout = Duration::from_millis(settings.connect_timeout_millis.max(1));
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Sender::Tcp(stream))
    } else {
        let local: SocketAddr = if address.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        Ok(Sender::Udp(UdpSocket::bind(local)?, address))
    }
}

fn send(sender: &mut Sender, settings: &SyslogSettings, events: &[&Event<'_>]) -> std::io::Result<()> {
    for event in events {
        let message = format_message(settings.facility, event)?;
        match sender {
            Sender::Udp(socket, address) => {
                socket.send_to(message.as_bytes(), *address)?;
            }
            Sender::Tcp(stream) => {
                stream.write_all(format!("{} {message}", message.len()).as_bytes())?;
            }
        }
    }
    if let Sender::Tcp(stream) = sender {
        stream.flush()?;
    }
    Ok(())
}

/// `<PRI>1 TIMESTAMP HOSTNAME ferridm PROCID <topic> - <event JSON>`.
pub(super) fn format_message(facility: u8, event: &Event<'_>) -> std::io::Result<String> {
    let priority = u16::from(facility) * 8 + u16::from(INFORMATIONAL);
    let timestamp = super::pick::strings(&event.text, &["timestamp"])?.swap_remove(0);
    Ok(format!(
        "<{priority}>1 {} {} ferridm {} {} - {}",
        timestamp.as_deref().unwrap_or("-"),
        host_name(),
        std::process::id(),
        event.topic,
        event.text
    ))
}

fn host_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty() && name.is_ascii() && !name.contains(' '))
            .unwrap_or_else(|| "-".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_follow_rfc_5424() {
        let body = json!({"_id": "e1", "timestamp": "2026-12-04T10:00:00.000Z", "eventName": "access"});
        let event = Event {
            topic: "access",
            text: body.to_string().into(),
            columns: None,
        };
        let message = format_message(16, &event).unwrap_or_default();
        let prefix = format!(
            "<134>1 2026-12-04T10:00:00.000Z {} ferridm {} access - ",
            host_name(),
            std::process::id()
        );
        assert!(message.starts_with(&prefix), "{message}");
        assert!(message.ends_with(r#"{"_id":"e1","timestamp":"2026-12-04T10:00:00.000Z","eventName":"access"}"#));
    }
}
