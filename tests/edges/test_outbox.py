"""The SMTP edge against a real aiosmtpd: TLS, STARTTLS, login, codes, stalls, dropped lines."""

from __future__ import annotations

import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import pytest
from pydantic import SecretStr
from support import servers

from modbot.config import SmtpSettings
from modbot.errors import MaybeSentError, PermanentSendError, SendError, TemporarySendError
from modbot.outbox import Sender, send_one
from modbot.tls import client_context

pytestmark = pytest.mark.integration

STUDENT = "student@example.edu"


def reply(n: int = 1, to: str = STUDENT) -> EmailMessage:
    """A reply as render.py would build it, with a non-ASCII body and a Bcc that must not leak."""
    message = EmailMessage()
    message["From"] = "Dana Counselor <counselor@example.org>"
    message["To"] = f"Student <{to}>"
    message["Bcc"] = "archive@example.org"
    message["Subject"] = f"Thank you for reaching out ({n})"
    message["Message-ID"] = f"<reply-{n}@example.org>"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content(f"Thank you — please write to the confidential address instead. {n}\n")
    return message


# --- handing messages over -----------------------------------------------------------------------


async def test_sends_over_implicit_tls_after_login(
        smtp_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """The server receives the envelope, the logged-in user and the message without its Bcc."""
    await send_one(reply(), smtp_server.smtp_settings(), client_ssl_context)
    [received] = smtp_server.messages
    assert received.sender == "counselor@example.org"
    assert set(received.recipients) == {STUDENT, "archive@example.org"}
    assert received.login == smtp_server.username
    assert b"Message-ID: <reply-1@example.org>" in received.data
    assert b"Bcc" not in received.data


async def test_sends_without_login_when_no_user_name_is_set(
        smtp_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """Without a configured user name no AUTH is attempted."""
    await send_one(reply(), smtp_server.smtp_settings(login=False), client_ssl_context)
    assert smtp_server.auth_attempts == []
    assert [m.login for m in smtp_server.messages] == [None]


async def test_one_connection_carries_many_messages(
        smtp_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """A Sender logs in once and sends every message over that connection."""
    async with Sender(smtp_server.smtp_settings(), client_ssl_context) as sender:
        for n in range(1, 4):
            await sender.send(reply(n))
    assert len(smtp_server.messages) == 3
    assert smtp_server.auth_attempts == [smtp_server.username]


async def test_starttls_upgrades_before_login(
        smtp_starttls_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """With security "starttls" the server (which requires it) takes the login and the message."""
    await send_one(reply(), smtp_starttls_server.smtp_settings(), client_ssl_context)
    assert [m.login for m in smtp_starttls_server.messages] == [smtp_starttls_server.username]


async def test_plain_smtp_on_loopback_when_configured(
        smtp_plain_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """security = "none" (allowed only for loopback hosts) sends without TLS."""
    settings = smtp_plain_server.smtp_settings(login=False, security="none")
    await send_one(reply(), settings, client_ssl_context)
    assert len(smtp_plain_server.messages) == 1


# --- TLS and login refused -----------------------------------------------------------------------


@pytest.mark.parametrize("server_fixture", ["smtp_server", "smtp_starttls_server"])
async def test_certificate_from_another_ca_is_refused(
        server_fixture: str, untrusted_ca_file: Path, request: pytest.FixtureRequest) -> None:
    """A certificate the trust store does not vouch for is permanent, and no login is sent."""
    server: servers.SmtpServer = request.getfixturevalue(server_fixture)
    with pytest.raises(PermanentSendError, match="certificate was refused"):
        await send_one(reply(), server.smtp_settings(), client_context(untrusted_ca_file))
    assert server.auth_attempts == []
    assert server.messages == []


async def test_starttls_not_offered_is_refused_without_auth(
        smtp_plain_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """If STARTTLS is missing (stripped), nothing is sent: no AUTH, no password, no message."""
    with pytest.raises(PermanentSendError, match="does not offer STARTTLS"):
        await send_one(reply(), smtp_plain_server.smtp_settings(security="starttls"),
                       client_ssl_context)
    assert smtp_plain_server.auth_attempts == []
    assert smtp_plain_server.messages == []


async def test_wrong_password_is_permanent_and_not_quoted(
        smtp_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """A refused login (535) is permanent, and its message names the code, not the password."""
    settings = smtp_server.smtp_settings(password=SecretStr("not-the-password-99"))
    with pytest.raises(PermanentSendError, match="535") as raised:
        await send_one(reply(), settings, client_ssl_context)
    assert "not-the-password-99" not in str(raised.value)
    assert smtp_server.messages == []


# --- reply codes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["421 4.3.2 Shutting down", "450 4.2.1 Mailbox busy",
                                  "451 4.3.0 Local error", "452 4.3.1 Out of storage"])
@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_4xx_is_temporary(smtp_server: servers.SmtpServer,
                                client_ssl_context: ssl.SSLContext, code: str,
                                stage: str) -> None:
    """A 4xx answer at RCPT or at the end of DATA is a temporary failure naming the code."""
    setattr(smtp_server, f"{stage}_reply", code)
    with pytest.raises(TemporarySendError, match=code[:3]):
        await send_one(reply(), smtp_server.smtp_settings(), client_ssl_context)
    assert smtp_server.messages == []


@pytest.mark.parametrize("code", ["550 5.1.1 <student@example.edu>: no such user",
                                  "552 5.3.4 Message too big", "553 5.1.3 Bad address",
                                  "554 5.7.1 Rejected as spam"])
@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_5xx_is_permanent(smtp_server: servers.SmtpServer,
                                client_ssl_context: ssl.SSLContext, code: str,
                                stage: str) -> None:
    """A 5xx answer at RCPT or at the end of DATA is permanent; addresses are not repeated."""
    setattr(smtp_server, f"{stage}_reply", code)
    with pytest.raises(PermanentSendError, match=code[:3]) as raised:
        await send_one(reply(), smtp_server.smtp_settings(), client_ssl_context)
    assert STUDENT not in str(raised.value)
    assert smtp_server.messages == []


async def test_connection_stays_usable_after_a_refused_recipient(
        smtp_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """After a refusal the envelope is reset, and the next message goes over the same Sender."""
    async with Sender(smtp_server.smtp_settings(), client_ssl_context) as sender:
        smtp_server.rcpt_reply = "450 4.2.1 Mailbox busy"
        with pytest.raises(TemporarySendError):
            await sender.send(reply(1))
        smtp_server.rcpt_reply = None
        await sender.send(reply(2))
    assert [b"reply-2@" in m.data for m in smtp_server.messages] == [True]
    assert smtp_server.auth_attempts == [smtp_server.username]


async def test_message_without_recipients_is_permanent(
        smtp_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """A reply with no recipient header cannot be sent and is not retried."""
    message = reply()
    del message["To"]
    del message["Bcc"]
    with pytest.raises(PermanentSendError, match="recipient"):
        await send_one(message, smtp_server.smtp_settings(), client_ssl_context)


# --- stalls and dropped lines --------------------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_silent_server_gives_up_within_the_timeout(
        silent_server: servers.SilentServer, client_ssl_context: ssl.SSLContext,
        security: Literal["tls", "starttls"]) -> None:
    """A server that accepts and never answers costs one timeout and is worth retrying."""
    settings = SmtpSettings(host=silent_server.host, port=silent_server.port,
                                    security=security, timeout_seconds=0.5)
    start = time.monotonic()
    with pytest.raises(TemporarySendError, match=r"no answer within 0\.5 s"):
        await send_one(reply(), settings, client_ssl_context)
    assert time.monotonic() - start < 2.0


async def test_refused_connection_is_temporary(client_ssl_context: ssl.SSLContext) -> None:
    """Nobody listening on the port is a temporary failure."""
    settings = SmtpSettings(host=servers.HOST, port=servers.free_port(),
                                    timeout_seconds=2)
    with pytest.raises(TemporarySendError, match="connection failed"):
        await send_one(reply(), settings, client_ssl_context)


async def test_line_dropped_after_data_may_have_been_sent(
        smtp_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """A hang-up after the message went out is MaybeSentError, never a plain temporary failure."""
    smtp_server.drop_after_data = True
    with pytest.raises(MaybeSentError) as raised:
        await send_one(reply(), smtp_server.smtp_settings(), client_ssl_context)
    assert not isinstance(raised.value, TemporarySendError)
    assert len(smtp_server.messages) == 1


async def test_sender_reconnects_after_a_dropped_line(
        smtp_server: servers.SmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """The message after a dropped connection goes out over a new one."""
    async with Sender(smtp_server.smtp_settings(), client_ssl_context) as sender:
        smtp_server.drop_after_data = True
        with pytest.raises(SendError):
            await sender.send(reply(1))
        smtp_server.drop_after_data = False
        await sender.send(reply(2))
    assert len(smtp_server.messages) == 2
    assert smtp_server.auth_attempts == [smtp_server.username] * 2
