"""The IMAP edge against a real Dovecot: TLS, timeouts, UID cursor, peeking, keywords, Sent."""

from __future__ import annotations

import datetime
import logging
import ssl
import time
from pathlib import Path
from typing import Literal

import pytest
from pydantic import SecretStr
from support import servers

from modbot import mailbox as mailbox_module
from modbot.config import ImapSettings
from modbot.errors import ConfigError, MailboxAuthError, MailboxError
from modbot.mailbox import Mailbox
from modbot.tls import client_context

KEYWORD = "$ModbotDone"
CANARY = "Quentin Zebediah-Canary"


def notification(n: int, message_id: str | None = None) -> bytes:
    """A small LinkedIn-shaped message; ``CANARY`` is in its headers and body."""
    return (
        "From: LinkedIn <invitations@linkedin.com>\r\n"
        "To: Counselor <counselor@example.org>\r\n"
        f"Subject: {CANARY} wants to connect ({n})\r\n"
        f"Message-ID: <{message_id or f'invitation-{n}@linkedin.com'}>\r\n"
        "Date: Mon, 03 Mar 2025 09:00:00 +0000\r\n"
        "\r\n"
        f"{CANARY} would like to join your network. {n}\r\n"
    ).encode()


# --- the shared TLS context ----------------------------------------------------------------------


def test_client_context_refuses_a_missing_ca_file(tmp_path: Path) -> None:
    """A CA file that does not exist is a configuration error naming the file."""
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        client_context(tmp_path / "missing.pem")


def test_client_context_refuses_a_file_without_certificates(tmp_path: Path) -> None:
    """A CA file that holds no certificate is a configuration error."""
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no certificate"):
        client_context(path)


def test_client_context_verifies_with_tls_1_2_or_later(ca_file: Path) -> None:
    """The context checks certificates and host names and speaks no TLS older than 1.2."""
    context = client_context(ca_file)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


# --- connecting ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_connects_over_verified_tls_and_reports_the_folder(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """SELECT over implicit TLS reports UIDVALIDITY, UIDNEXT, the count and keyword support."""
    imap_user.append("INBOX", notification(1))
    imap_user.append("INBOX", notification(2))
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        state = mailbox.select("INBOX")
    assert state.uidvalidity > 0
    assert state.uidnext == 3
    assert state.exists == 2
    assert state.keywords_allowed


@pytest.mark.integration
def test_starttls_connects(imap_user: servers.ImapUser,
                           client_ssl_context: ssl.SSLContext) -> None:
    """With security "starttls" the plain port is upgraded and the login succeeds."""
    with Mailbox(imap_user.imap_settings(security="starttls"), client_ssl_context) as mailbox:
        assert mailbox.select("INBOX").exists == 0


@pytest.mark.integration
@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_certificate_from_another_ca_is_refused(
        imap_user: servers.ImapUser, untrusted_ca_file: Path,
        security: Literal["tls", "starttls"]) -> None:
    """A server certificate the trust store does not vouch for stops the connection."""
    settings = imap_user.imap_settings(security=security)
    untrusting = client_context(untrusted_ca_file)
    with (pytest.raises(MailboxError, match="certificate was refused"),
          Mailbox(settings, untrusting)):
        pass


@pytest.mark.integration
def test_starttls_not_offered_is_refused_before_login(
        imap_without_starttls: servers.ImapWithoutStarttls,
        client_ssl_context: ssl.SSLContext) -> None:
    """Without STARTTLS on offer the client hangs up and never sends its login."""
    settings = ImapSettings(
        host=imap_without_starttls.host, port=imap_without_starttls.port, username="counselor",
        password=SecretStr("hunter2-secret"), security="starttls", timeout_seconds=2)
    with (pytest.raises(MailboxError, match="does not offer STARTTLS"),
          Mailbox(settings, client_ssl_context)):
        pass
    imap_without_starttls.close()
    assert b"LOGIN" not in imap_without_starttls.received.upper()
    assert b"hunter2-secret" not in imap_without_starttls.received


