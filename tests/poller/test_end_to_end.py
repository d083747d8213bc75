"""End to end on real servers: notifications appended to Dovecot, replies at aiosmtpd."""

from __future__ import annotations

import email
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from sqlalchemy import select
from support import configs, servers
from support.faults import CONTACT, DIRECTORY, JORDAN, NEWSLETTER, PRIYA, SAM, SPOOF, fixture

from modbot.config import Account, PolicySettings
from modbot.model import Mode
from modbot.poll import Context, Poller
from modbot.store import OutboxStatus, schema

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REMINDER = "invitation_reminder_jordan_rivera.eml"


@pytest.fixture
def settings(imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
             tmp_path: Path) -> Account:
    return configs.account(tmp_path, imap_user.imap_settings(sent_folder="Sent"),
                           smtp_server.smtp_settings())


@pytest.fixture
def context(settings: Account, ca_file: Path) -> Context:
    return configs.poll_context(settings, ca_file)


async def poll(ctx: Context, now: datetime = NOW) -> None:
    await Poller(ctx).poll(now)


def received(smtp: servers.SmtpServer) -> list[EmailMessage]:
    parsed = [email.message_from_bytes(m.data, policy=default_policy) for m in smtp.messages]
    return [m for m in parsed if isinstance(m, EmailMessage)]


async def test_invitation_answered_exactly_once(context: Context, imap_user: servers.ImapUser,
                                                smtp_server: servers.SmtpServer) -> None:
    """An authentic invitation gets one reply however often the poll runs."""
    imap_user.append("INBOX", fixture(JORDAN))
    for minutes in (0, 5, 10):
        await poll(context, NOW + timedelta(minutes=minutes))
    replies = received(smtp_server)
    assert len(replies) == 1
    assert smtp_server.messages[0].recipients == ("jrivera@students.example.edu",)


async def test_reply_headers_and_text(context: Context, imap_user: servers.ImapUser,
                                      smtp_server: servers.SmtpServer) -> None:
    """The reply comes from the counselor, is marked automatic and gives the contact route."""
    imap_user.append("INBOX", fixture(JORDAN))
    await poll(context)
    (reply,) = received(smtp_server)
    assert reply["From"].addresses[0].addr_spec == "counselor@counsel.example.edu"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["X-Auto-Response-Suppress"] == "All"
    assert reply["Message-ID"].endswith("@counsel.example.edu>")
    text = reply.get_body(preferencelist=("plain",))
    html = reply.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert CONTACT in text.get_content()
    assert "counsel.example.edu/secure" in html.get_content()


async def test_flags_untouched_but_keyword(context: Context, imap_user: servers.ImapUser,
                                           smtp_server: servers.SmtpServer) -> None:
    """\\Seen never changes; LinkedIn mail gets the keyword and other mail nothing at all."""
    linkedin = imap_user.append("INBOX", fixture(JORDAN))
    other = imap_user.append("INBOX", fixture(NEWSLETTER), flags=("\\Flagged",))
    spoof = imap_user.append("INBOX", fixture(SPOOF), flags=("\\Seen",))
    before = imap_user.flags("INBOX")
    await poll(context)
    after = imap_user.flags("INBOX")
    assert after[other] == before[other] == ("\\Flagged",)
    assert after[linkedin] == ("$ModbotDone",)
    assert after[spoof] == ("$ModbotDone", "\\Seen")


async def test_spoof_and_other_mail_get_no_reply(context: Context, imap_user: servers.ImapUser,
                                                 smtp_server: servers.SmtpServer) -> None:
    """A spoof is held and recorded; a non-LinkedIn message is not answered."""
    imap_user.append("INBOX", fixture(SPOOF))
    imap_user.append("INBOX", fixture(NEWSLETTER))
    await poll(context)
    assert smtp_server.messages == []
    with context.store.engine.connect() as c:
        rows = c.execute(select(schema.messages.c.kind, schema.messages.c.action)).all()
    assert ("spoofed_linkedin", "hold") in rows
    assert all(kind != "not_linkedin" or action == "ignore" for kind, action in rows)


async def test_unknown_inviter_is_held(context: Context, imap_user: servers.ImapUser,
                                       smtp_server: servers.SmtpServer) -> None:
    """An inviter missing from the directory is held with that reason, not answered."""
    imap_user.append("INBOX", fixture(PRIYA))
    await poll(context)
    assert smtp_server.messages == []
    (item,) = context.store.open_items(context.settings.account)
    assert item.person_name == "Priya Natarajan"
    assert "not in the directory" in item.reasons[0]


async def test_reminder_not_answered_again(context: Context, imap_user: servers.ImapUser,
                                           smtp_server: servers.SmtpServer) -> None:
    """A reminder of an answered invitation (same invitationId) gets no second reply."""
    imap_user.append("INBOX", fixture(JORDAN))
    await poll(context)
    imap_user.append("INBOX", fixture(REMINDER))
    await poll(context, NOW + timedelta(minutes=5))
    assert len(smtp_server.messages) == 1


