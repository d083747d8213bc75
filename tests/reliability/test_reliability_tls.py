"""TLS: a self-signed certificate, a wrong host name, an expired certificate, another CA, and a
stripped STARTTLS are all refused, for IMAP and SMTP, before a single password byte leaves.

A TLS terminator with the certificate under test stands in front of a real plain-text server
(Dovecot's IMAP port, aiosmtpd offering AUTH in clear) and records every byte it receives. The
first test of each protocol is the control: with a good certificate the login goes through the
same terminator, and the password shows up in what it recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from support import faults, servers
from support.trials import NOW

from modbot.errors import MailboxError
from modbot.poll import Poller

pytestmark = pytest.mark.integration

PAST = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def bad_certificates(target: tuple[str, int]) -> dict[str, Callable[[trustme.CA],
                                                                    faults.TlsTerminator]]:
    names = servers.CERT_NAMES
    return {
        "self-signed": lambda ca: faults.TlsTerminator(
            target, None, key_and_cert=faults.self_signed(*names)),
        "wrong-host-name": lambda ca: faults.TlsTerminator(
            target, ca.issue_cert("mail.example.org")),
        "expired": lambda ca: faults.TlsTerminator(
            target, ca.issue_cert(*names, not_before=PAST, not_after=PAST + dt.timedelta(days=90))),
        "other-ca": lambda ca: faults.TlsTerminator(target, trustme.CA().issue_cert(*names)),
    }


KINDS = ("self-signed", "wrong-host-name", "expired", "other-ca")


@pytest.fixture
def plain_smtp(server_cert: trustme.LeafCert) -> Iterator[servers.SmtpServer]:
    """aiosmtpd without TLS, offering AUTH in clear: only the terminator protects it."""
    server = servers.SmtpServer("plain", server_cert).start()
    yield server
    server.stop()


# --- IMAP ------------------------------------------------------------------------------------


def imap_terminator(dovecot: servers.Dovecot, ca: trustme.CA, kind: str) -> faults.TlsTerminator:
    target = (dovecot.host, dovecot.imap_port)
    if kind == "good":
        return faults.TlsTerminator(target, ca.issue_cert(*servers.CERT_NAMES))
    return bad_certificates(target)[kind](ca)


async def test_imap_control_good_certificate_logs_in_through_the_terminator(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, ca_file: Path,
        ca: trustme.CA, dovecot: servers.Dovecot) -> None:
    """With a trusted certificate the poll works through the terminator, which sees the login."""
    terminator = imap_terminator(dovecot, ca, "good")
    try:
        ctx = faults.context_for(tmp_path, imap_user, smtp_server, ca_file,
                                 imap={"port": terminator.port})
        await Poller(ctx).poll(NOW)
        ctx.store.close()
    finally:
        terminator.close()
    assert terminator.handshakes == 1
    assert imap_user.password.encode() in terminator.plaintext


@pytest.mark.parametrize("kind", KINDS)
async def test_imap_bad_certificate_refused_before_login(
        kind: str, tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path, ca: trustme.CA, dovecot: servers.Dovecot) -> None:
    """The poll fails on the certificate and no password byte reaches the server."""
    terminator = imap_terminator(dovecot, ca, kind)
    try:
        ctx = faults.context_for(tmp_path, imap_user, smtp_server, ca_file,
                                 imap={"port": terminator.port})
        with pytest.raises(MailboxError, match="certificate"):
            await Poller(ctx).poll(NOW)
        ctx.store.close()
    finally:
        terminator.close()
    assert terminator.handshakes == 0
    assert terminator.plaintext == b""
    assert imap_user.password.encode() not in terminator.raw


async def test_imap_stripped_starttls_refused_before_login(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, ca_file: Path,
        imap_without_starttls: servers.ImapWithoutStarttls) -> None:
    """A server that does not offer STARTTLS gets no LOGIN and no password."""
    ctx = faults.context_for(tmp_path, imap_user, smtp_server, ca_file,
                             imap={"security": "starttls", "port": imap_without_starttls.port})
    with pytest.raises(MailboxError, match="STARTTLS"):
        await Poller(ctx).poll(NOW)
    ctx.store.close()
    assert b"LOGIN" not in bytes(imap_without_starttls.received).upper()
    assert imap_user.password.encode() not in imap_without_starttls.received


# --- SMTP ------------------------------------------------------------------------------------


def smtp_terminator(plain: servers.SmtpServer, ca: trustme.CA,
                    kind: str) -> faults.TlsTerminator:
    target = (plain.host, plain.port)
    if kind == "good":
        return faults.TlsTerminator(target, ca.issue_cert(*servers.CERT_NAMES))
    return bad_certificates(target)[kind](ca)


async def send_through(tmp_path: Path, imap_user: servers.ImapUser,
                       plain_smtp: servers.SmtpServer, ca_file: Path,
                       terminator: faults.TlsTerminator) -> list[str]:
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    ctx = faults.context_for(tmp_path, imap_user, plain_smtp, ca_file,
                             smtp_changes={"port": terminator.port, "security": "tls"})
    report = await Poller(ctx).poll(NOW)
    ctx.store.close()
    return report.errors


async def test_smtp_control_good_certificate_logs_in_through_the_terminator(
        tmp_path: Path, imap_user: servers.ImapUser, plain_smtp: servers.SmtpServer,
        ca_file: Path, ca: trustme.CA) -> None:
    """With a trusted certificate the reply goes out through the terminator, after AUTH."""
    terminator = smtp_terminator(plain_smtp, ca, "good")
    try:
        errors = await send_through(tmp_path, imap_user, plain_smtp, ca_file, terminator)
    finally:
        terminator.close()
    assert errors == []
    assert plain_smtp.auth_attempts == [plain_smtp.username]
    assert len(plain_smtp.messages) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_smtp_bad_certificate_refused_before_auth(
        kind: str, tmp_path: Path, imap_user: servers.ImapUser, plain_smtp: servers.SmtpServer,
        ca_file: Path, ca: trustme.CA) -> None:
    """Sending stops at the certificate: no AUTH, no password byte, no message."""
    terminator = smtp_terminator(plain_smtp, ca, kind)
    try:
        errors = await send_through(tmp_path, imap_user, plain_smtp, ca_file, terminator)
    finally:
        terminator.close()
    assert any("certificate" in error for error in errors)
    assert terminator.handshakes == 0
    assert terminator.plaintext == b""
    assert plain_smtp.password.encode() not in terminator.raw
    assert plain_smtp.auth_attempts == [] and plain_smtp.messages == []


async def test_smtp_stripped_starttls_refused_before_auth(
        tmp_path: Path, imap_user: servers.ImapUser, plain_smtp: servers.SmtpServer,
        ca_file: Path) -> None:
    """A server that does not offer STARTTLS gets no AUTH and no message."""
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    recorder = faults.TlsTerminator((plain_smtp.host, plain_smtp.port), None)
    try:
        ctx = faults.context_for(tmp_path, imap_user, plain_smtp, ca_file,
                                 smtp_changes={"port": recorder.port, "security": "starttls"})
        report = await Poller(ctx).poll(NOW)
        ctx.store.close()
    finally:
        recorder.close()
    assert any("STARTTLS" in error for error in report.errors)
    assert b"AUTH" not in bytes(recorder.raw).upper()
    assert plain_smtp.password.encode() not in recorder.raw
    assert plain_smtp.auth_attempts == [] and plain_smtp.messages == []
