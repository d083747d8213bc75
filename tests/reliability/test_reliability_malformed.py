"""Malformed mail never stops the poll: public corpora of broken messages and generated
pathological sizes, appended to Dovecot. Each one that looks like LinkedIn is recorded and held
with a one-sentence reason (never answered); the rest are ignored; none takes over 5 seconds;
a message over ``imap.max_message_bytes`` is held without its body ever being fetched.
"""

from __future__ import annotations

import glob
import os
import sysconfig
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from support import faults, servers
from support.trials import NOW

from modbot.config import PolicySettings
from modbot.judging import judge
from modbot.model import Mode
from modbot.poll import Context, Poller
from modbot.store import schema
from modbot.triage import triage

pytestmark = pytest.mark.integration

PER_MESSAGE_SECONDS = 5.0
MAILPARSER = Path(__file__).parents[1] / "malformed" / "mailparser"
# Dressed this way a message is a LinkedIn candidate, so every stage of the pipeline reads it.
DRESS = b"X-LinkedIn-Template: email_m2m_invite_single_01\r\n"
POLICY = PolicySettings(mode=Mode.AUTO, trusted_authserv_ids=(faults.TRUSTED,))


def cpython_corpus() -> list[Path]:
    """CPython's test_email messages: from this interpreter's stdlib, else Debian's package."""
    places = [Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data",
              *map(Path, sorted(glob.glob("/usr/lib/python3*/test/test_email/data")))]
    for place in places:
        found = sorted(p for p in place.glob("msg_*.txt"))
        if found:
            return found
    servers.unavailable("CPython's test_email data is missing; install libpython3.11-testsuite")


def corpus() -> list[tuple[str, bytes]]:
    messages = [(f"cpython/{p.name}", p.read_bytes()) for p in cpython_corpus()]
    messages += [(f"mailparser/{p.name}", p.read_bytes())
                 for p in sorted(MAILPARSER.glob("mail_*"))]
    return messages


def pathological() -> list[tuple[str, bytes]]:
    """Generated messages that break parsers by size, depth or bytes, all claiming LinkedIn."""
    head = (b"From: LinkedIn <invitations@linkedin.com>\r\nSubject: Invitation\r\n"
            b"X-LinkedIn-Template: email_m2m_invite_single_01\r\n")
    many = b"To: " + b",\r\n ".join(b"p%d@example.edu" % i for i in range(30_000)) + b"\r\n"
    nested = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                      for i in range(1000))
    nested += b"Content-Type: text/plain\r\n\r\nhello\r\n"
    nested += b"".join(b"--b%d--\r\n" % i for i in reversed(range(1000)))
    return [
        ("30000-address-to", head + many + b"Message-ID: <many@x>\r\n\r\nbody\r\n"),
        ("deep-mime-1000", head + b"MIME-Version: 1.0\r\nMessage-ID: <deep@x>\r\n" + nested),
        ("broken-charsets", head + b"Message-ID: <cs@x>\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
         b"Content-Transfer-Encoding: 8bit\r\n\r\n\xff\xfe\xc3\x28 caf\xe9 \xe2\x82\r\n"),
        ("rfc2047-bad", head + b"Message-ID: <rfc2047@x>\r\n"
         b"Subject: =?x-unknown?Q?=FF=FE?= =?utf-8?B?////?=\r\n\r\nx\r\n"),
        ("empty-content-type", b"Content-Type:;i*\r\n" + head + b"Message-ID: <ct@x>\r\n\r\nx\r\n"),
        ("nul-and-8bit-headers",
         head + b"Message-ID: <nul@x>\r\nX-Bad: a\x00b\xff\r\n\r\n\x00\r\n"),
        ("bare-cr", head.replace(b"\r\n", b"\r") + b"Message-ID: <cr@x>\r\r" + b"x\r" * 1000),
        ("headers-only", head + b"Message-ID: <headers@x>\r\n"),
        ("huge-line", head + b"Message-ID: <line@x>\r\n\r\n" + b"x" * 2_000_000 + b"\r\n"),
        ("25mb-body", head + b"Message-ID: <big@x>\r\n\r\n" + (b"y" * 998 + b"\r\n") * 25_000),
    ]