async def test_invitation_and_reminder_in_one_poll_answered_once(
        context: Context, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer) -> None:
    """The reply a poll queues counts for the next notification of the same poll."""
    imap_user.append("INBOX", fixture(JORDAN))
    imap_user.append("INBOX", fixture(REMINDER))
    await poll(context)
    assert len(smtp_server.messages) == 1


async def test_linkedin_message_answered_through_relay(
        context: Context, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer) -> None:
    """A LinkedIn message is answered through its reply.linkedin.com relay."""
    imap_user.append("INBOX", fixture(SAM))
    await poll(context)
    (message,) = smtp_server.messages
    assert message.recipients[0].endswith("@reply.linkedin.com")


async def test_reply_copy_kept_in_sent_folder(context: Context, imap_user: servers.ImapUser,
                                              smtp_server: servers.SmtpServer) -> None:
    """Each sent reply is also kept in the configured Sent folder."""
    imap_user.append("INBOX", fixture(JORDAN))
    await poll(context)
    (copy,) = imap_user.messages("Sent")
    (sent,) = received(smtp_server)
    assert sent["Message-ID"].encode() in copy


async def test_uidvalidity_change_does_not_re_reply(
        settings: Account, ca_file: Path, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer) -> None:
    """Recreating the folder with the same messages answers only the new one."""
    folder = settings.model_copy(update={"imap": imap_user.imap_settings(folder="Notices")})
    ctx = configs.poll_context(folder, ca_file)
    imap_user.append("Notices", fixture(JORDAN))
    await poll(ctx)
    with imap_user.connect() as client:
        before = client.folder_status("Notices", ["UIDVALIDITY"])
        client.delete_folder("Notices")
    imap_user.append("Notices", fixture(JORDAN))  # the same message, in a new folder
    imap_user.append("Notices", fixture(SAM))
    with imap_user.connect() as client:
        after = client.folder_status("Notices", ["UIDVALIDITY"])
    assert before != after
    await poll(ctx, NOW + timedelta(minutes=5))
    recipients = [m.recipients[0] for m in smtp_server.messages]
    assert recipients.count("jrivera@students.example.edu") == 1
    assert len(recipients) == 2


async def test_crash_after_send_resolved_from_sent_folder(
        context: Context, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer) -> None:
    """A reply left "sending" whose copy is in the Sent folder is marked sent, not resent."""
    imap_user.append("INBOX", fixture(JORDAN))
    await poll(context)
    (item,) = context.store.items(context.settings.account, OutboxStatus.SENT)
    context.store.mark(item.id, OutboxStatus.SENDING, now=NOW)  # as if killed before recording
    await poll(context, NOW + timedelta(minutes=5))
    assert len(smtp_server.messages) == 1
    sent = context.store.items(context.settings.account, OutboxStatus.SENT)
    assert [i.id for i in sent] == [item.id]


async def test_crash_before_confirmation_is_held_uncertain(
        context: Context, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer) -> None:
    """A reply left "sending" with no copy anywhere is held as "may have been sent"."""
    imap_user.append("INBOX", fixture(JORDAN))
    await poll(context)
    (item,) = context.store.items(context.settings.account, OutboxStatus.SENT)
    with imap_user.connect() as client:
        client.delete_folder("Sent")
    context.store.mark(item.id, OutboxStatus.SENDING, now=NOW)
    await poll(context, NOW + timedelta(minutes=5))
    assert len(smtp_server.messages) == 1
    held = context.store.items(context.settings.account, OutboxStatus.UNCERTAIN)
    assert [i.id for i in held] == [item.id]


async def test_temporary_failure_retried_once_later(
        context: Context, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer) -> None:
    """A 451 is retried after its backoff and then delivered exactly once."""
    imap_user.append("INBOX", fixture(JORDAN))
    smtp_server.rcpt_reply = "451 4.3.0 Try again later"
    await poll(context)
    assert context.store.items(context.settings.account, OutboxStatus.RETRY)
    smtp_server.rcpt_reply = None
    await poll(context, NOW + timedelta(seconds=30))  # before the backoff: nothing
    assert smtp_server.messages == []
    await poll(context, NOW + timedelta(hours=1))
    assert len(smtp_server.messages) == 1


async def test_permanent_failure_held(context: Context, imap_user: servers.ImapUser,
                                      smtp_server: servers.SmtpServer) -> None:
    """A 550 is not retried: the reply is held as failed for the counselor."""
    imap_user.append("INBOX", fixture(JORDAN))
    smtp_server.rcpt_reply = "550 5.1.1 No such user"
    await poll(context)
    smtp_server.rcpt_reply = None
    await poll(context, NOW + timedelta(hours=2))
    assert smtp_server.messages == []
    (item,) = context.store.items(context.settings.account, OutboxStatus.FAILED)
    assert item.attempts == 1


