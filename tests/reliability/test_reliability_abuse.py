"""Abuse end to end: spoofs get no reply, names cannot inject headers or recipients, an
auto-answering peer gets at most one message, and a flood of invitations is capped, pauses
replies with one alert to the counselor, and repeats nobody."""

from __future__ import annotations

import asyncio
import base64
import csv
import email
import io
import re
import tempfile
import uuid
from datetime import timedelta
from email.header import Header
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support import faults, servers
from support.trials import NOW

from modbot.poll import Poller
from modbot.store import schema

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data"


def parsed(smtp: servers.SmtpServer) -> list[EmailMessage]:
    found = [email.message_from_bytes(m.data, policy=default_policy) for m in smtp.messages]
    return [m for m in found if isinstance(m, EmailMessage)]


# --- spoofs ----------------------------------------------------------------------------------


SPOOFS = [*sorted(p.name for p in DATA.glob("spoof_*.eml")),
          "corpus/spoof_linkedin_welcome_2013.eml"]


async def test_spoofs_get_no_reply(tmp_path: Path, imap_user: servers.ImapUser,
                                   smtp_server: servers.SmtpServer, ca_file: Path) -> None:
    """Every forged LinkedIn message of the corpus is recorded and held; none is answered, even
    with the people they name in the directory."""
    for name in SPOOFS:
        imap_user.append("INBOX", (DATA / name).read_bytes())
    ctx = faults.context_for(tmp_path, imap_user, smtp_server, ca_file)
    for minutes in (0, 5):
        await Poller(ctx).poll(NOW + timedelta(minutes=minutes))
    with ctx.store.engine.connect() as c:
        rows = c.execute(select(schema.messages.c.kind, schema.messages.c.action)).all()
        replies = c.execute(select(func.count()).select_from(schema.outbox)).scalar_one()
    ctx.store.close()
    assert len(SPOOFS) >= 10
    assert smtp_server.messages == [] and replies == 0
    assert len(rows) == len(SPOOFS)
    assert all(action != "reply" for _, action in rows)


# --- header injection ------------------------------------------------------------------------


PAYLOADS = ["\r\nBcc: evil@attacker.example", "\nTo: second@attacker.example",
            "\r\n\r\n<b>body</b>", "<script>alert(1)</script>", '"Quoted", Comma <x@y.z>',
            "=?utf-8?q?Bcc=3A_evil=40attacker.example?=", "Ωμέγα 李雷 أحمد", "\u2028\u0085",
            "%0d%0aBcc:evil@attacker.example", "&lt;tag&gt; & <img src=x onerror=alert(1)>"]
names = st.builds(
    lambda before, payload, after: (before + payload + after).strip(" ") or "X",
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
            max_size=12),
    st.sampled_from(PAYLOADS),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
            max_size=12),
)
TARGET = faults.Person(name="", slug="inject-target-1", email="target@students.example.edu",
                       invitation_id="7200000000000000001")


def invitation_named(name: str) -> bytes:
    """The generated invitation with ``name`` everywhere, the From name as encoded words (the
    way a real name with odd characters arrives)."""
    raw = faults.invitation(faults.Person("Placeholder Name", TARGET.slug, TARGET.email,
                                          TARGET.invitation_id))
    encoded = Header(name, "utf-8").encode()
    head, _, _ = raw.partition(b"\n\n")
    text = f"Hi Morgan,\n{name} would like to connect.\n\nView {name}’s profile: " \
           f"https://www.linkedin.com/comm/in/{TARGET.slug}?midToken=t1\nAccept: " \
           "https://www.linkedin.com/comm/mynetwork/invite-accept/invitationId/" \
           f"{TARGET.invitation_id}/?sharedKey=k1\n"
    lines = [line for line in head.decode().split("\n")
             if not line.lower().startswith(("from:", "content-", "mime-version"))
             and not line.startswith((" ", "\t"))]
    lines.insert(0, f"From: {encoded} <invitations@linkedin.com>")
    lines += ["MIME-Version: 1.0", 'Content-Type: text/plain; charset="utf-8"',
              "Content-Transfer-Encoding: base64"]
    return ("\n".join(lines) + "\n\n").encode() + base64.encodebytes(text.encode())