@pytest.fixture
def ctx(tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path) -> Iterator[Context]:
    context = faults.context_for(tmp_path, imap_user, smtp_server, ca_file)
    yield context
    context.store.close()


def rows(ctx: Context) -> list[dict[str, object]]:
    with ctx.store.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(select(schema.messages))]


@pytest.mark.parametrize(("name", "raw"), corpus() + pathological(),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_judging_takes_under_five_seconds(name: str, raw: bytes) -> None:
    """The pure stages finish each message, dressed as LinkedIn's, well within 5 seconds."""
    started = time.monotonic()
    judgement = judge(DRESS + raw, POLICY, None, None)
    assert time.monotonic() - started < PER_MESSAGE_SECONDS
    assert judgement.decision.action.value != "reply"


async def test_corpus_as_it_is_never_stops_the_poll(
        ctx: Context, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer) -> None:
    """The public corpora as they are: the poll finishes, sends nothing, and records only what
    looks like LinkedIn or a reply."""
    messages = corpus()
    faults.append_many(imap_user, "INBOX", [raw for _, raw in messages])
    started = time.monotonic()
    report = await Poller(ctx).poll(NOW)
    assert time.monotonic() - started < PER_MESSAGE_SECONDS * len(messages)
    assert report.new_messages == len(messages)
    assert smtp_server.messages == []
    assert all(row["action"] != "reply" for row in rows(ctx))


async def test_corpus_dressed_as_linkedin_is_recorded_and_never_answered(
        ctx: Context, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer) -> None:
    """Every broken message that claims LinkedIn is recorded once with a one-sentence reason."""
    messages = corpus()
    # A numbered header keeps header blocks without a Message-ID apart; messages that share a
    # Message-ID (the corpus has such copies) are one message to modbot.
    faults.append_many(imap_user, "INBOX", [b"X-Corpus-Index: %d\r\n" % i + DRESS + raw
                                            for i, (_, raw) in enumerate(messages)])
    distinct = {triage(raw).message_id or f"index-{i}" for i, (_, raw) in enumerate(messages)}
    await Poller(ctx).poll(NOW)
    await Poller(ctx).poll(NOW + timedelta(minutes=5))
    recorded = rows(ctx)
    assert len(recorded) == len(distinct) > 40  # none lost
    assert smtp_server.messages == []
    for row in recorded:
        assert row["action"] in ("hold", "log", "ignore")
        first = str(row["reasons"]).split('", "')[0]
        assert "\n" not in first and len(first) < 400


@pytest.mark.slow
async def test_pathological_mail_is_held_within_bounds(
        ctx: Context, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        dovecot: servers.Dovecot) -> None:
    """Huge headers, 1,000 MIME levels, broken charsets and a 25 MB body: each held with its
    reason; the 25 MB body and the 30,000 addresses are never fetched."""
    messages = pathological()
    faults.append_many(imap_user, "INBOX", [raw for _, raw in messages])
    proxy = faults.CutProxy((dovecot.host, dovecot.imaps_port))
    try:
        ctx.settings = ctx.settings.model_copy(update={"imap": ctx.settings.imap.model_copy(
            update={"port": proxy.port})})
        started = time.monotonic()
        await Poller(ctx).poll(NOW)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 5
        while proxy.total == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proxy.close()
    assert elapsed < PER_MESSAGE_SECONDS * len(messages)
    assert 0 < proxy.total < 8_000_000  # the 25 MB body never crossed the wire
    recorded = {row["uid"]: row for row in rows(ctx)}
    assert len(recorded) == len(messages)
    assert all(row["action"] == "hold" for row in recorded.values())
    reasons = {name: str(recorded[uid]["reasons"])
               for uid, (name, _) in enumerate(messages, start=1)}
    assert "over the 10 MB limit" in reasons["25mb-body"]
    assert "header block is longer than 256 KB" in reasons["30000-address-to"]
    assert smtp_server.messages == []


def test_cpython_corpus_is_present_in_ci() -> None:
    """CI must read the CPython corpus; a machine without it only skips."""
    if not os.environ.get("CI"):
        pytest.skip("only enforced in CI")
    assert cpython_corpus()