@pytest.mark.integration
def test_wrong_password_is_an_auth_error_at_once(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """A refused login raises MailboxAuthError within a second, without the password in it."""
    settings = imap_user.imap_settings(password=SecretStr("wrong-password-123"))
    start = time.monotonic()
    with pytest.raises(MailboxAuthError) as raised, Mailbox(settings, client_ssl_context):
        pass
    assert time.monotonic() - start < 1.0
    assert "wrong-password-123" not in str(raised.value)
    assert imap_user.username in str(raised.value)


@pytest.mark.integration
@pytest.mark.parametrize("security", ["tls", "none"])
def test_silent_server_gives_up_within_the_timeout(
        silent_server: servers.SilentServer, client_ssl_context: ssl.SSLContext,
        security: Literal["tls", "none"]) -> None:
    """A server that accepts and never answers costs one timeout, not a hung poll."""
    settings = ImapSettings(
        host=silent_server.host, port=silent_server.port, username="counselor",
        password=SecretStr("secret"), security=security, timeout_seconds=0.5)
    start = time.monotonic()
    with (pytest.raises(MailboxError, match=r"no answer within 0\.5 s"),
          Mailbox(settings, client_ssl_context)):
        pass
    assert time.monotonic() - start < 2.0


# --- the UID cursor ------------------------------------------------------------------------------


@pytest.mark.integration
def test_uids_after_lists_only_newer_messages(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """UIDs above the cursor come back in ascending order."""
    uids = [imap_user.append("INBOX", notification(n)) for n in range(1, 4)]
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        assert mailbox.uids_after(0) == uids
        assert mailbox.uids_after(uids[0]) == uids[1:]


@pytest.mark.integration
def test_uids_after_is_empty_when_nothing_is_new(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """The highest UID that the server returns for ``n:*`` is not taken for a new message."""
    last = [imap_user.append("INBOX", notification(n)) for n in range(1, 3)][-1]
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        assert mailbox.uids_after(last) == []
        assert mailbox.uids_after(last + 10) == []


@pytest.mark.integration
def test_uids_since_finds_messages_from_that_day_on(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """SEARCH SINCE yesterday finds today's message; since the day after tomorrow finds none."""
    uid = imap_user.append("INBOX", notification(1))
    today = datetime.date.today()
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        assert mailbox.uids_since(today - datetime.timedelta(days=1)) == [uid]
        assert mailbox.uids_since(today + datetime.timedelta(days=2)) == []


@pytest.mark.integration
def test_cursor_calls_need_a_selected_folder(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """Searching before select() is a MailboxError, not a library exception."""
    with (Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox,
          pytest.raises(MailboxError, match="select")):
        mailbox.uids_after(0)


# --- reading without marking read ----------------------------------------------------------------


@pytest.mark.integration
def test_fetch_headers_returns_each_header_block_across_batches(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers of more messages than one batch holds all come back, without their bodies."""
    monkeypatch.setattr(mailbox_module, "FETCH_BATCH", 2)
    uids = [imap_user.append("INBOX", notification(n)) for n in range(1, 6)]
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        headers = mailbox.fetch_headers(uids)
    assert sorted(headers) == uids
    for n, uid in enumerate(uids, start=1):
        assert headers[uid].startswith(b"From: LinkedIn")
        assert f"({n})".encode() in headers[uid]
        assert headers[uid].endswith(b"\r\n\r\n")
        assert b"would like to join" not in headers[uid]


@pytest.mark.integration
def test_fetch_messages_returns_the_exact_bytes(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """A fetched message is byte for byte what was stored; unknown UIDs are simply absent."""
    raw = notification(7)
    uid = imap_user.append("INBOX", raw)
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        assert mailbox.fetch_messages([uid, uid + 100]) == {uid: raw}


@pytest.mark.integration
def test_fetching_leaves_flags_untouched(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """Fetching headers, messages and flags changes no flag: unread stays unread."""
    unread = imap_user.append("INBOX", notification(1))
    read = imap_user.append("INBOX", notification(2), flags=["\\Seen", "\\Flagged"])
    before = imap_user.flags("INBOX")
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        mailbox.fetch_headers([unread, read])
        mailbox.fetch_messages([unread, read])
        mailbox.flags([unread, read])
    assert imap_user.flags("INBOX") == before
    assert before[unread] == ()


@pytest.mark.integration
def test_debug_logging_never_shows_message_content(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture) -> None:
    """Even with everything at DEBUG, imapclient's protocol log stays silent."""
    logging.getLogger("imapclient").setLevel(logging.DEBUG)
    logging.getLogger("imapclient.imaplib").setLevel(logging.DEBUG)
    uid = imap_user.append("INBOX", notification(1))
    caplog.set_level(logging.DEBUG)
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        mailbox.fetch_messages([uid])
    assert CANARY not in caplog.text
    assert imap_user.password not in caplog.text
    assert logging.getLogger("imapclient").level >= logging.WARNING


# --- writing -------------------------------------------------------------------------------------


@pytest.mark.integration
def test_add_keyword_marks_the_message_and_nothing_else(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """The keyword is stored on Dovecot, and the message stays unread."""
    first = imap_user.append("INBOX", notification(1))
    second = imap_user.append("INBOX", notification(2))
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        assert mailbox.add_keyword([first], KEYWORD) is True
        assert mailbox.flags([first, second]) == {first: (KEYWORD,), second: ()}
    assert imap_user.flags("INBOX") == {first: (KEYWORD,), second: ()}


@pytest.mark.integration
def test_append_creates_the_folder_and_stores_the_message_seen(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """Appending to a missing Sent folder creates it; the copy is marked read."""
    raw = notification(1, "reply-1@counselor.example.org")
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.append("Sent", raw)
    assert imap_user.messages("Sent") == [raw]
    assert list(imap_user.flags("Sent").values()) == [("\\Seen",)]


@pytest.mark.integration
def test_find_message_id_finds_a_message_in_the_sent_folder(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """A reply kept in Sent is found by its Message-ID, with or without angle brackets."""
    imap_user.append("Sent", notification(1, "reply-1@counselor.example.org"))
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        assert mailbox.find_message_id("Sent", "<reply-1@counselor.example.org>")
        assert mailbox.find_message_id("Sent", "reply-1@counselor.example.org")
        assert not mailbox.find_message_id("Sent", "<reply-2@counselor.example.org>")


@pytest.mark.integration
def test_find_message_id_does_not_match_a_longer_id(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """IMAP's substring match on headers is confirmed against the whole Message-ID."""
    imap_user.append("Sent", notification(1, "xreply-1@counselor.example.org"))
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        assert not mailbox.find_message_id("Sent", "reply-1@counselor.example.org")


@pytest.mark.integration
def test_find_message_id_in_a_missing_folder_is_false(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """A Sent folder that does not exist holds no reply."""
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        assert not mailbox.find_message_id("Sent", "<reply-1@counselor.example.org>")


@pytest.mark.integration
def test_find_message_id_keeps_the_watched_folder_selected(
        imap_user: servers.ImapUser, client_ssl_context: ssl.SSLContext) -> None:
    """After looking in Sent, cursor calls still work on the folder selected before."""
    inbox_uid = imap_user.append("INBOX", notification(1))
    imap_user.append("Sent", notification(2, "reply-2@counselor.example.org"))
    imap_user.append("Sent", notification(3, "reply-3@counselor.example.org"))
    with Mailbox(imap_user.imap_settings(), client_ssl_context) as mailbox:
        mailbox.select("INBOX")
        assert mailbox.find_message_id("Sent", "<reply-3@counselor.example.org>")
        assert mailbox.uids_after(0) == [inbox_uid]
        assert mailbox.add_keyword([inbox_uid], KEYWORD)
    assert imap_user.flags("INBOX") == {inbox_uid: (KEYWORD,)}