def directory_with(name: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "email", "linkedin_url"])
    writer.writerow([name, TARGET.email, f"https://www.linkedin.com/in/{TARGET.slug}"])
    return out.getvalue()


@pytest.fixture(scope="module")
def baseline_headers(dovecot: servers.Dovecot, server_cert: trustme.LeafCert,
                     ca_file: Path) -> list[str]:
    """The header names of a reply to a plainly named person: what every reply may carry."""
    smtp = servers.SmtpServer("tls", server_cert).start()
    try:
        return [name.lower() for name in _reply_to(dovecot, smtp, ca_file, "Jordan Rivera")[0]]
    finally:
        smtp.stop()


def _reply_to(dovecot: servers.Dovecot, smtp: servers.SmtpServer, ca_file: Path,
              name: str) -> tuple[list[str], EmailMessage | None, list[servers.Received]]:
    user = dovecot.add_user()
    user.append("INBOX", invitation_named(name))
    with tempfile.TemporaryDirectory() as directory:
        ctx = faults.context_for(Path(directory), user, smtp, ca_file,
                                 directory=directory_with(name))
        try:
            asyncio.run(Poller(ctx).poll(NOW))
        finally:
            ctx.store.close()
    received = list(smtp.messages)
    smtp.messages.clear()
    if not received:
        return [], None, []
    (message,) = [email.message_from_bytes(r.data, policy=default_policy) for r in received]
    assert isinstance(message, EmailMessage)
    return list(message.keys()), message, received


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=names)
def test_names_never_add_headers_or_recipients(
        name: str, dovecot: servers.Dovecot, smtp_server: servers.SmtpServer, ca_file: Path,
        baseline_headers: list[str]) -> None:
    """Whatever the person's name holds (CR/LF, encoded words, HTML, any script), the reply has
    exactly the usual headers once each, one recipient, and the name's HTML escaped."""
    keys, message, received = _reply_to(dovecot, smtp_server, ca_file, name)
    if message is None:
        return  # refused to build (e.g. CR/LF in the To name): held, which is also safe
    assert sorted(k.lower() for k in keys) == sorted(baseline_headers)
    assert [r.recipients for r in received] == [(TARGET.email,)]
    assert [a.addr_spec for a in message["To"].addresses] == [TARGET.email]
    html = message.get_body(preferencelist=("html",))
    if html is not None:
        content = html.get_content()
        assert "<script>" not in content and "<img src=x" not in content
        assert "<b>body</b>" not in content


# --- loops -----------------------------------------------------------------------------------


class AutoAnsweringPeer(servers.SmtpServer):
    """An SMTP server whose every recipient answers every message at once, into the counselor's
    inbox: as an out-of-office reply (``style="auto"``, with Auto-Submitted), as a person's
    reply without it (``"plain"``), or, for LinkedIn's relay, as a new LinkedIn message
    notification from the same person with a new relay address (``"relay"``)."""

    def __init__(self, cert: trustme.LeafCert, inbox: servers.ImapUser, style: str) -> None:
        super().__init__("tls", cert)
        self.inbox = inbox
        self.style = style

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        incoming = email.message_from_bytes(envelope.original_content or b"",
                                            policy=default_policy)
        for recipient in envelope.rcpt_tos:
            await asyncio.to_thread(self.inbox.append, "INBOX",
                                    self.answer(recipient, incoming))
        return answer

    def answer(self, recipient: str, incoming: email.message.Message) -> bytes:
        if recipient.endswith("@reply.linkedin.com"):
            raw = (DATA / faults.SAM).read_bytes()
            relay = re.search(rb"[0-9a-f-]{36}(?=@reply\.linkedin\.com)", raw)
            assert relay is not None
            fresh = str(uuid.uuid4()).encode()
            raw = raw.replace(relay.group(0), fresh)
            return raw.replace(b"724049551.49551.1741724049551", fresh[:18])
        reply = EmailMessage()
        reply["From"] = recipient
        reply["To"] = faults.COUNSELOR
        reply["Subject"] = f"Re: {incoming['Subject']}"
        reply["Message-ID"] = f"<{uuid.uuid4().hex}@students.example.edu>"
        reply["In-Reply-To"] = incoming["Message-ID"]
        reply["References"] = incoming["Message-ID"]
        if self.style == "auto":
            reply["Auto-Submitted"] = "auto-replied"
        reply.set_content("I am away until Monday. Thank you for your message.\n")
        return bytes(reply)