async def test_shadow_mode_sends_nothing(settings: Account, ca_file: Path,
                                         imap_user: servers.ImapUser,
                                         smtp_server: servers.SmtpServer) -> None:
    """In shadow mode the reply is decided and recorded but never sent."""
    shadow = settings.model_copy(update={"policy": PolicySettings(
        mode=Mode.SHADOW, trusted_authserv_ids=("mx.counsel.example.edu",))})
    ctx = configs.poll_context(shadow, ca_file)
    imap_user.append("INBOX", fixture(JORDAN))
    await poll(ctx)
    assert smtp_server.messages == []
    assert len(ctx.store.items(ctx.settings.account, OutboxStatus.SHADOW)) == 1


# --- the commands, as a counselor runs them ---------------------------------------------------


def write_config(tmp_path: Path, imap_user: servers.ImapUser, smtp: servers.SmtpServer,
                 ca_file: Path, poll_seconds: int = 300) -> Path:
    (tmp_path / "directory.csv").write_text(DIRECTORY, encoding="utf-8")
    return configs.write_config(tmp_path, configs.served_text(
        imap_user, smtp, ca_file, imap={"folder": "INBOX"},
        database={"url": configs.sqlite_url(tmp_path / "modbot.db")},
        policy={"mode": "auto", "trusted_authserv_ids": [configs.TRUSTED]},
        directory={"csv": tmp_path / "directory.csv"},
        schedule={"poll_seconds": poll_seconds}))


def modbot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modbot", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60, check=False)


def test_run_once_command(tmp_path: Path, imap_user: servers.ImapUser,
                          smtp_server: servers.SmtpServer, ca_file: Path) -> None:
    """`modbot run-once` with the documented keys answers once and creates the database 0600."""
    imap_user.append("INBOX", fixture(JORDAN))
    imap_user.append("INBOX", fixture(NEWSLETTER))
    path = write_config(tmp_path, imap_user, smtp_server, ca_file)
    env = {"MODBOT_IMAP_PASSWORD": imap_user.password}
    first = modbot("--config", str(path), "run-once", env=env)
    assert first.returncode == 0, first.stderr
    second = modbot("--config", str(path), "run-once", env=env)
    assert second.returncode == 0, second.stderr
    assert len(smtp_server.messages) == 1
    assert (tmp_path / "modbot.db").stat().st_mode & 0o777 == 0o600
    assert imap_user.password not in first.stdout + first.stderr


def test_run_once_reports_bad_password(tmp_path: Path, imap_user: servers.ImapUser,
                                       smtp_server: servers.SmtpServer, ca_file: Path) -> None:
    """A refused login is one sentence on stderr and a non-zero exit, with no password."""
    path = write_config(tmp_path, imap_user, smtp_server, ca_file)
    result = modbot("--config", str(path), "run-once",
                    env={"MODBOT_IMAP_PASSWORD": "wrong-password-canary"})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "wrong-password-canary" not in result.stderr + result.stdout


def test_daemon_answers_and_stops_on_sigterm(tmp_path: Path, imap_user: servers.ImapUser,
                                             smtp_server: servers.SmtpServer,
                                             ca_file: Path) -> None:
    """`modbot run` polls at start, answers, and exits cleanly on SIGTERM."""
    imap_user.append("INBOX", fixture(JORDAN))
    path = write_config(tmp_path, imap_user, smtp_server, ca_file, poll_seconds=10)
    process = subprocess.Popen(
        [sys.executable, "-m", "modbot", "--config", str(path), "run"],
        env={**os.environ, "MODBOT_IMAP_PASSWORD": imap_user.password},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not smtp_server.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(smtp_server.messages) == 1
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, stderr


async def test_poll_reports_progress(context: Context, imap_user: servers.ImapUser,
                                     smtp_server: servers.SmtpServer) -> None:
    """A poll tells its progress from none to all of its new messages (for a progress bar)."""
    for name in (JORDAN, NEWSLETTER, SPOOF):
        imap_user.append("INBOX", fixture(name))
    seen: list[tuple[int, int]] = []
    await Poller(context, progress=lambda done, total: seen.append((done, total))).poll(NOW)
    assert seen[0] == (0, 3)
    assert seen[-1] == (3, 3)


async def test_report_tells_the_reply_was_sent(context: Context, imap_user: servers.ImapUser,
                                               smtp_server: servers.SmtpServer) -> None:
    """The poll's report gives each reply's status after sending, not its queued intent."""
    imap_user.append("INBOX", fixture(JORDAN))
    report = await Poller(context).poll(NOW)
    (handled,) = [h for h in report.handled if h.action == "reply"]
    assert handled.status == OutboxStatus.SENT
