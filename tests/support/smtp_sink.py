"""A loopback SMTP server for the tests: one JSON line per received message.

Usage: smtp_sink.py MAILBOX [auth]

Listens on 127.0.0.1 on a free port, prints `READY <port>` once listening, and appends
{"mailFrom", "rcptTos", "subject", "contentType", "body", "raw"} to MAILBOX for each message:
`body` is the decoded text of the HTML part (else the plain-text part) with `\n` line ends,
`contentType` that part's type. With `auth`, AUTH PLAIN/LOGIN as ferridm/secret is required
(without TLS). Runs until killed or until its standard input closes.
"""

import asyncio
import email
import email.policy
import json
import os
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse(content: bytes) -> dict:
    message = email.message_from_bytes(content, policy=email.policy.default)
    part = message.get_body(preferencelist=("html", "plain"))
    return {
        "subject": str(message.get("subject", "")),
        "contentType": part.get_content_type() if part else "",
        "body": part.get_content().replace("\r\n", "\n") if part else "",
        "raw": content.decode("utf-8", errors="replace"),
    }


class Sink:
    def __init__(self, mailbox: str):
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        record = {"mailFrom": envelope.mail_from, "rcptTos": list(envelope.rcpt_tos)}
        record.update(parse(envelope.original_content or envelope.content))
        line = (json.dumps(record) + "\n").encode("utf-8")
        fd = os.open(self.mailbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"ferridm", b"secret")
    # handled=False: aiosmtpd itself answers 235 or 535.
    return AuthResult(success=ok, handled=False)


async def main() -> None:
    mailbox = sys.argv[1]
    options = {"hostname": "localhost", "enable_SMTPUTF8": True}
    if sys.argv[2:] == ["auth"]:
        options.update(authenticator=authenticate, auth_required=True, auth_require_tls=False)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink(mailbox), **options), "127.0.0.1", 0)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    # Returns when standard input reaches end of file (the test process went away).
    await loop.run_in_executor(None, sys.stdin.buffer.read)


if __name__ == "__main__":
    asyncio.run(main())