@pytest.mark.parametrize(("style", "fixture"), [("auto", faults.JORDAN), ("plain", faults.JORDAN),
                                                ("relay", faults.SAM)])
async def test_auto_answering_peer_gets_at_most_one_message(
        style: str, fixture: str, tmp_path: Path, imap_user: servers.ImapUser,
        server_cert: trustme.LeafCert, ca_file: Path) -> None:
    """Each answer of the peer arrives in the inbox before the next poll; five polls later the
    peer has had exactly one message from modbot."""
    peer = AutoAnsweringPeer(server_cert, imap_user, style).start()
    try:
        imap_user.append("INBOX", faults.fixture(fixture))
        ctx = faults.context_for(tmp_path, imap_user, peer, ca_file)
        for minutes in range(0, 25, 5):
            await Poller(ctx).poll(NOW + timedelta(minutes=minutes))
        ctx.store.close()
    finally:
        peer.stop()
    assert len(peer.messages) == 1
    assert len(imap_user.messages("INBOX")) == 2  # the notification and one answer to it


# --- flood -----------------------------------------------------------------------------------


@pytest.fixture
def crowd() -> faults.Crowd:
    return faults.Crowd(1000)


@pytest.mark.slow
async def test_flood_is_capped_paused_alerted_once_and_never_repeated(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path, crowd: faults.Crowd) -> None:
    """1,000 genuine-looking invitations from distinct people within an hour (10,000 in the
    soak): no more than the hourly cap is sent, replies pause with one alert to the counselor,
    every invitation is recorded once, and `resume` lets the next one through."""
    late = faults.Person("Late Comer", "late-comer-1", "late@students.example.edu",
                         "7300000000000000001")
    listed = f"{late.name},{late.email},https://www.linkedin.com/in/{late.slug}\n"
    ctx = faults.context_for(tmp_path, imap_user, smtp_server, ca_file,
                             directory=crowd.directory_csv(listed),
                             max_replies_per_hour=20, max_replies_per_day=100)
    messages = crowd.messages()
    waves = 12  # one every five minutes
    for wave in range(waves):
        faults.append_many(imap_user, "INBOX", messages[wave::waves])
        await Poller(ctx).poll(NOW + timedelta(minutes=5 * wave))
    for hours in (2, 24):  # later polls: still paused, nothing more goes out
        await Poller(ctx).poll(NOW + timedelta(hours=hours))
    replies = [r for r in smtp_server.messages if r.recipients != (faults.COUNSELOR,)]
    alerts = [m for m in parsed(smtp_server) if m["To"].addresses[0].addr_spec == faults.COUNSELOR]
    counts = faults.recipients_count(smtp_server)
    with ctx.store.engine.connect() as c:
        recorded = c.execute(select(func.count()).select_from(schema.messages)).scalar_one()
    assert len(replies) == 20
    assert len(alerts) == 1 and "modbot resume" in alerts[0].get_content()
    assert max(counts.values()) == 1
    assert recorded == len(messages)
    assert ctx.store.resume(ctx.settings.account, NOW + timedelta(hours=25)) > 0
    imap_user.append("INBOX", faults.invitation(late, serial=99_999))
    await Poller(ctx).poll(NOW + timedelta(hours=26))
    assert faults.recipients_count(smtp_server)[late.email] == 1
    ctx.store.close()

