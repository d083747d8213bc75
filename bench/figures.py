"""The measurements. Each function returns ``Figure`` rows: modbot's figure, the raw baseline
measured in the same run, their ratio, the target, and whether it is met.

Baselines do the least work that gets the same job done, with the same libraries modbot uses
(imapclient, mail-parser, aiosmtplib) or, for the whole-process row, Debian's imapfilter. Every
TLS connection verifies the benchmark CA's certificate, the same way for modbot and baselines.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import corpus
import mailservers
from environment import Environment

from modbot import config, render
from modbot.config import Account, Config
from modbot.history import Answered, Past
from modbot.judging import judge
from modbot.mailbox import Mailbox
from modbot.model import Person, Recipient
from modbot.outbox import Sender
from modbot.poll import Context, Poller
from modbot.store import MessageRecord, OutboxStatus, ReplyRecord, Store, schema
from modbot.tls import client_context

BENCH = Path(__file__).resolve().parent
perf = time.perf_counter


@dataclass
class Figure:
    """One row of the table (and one entry of ``--json``)."""

    name: str
    value: float | None
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    met: bool
    details: list[str] = field(default_factory=list)

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "value": _round(self.value), "unit": self.unit,
                "baseline": _round(self.baseline), "ratio": _round(self.ratio),
                "target": self.target, "met": self.met}


@dataclass(frozen=True)
class Sizes:
    """How big and how often: full mode follows the issue, quick mode is a smoke test."""

    small: int
    large: int
    poll_iterations: int
    baseline_iterations: int
    run_once_runs: int
    new_rounds: int
    backlog: int
    backlog_imap: int
    sends: int
    send_rounds: int
    idle_samples: int
    memory_polls: int
    digest_rows: int


FULL = Sizes(small=1_000, large=100_000, poll_iterations=150, baseline_iterations=2_000,
             run_once_runs=10, new_rounds=8, backlog=10_000, backlog_imap=1_000, sends=1_000,
             send_rounds=3, idle_samples=15, memory_polls=10_000, digest_rows=100_000)
QUICK = Sizes(small=1_000, large=10_000, poll_iterations=20, baseline_iterations=200,
              run_once_runs=2, new_rounds=2, backlog=300, backlog_imap=100, sends=100,
              send_rounds=1, idle_samples=3, memory_polls=100, digest_rows=5_000)


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def ms(seconds: float) -> float:
    return seconds * 1000


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def timed(function: Callable[[], object], n: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(n):
        start = perf()
        function()
        times.append(perf() - start)
    return times


# ---------------------------------------------------------------------------------------------
# 1. A poll with nothing new


def _raw_open(env: Environment, user: str, n: int) -> list[float]:
    """Baseline: NOOP + ``UID SEARCH UID <cursor+1>:*`` on an open, selected connection."""
    client = env.connect(user)
    try:
        cursor = client.select_folder("INBOX")[b"UIDNEXT"] - 1

        def once() -> None:
            client.noop()
            client.search(["UID", f"{cursor + 1}:*"])

        return timed(once, n, warmup=50)
    finally:
        client.logout()


PHASES = ("connect+TLS", "LOGIN", "SELECT", "SEARCH", "LOGOUT")


def _raw_connect(env: Environment, user: str, n: int
                 ) -> tuple[list[float], dict[str, list[float]]]:
    """The same with a new connection each time: connect, TLS, LOGIN, SELECT, SEARCH, LOGOUT.

    Returns the totals and the time of each phase.
    """
    from imapclient import IMAPClient

    tls = mailservers.client_tls(env.certs.ca_file)
    phases: dict[str, list[float]] = {phase: [] for phase in PHASES}

    def once() -> None:
        marks = [perf()]
        client = IMAPClient(mailservers.HOST, env.dovecot.port, ssl=True, ssl_context=tls,
                            timeout=60)
        marks.append(perf())
        client.login(user, mailservers.PASSWORD)
        marks.append(perf())
        cursor = client.select_folder("INBOX")[b"UIDNEXT"] - 1
        marks.append(perf())
        client.search(["UID", f"{cursor + 1}:*"])
        marks.append(perf())
        client.logout()
        marks.append(perf())
        for phase, begin, end in zip(PHASES, marks, marks[1:], strict=False):
            phases[phase].append(end - begin)

    times = timed(once, n)
    return times, {phase: values[-n:] for phase, values in phases.items()}


async def _daemon_polls(settings: Account, n: int, *, keep_open: bool = True) -> list[float]:
    """modbot: ``Poller.poll`` as the daemon calls it (its connection kept open between polls),
    or, with ``keep_open=False``, as ``run-once`` does (a connection per poll); nothing new."""
    ctx = Context.build(settings, dkim_lookup=None)
    poller = Poller(ctx, keep_open=keep_open)
    try:
        for _ in range(5):  # the first poll sets the cursor; the rest warm up
            await poller.poll(datetime.now(UTC))
        times = []
        for _ in range(n):
            start = perf()
            report = await poller.poll(datetime.now(UTC))
            times.append(perf() - start)
            assert report.new_messages == 0
        return times
    finally:
        await poller.close()
        ctx.store.close()


def _mailbox_open(settings: Account, n: int) -> tuple[list[float], list[float]]:
    """modbot's Mailbox kept open: SELECT + ``uids_after`` each time, and ``uids_after`` alone."""
    with Mailbox(settings.imap, client_context(settings.imap.ca_file)) as mailbox:
        state = mailbox.select("INBOX")
        cursor = (state.uidnext or 1) - 1

        def select_search() -> None:
            mailbox.select("INBOX")
            mailbox.uids_after(cursor)

        both = timed(select_search, n, warmup=20)
        alone = timed(lambda: mailbox.uids_after(cursor), n * 4, warmup=50)
    return both, alone


def _mailbox_per_poll(settings: Account, n: int) -> list[float]:
    """modbot's Mailbox opened per poll, as ``Poller.poll`` does, without the store."""
    tls = client_context(settings.imap.ca_file)

    def once() -> None:
        with Mailbox(settings.imap, tls) as mailbox:
            state = mailbox.select("INBOX")
            mailbox.uids_after((state.uidnext or 1) - 2)

    return timed(once, n)


def poll_nothing_new(env: Environment, sizes: Sizes, blocks: int = 5) -> list[Figure]:
    """Both folder sizes in alternating blocks, so that load from other processes on the
    machine falls on both alike and the 100k/1k ratio stays meaningful."""
    samples: dict[int, dict[str, list[float]]] = {}
    phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
    configs = {size: env.config_file(user)
               for size, user in ((sizes.small, "small"), (sizes.large, "large"))}
    progress(f"poll with nothing new, {k(sizes.small)} and {k(sizes.large)} folders")
    for _block in range(blocks):
        for size, user in ((sizes.small, "small"), (sizes.large, "large")):
            settings = config.load(configs[size]).first
            got = samples.setdefault(size, {})
            got.setdefault("raw", []).extend(
                _raw_open(env, user, sizes.baseline_iterations // blocks))
            connects, parts = _raw_connect(env, user, sizes.poll_iterations // blocks)
            got.setdefault("raw_connect", []).extend(connects)
            if size == sizes.large:
                for phase, values in parts.items():
                    phases[phase].extend(values)
            got.setdefault("daemon", []).extend(
                asyncio.run(_daemon_polls(settings, sizes.baseline_iterations // blocks)))
            got.setdefault("connect_per_poll", []).extend(asyncio.run(
                _daemon_polls(settings, sizes.poll_iterations // blocks, keep_open=False)))
            got.setdefault("mailbox_per_poll", []).extend(
                _mailbox_per_poll(settings, sizes.poll_iterations // blocks))
            both, alone = _mailbox_open(settings, sizes.poll_iterations * 2 // blocks)
            got.setdefault("open_select", []).extend(both)
            got.setdefault("open_search", []).extend(alone)
    results = {size: {key: median(values) for key, values in got.items()}
               for size, got in samples.items()}
    breakdown = {phase: median(values) for phase, values in phases.items()}
    big, small = results[sizes.large], results[sizes.small]
    L, S = k(sizes.large), k(sizes.small)
    details = [
        f"{label}: {ms(big[key]):.2f} ms ({L}), {ms(small[key]):.2f} ms ({S})"
        for key, label in (
            ("raw", "baseline, raw NOOP + UID SEARCH on an open connection"),
            ("daemon", "modbot Poller.poll as the daemon runs it (connection kept open)"),
            ("open_select", "modbot Mailbox kept open: select + uids_after, no store"),
            ("open_search", "modbot Mailbox kept open: uids_after alone"),
            ("connect_per_poll", "modbot Poller.poll connecting per poll, as run-once does"),
            ("mailbox_per_poll", "modbot Mailbox per poll without the store"),
            ("raw_connect", "raw connect+TLS+LOGIN+SELECT+SEARCH+LOGOUT per poll"),
        )
    ]
    details.append("raw connect-per-poll phases (" + L + "): " + ", ".join(
        f"{phase} {ms(value):.2f} ms" for phase, value in breakdown.items()))
    details.append(
        f"Poller.poll's own work beyond the IMAP round trip: about "
        f"{ms(big['daemon'] - big['open_select']):.2f} ms a poll (store, worker thread)")
    ratio = big["daemon"] / big["raw"]
    scaling = big["daemon"] / small["daemon"]
    return [
        Figure(f"poll, nothing new, {L} folder (daemon)", ms(big["daemon"]), "ms",
               ms(big["raw"]), ratio, "<= 3x", ratio <= 3, details),
        Figure(f"poll, nothing new, {L} vs {S} folder", scaling, "x",
               big["raw"] / small["raw"], scaling, "<= 1.2x", scaling <= 1.2,
               [f"Mailbox kept open: {big['open_select'] / small['open_select']:.2f}x; "
                f"connect per poll: {big['connect_per_poll'] / small['connect_per_poll']:.2f}x; "
                f"raw connect per poll: {big['raw_connect'] / small['raw_connect']:.2f}x"]),
    ]


# ---------------------------------------------------------------------------------------------
# 2. Whole process: modbot run-once against imapfilter

_IMAPFILTER = """\
options.info = false
options.timeout = 60
-- imapfilter checks certificates only against /etc/ssl and its own store of accepted
-- certificates, which asks on a terminal; the benchmark's private CA is in neither.
options.certificates = false
options.hostnames = false
account = IMAP {{ server = '{host}', port = {port}, username = '{user}',
                 password = '{password}', ssl = 'auto' }}
found = account.INBOX:send_query('UNKEYWORD $ModbotDone FROM linkedin.com')
found:add_flags({{ '$ModbotDone' }})
"""


def _modbot_command() -> list[str]:
    script = Path(sys.executable).with_name("modbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "modbot"]


def _run(command: list[str], env: dict[str, str], expect: str | None = None) -> float:
    start = perf()
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)
    elapsed = perf() - start
    if done.returncode != 0 or (expect is not None and expect not in done.stdout):
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
    return elapsed


def _compile_modbot() -> None:
    """Write modbot's bytecode, as installing it does: an editable checkout run with
    PYTHONDONTWRITEBYTECODE (as here) would otherwise compile every module at each start."""
    spec = importlib.util.find_spec("modbot")
    assert spec is not None and spec.origin is not None
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(spec.origin).parent)],
                   check=True,
                   capture_output=True, timeout=120)


def run_once(env: Environment, sizes: Sizes) -> list[Figure]:
    imapfilter = shutil.which("imapfilter")
    _compile_modbot()
    results: dict[int, dict[str, float]] = {}
    for size, user in ((sizes.small, "small"), (sizes.large, "large")):
        progress(f"modbot run-once and imapfilter, {k(size)} folder")
        modbot = [*_modbot_command(), "--config", str(env.config_file(user)), "run-once"]
        process_env = dict(os.environ)
        _run(modbot, process_env)  # the first run sets the cursor at the top of the folder
        home = env.work / f"imapfilter-{user}"
        home.mkdir(exist_ok=True)
        lua = home / "config.lua"
        lua.write_text(_IMAPFILTER.format(host=mailservers.HOST, port=env.dovecot.port,
                                          user=user, password=mailservers.PASSWORD))
        filter_env = dict(os.environ, HOME=str(home))
        ours, theirs = [], []
        if imapfilter:
            _run([imapfilter, "-c", str(lua)], filter_env)  # flags what is there now
        for _ in range(sizes.run_once_runs):
            ours.append(_run(modbot, process_env, expect="new messages: 0"))
            if imapfilter:
                theirs.append(_run([imapfilter, "-c", str(lua)], filter_env))
        results[size] = {"modbot": median(ours), "imapfilter": median(theirs) if theirs else 0}
    big, small = results[sizes.large], results[sizes.small]
    L, S = k(sizes.large), k(sizes.small)
    start = _run([sys.executable, "-c", "import modbot.cli"], dict(os.environ))
    details = [f"modbot run-once: {ms(big['modbot']):.0f} ms ({L}), {ms(small['modbot']):.0f} ms "
               f"({S}), {big['modbot'] / small['modbot']:.2f}x growth",
               f"python -c 'import modbot.cli' alone: {ms(start):.0f} ms"]
    if not imapfilter:
        details.append("imapfilter is not installed (apt-get install imapfilter): no baseline")
        return [Figure(f"run-once, whole process, nothing new, {L} folder", ms(big["modbot"]),
                       "ms", None, None, "<= 1.0x imapfilter", False, details)]
    details.append(f"imapfilter: {ms(big['imapfilter']):.0f} ms ({L}), "
                   f"{ms(small['imapfilter']):.0f} ms ({S}), "
                   f"{big['imapfilter'] / small['imapfilter']:.1f}x growth")
    ratio = big["modbot"] / big["imapfilter"]
    return [Figure(f"run-once, whole process, nothing new, {L} folder", ms(big["modbot"]), "ms",
                   ms(big["imapfilter"]), ratio, "<= 1.0x imapfilter", ratio <= 1.0, details)]


# ---------------------------------------------------------------------------------------------
# 3. A poll with 100 new messages, 5 of them LinkedIn's


def _top_uid(env: Environment, user: str) -> int:
    client = env.connect(user)
    try:
        return int(client.folder_status("INBOX", [b"UIDNEXT"])[b"UIDNEXT"]) - 1
    finally:
        client.logout()


def poll_new(env: Environment, sizes: Sizes, user: str = "large") -> list[Figure]:
    progress(f"poll with 100 new (5 LinkedIn), {k(sizes.large)} folder")
    settings = env.settings(user)
    serial = 10_000_000

    steps: list[tuple[float, float, float]] = []
    keyword: list[float] = []

    async def measure() -> tuple[list[float], list[float], list[int]]:
        ctx = Context.build(settings, dkim_lookup=None)
        poller = Poller(ctx)
        await poller.poll(datetime.now(UTC))  # sets the cursor
        client = env.connect(user)
        client.select_folder("INBOX")
        ours: list[float] = []
        theirs: list[float] = []
        candidates: list[int] = []
        try:
            for _round in range(sizes.new_rounds):
                cursor = _top_uid(env, user)
                nonlocal serial
                env.users[user].maildir.deliver(
                    corpus.mixed(100, linkedin_every=20, start=serial, tag="new"))
                serial += 100
                env.settle(user)
                # The baseline only reads; modbot then sets keywords, which in a maildir renames
                # files, and the next round's settle() takes that in before anything is timed.
                for side in ("raw", "modbot"):
                    start = perf()
                    if side == "raw":
                        client.noop()
                        uids = [u for u in client.search(["UID", f"{cursor + 1}:*"])
                                if u > cursor]
                        searched = perf()
                        headers = client.fetch(uids, [b"BODY.PEEK[HEADER]"])
                        wanted = [u for u, data in headers.items()
                                  if b"linkedin" in data[b"BODY[HEADER]"].lower()]
                        fetched = perf()
                        client.fetch(wanted, [b"BODY.PEEK[]"])
                        theirs.append(perf() - start)
                        steps.append((searched - start, fetched - searched, perf() - fetched))
                        assert len(uids) == 100
                        candidates.append(len(wanted))
                    else:
                        report = await poller.poll(datetime.now(UTC))
                        ours.append(perf() - start)
                        assert report.new_messages == 100, report.new_messages
            # What setting the keyword costs Dovecot here, measured once on the raw connection.
            cursor = _top_uid(env, user)
            env.users[user].maildir.deliver(
                corpus.mixed(100, linkedin_every=20, start=serial, tag="new"))
            env.settle(user)
            client.noop()
            uids = [u for u in client.search(["UID", f"{cursor + 1}:*"]) if u > cursor]
            headers = client.fetch(uids, [b"BODY.PEEK[HEADER]"])
            wanted = [u for u, data in headers.items()
                      if b"linkedin" in data[b"BODY[HEADER]"].lower()]
            start = perf()
            client.add_flags(wanted, [b"$ModbotDone"], silent=True)
            keyword.append(perf() - start)
        finally:
            client.logout()
            ctx.store.close()
        return ours, theirs, candidates

    ours, theirs, candidates = asyncio.run(measure())
    value, base = median(ours), median(theirs)
    ratio = value / base
    return [Figure(f"poll, 100 new (5 LinkedIn), {k(sizes.large)} folder", ms(value), "ms",
                   ms(base), ratio, "<= 2x", ratio <= 2,
                   [f"baseline: NOOP + UID SEARCH + header FETCH of 100 + body FETCH of the "
                    f"{median(candidates):.0f} whose header says linkedin, open connection: "
                    + ", ".join(f"{ms(median(part)):.1f} ms" for part in zip(*steps,
                                                                            strict=True)),
                    "modbot: Poller.poll in shadow mode (connect, fetch, judge, record, keyword, "
                    "cursor), median of "
                    f"{len(ours)} rounds; p95 {ms(p95(ours)):.0f} ms",
                    f"raw STORE +FLAGS $ModbotDone on those messages (not in the baseline): "
                    f"{ms(keyword[0]):.0f} ms",
                    "the baseline's header FETCH is mostly Dovecot's own maildir work: the "
                    "first FETCH of new mail in a session re-reads the folder's uidlist "
                    "(5 MB at 100k) and rescans cur/, and modbot pays it in every poll"])]


# ---------------------------------------------------------------------------------------------
# 4. A backlog of LinkedIn notifications, judged


def _notifications(count: int, tag: str) -> list[bytes]:
    fixtures = corpus.linkedin_fixtures()
    rng = random.Random(count)
    return [corpus.with_message_id(fixtures[i % len(fixtures)][1],
                                   f"{tag}.{i}.{rng.getrandbits(48):012x}@linkedin.com")
            for i in range(count)]


def backlog(env: Environment, sizes: Sizes) -> list[Figure]:
    import mailparser

    progress(f"backlog of {k(sizes.backlog)} LinkedIn notifications")
    messages = _notifications(sizes.backlog, "backlog")
    settings = env.settings("small")
    ctx = Context.build(settings, dkim_lookup=None)
    now = datetime.now(UTC)
    # The daemon's history facts, read from the store once per batch as the poll reads them.
    window = timedelta(days=settings.policy.person_window_days)
    past = Past(Answered(ctx.store.replied(settings.account, now - window), now, window))
    policy, directory = settings.policy, ctx.directory

    def parse_only(raw: bytes) -> None:
        mailparser.parse_from_bytes(raw)

    def with_store(raw: bytes) -> None:
        judge(raw, policy, directory, None, past=past)

    def pure(raw: bytes) -> None:
        judge(raw, policy, directory, None)

    methods = {"parse": parse_only, "judge": with_store, "pure": pure}
    totals = dict.fromkeys(methods, 0.0)
    for method in methods.values():  # imports and compiled patterns
        for raw in messages[:50]:
            method(raw)
    counts = dict.fromkeys(methods, 0)
    chunk = 250
    for index, start in enumerate(range(0, len(messages), chunk)):
        part = messages[start:start + chunk]
        for name, method in methods.items():
            if name == "pure" and index % 4:
                continue  # a detail only: a quarter of the messages is enough
            began = perf()
            for raw in part:
                method(raw)
            totals[name] += perf() - began
            counts[name] += len(part)
    ctx.store.close()
    rate = {name: counts[name] / total for name, total in totals.items()}
    share = rate["judge"] / rate["parse"]
    details = [f"mail-parser alone: {rate['parse']:.0f} msg/s; judge with store history: "
               f"{rate['judge']:.0f} msg/s; judge with empty history (no store): "
               f"{rate['pure']:.0f} msg/s ({rate['pure'] / rate['parse']:.0%})",
               "DKIM is not verified (no DNS here); the fixtures' signatures are placeholders"]
    details.extend(_backlog_imap(env, sizes))
    return [Figure(f"backlog: {k(sizes.backlog)} LinkedIn notifications judged",
                   rate["judge"], "msg/s", rate["parse"], share, ">= 60%", share >= 0.6,
                   details)]


def _backlog_imap(env: Environment, sizes: Sizes) -> list[str]:
    """End to end: one Poller.poll over a folder that received a backlog since the last poll."""
    count = sizes.backlog_imap
    user = env.add_user("backlog", 0)
    settings = env.settings("backlog")

    async def measure() -> tuple[float, int]:
        ctx = Context.build(settings, dkim_lookup=None)
        poller = Poller(ctx)
        try:
            await poller.poll(datetime.now(UTC))  # sets the cursor on the empty folder
            user.maildir.deliver(_notifications(count, "imap"))
            env.settle("backlog")
            start = perf()
            report = await poller.poll(datetime.now(UTC))
            return perf() - start, report.new_messages
        finally:
            ctx.store.close()

    elapsed, handled = asyncio.run(measure())
    return [f"end to end, one Poller.poll over {handled} new LinkedIn notifications "
            f"(fetch, judge, record, keyword): {handled / elapsed:.0f} msg/s"]


# ---------------------------------------------------------------------------------------------
# 5. Replies sent over SMTP with TLS


def _queue(store: Store, account: str, count: int, now: datetime) -> None:
    for i in range(count):
        key = f"send-{now.timestamp()}-{i}"
        message = MessageRecord(
            account=account, message_key=key[:64], folder="INBOX", uidvalidity=1, uid=i + 1,
            seen_at=now, kind="connection_invitation", authentic=True,
            classify_rule="template_invitation", person_name=f"Alex Adams {i}",
            profile_url=None, invitation_id=None, address_source="directory-csv",
            action="reply", policy_rule="reply", reasons=("bench",), error=None)
        reply = ReplyRecord(
            message_id=render.make_message_id("counsel.example.edu"),
            template="connection_invitation", recipient_name=f"Alex Adams {i}",
            recipient_email=f"student{i}@students.example.edu", redirected_to=None,
            status=OutboxStatus.QUEUED, created_at=now)
        store.record(message, reply)


def sends(env: Environment, sizes: Sizes) -> list[Figure]:
    import aiosmtplib

    count = sizes.sends
    progress(f"{count} replies over SMTP with TLS")
    settings = env.settings("small", mode="auto")
    ctx = Context.build(settings, dkim_lookup=None)
    tls = client_context(settings.smtp.ca_file)
    now = datetime.now(UTC)
    messages = [
        render.reply_message(
            ctx.templates, template="connection_invitation", counselor=settings.counselor,
            recipient=Recipient(f"Alex Adams {i}", f"student{i}@students.example.edu", "bench"),
            person=Person(name=f"Alex Adams {i}"), message_id=render.make_message_id(
                "counsel.example.edu"), date=now)
        for i in range(count)
    ]

    async def raw() -> float:
        smtp = aiosmtplib.SMTP(hostname=mailservers.HOST, port=env.smtp.port, use_tls=True,
                               tls_context=tls)
        await smtp.connect()
        start = perf()
        for message in messages:
            await smtp.send_message(message)
        elapsed = perf() - start
        await smtp.quit()
        return count / elapsed

    async def edge() -> float:
        async with Sender(settings.smtp, tls) as sender:
            start = perf()
            for message in messages:
                await sender.send(message)
            return count / (perf() - start)

    async def daemon(poller: Poller) -> float:
        _queue(ctx.store, settings.account, count, datetime.now(UTC))
        start = perf()
        report = await poller.poll(datetime.now(UTC))
        elapsed = perf() - start
        assert len(report.sent) == count, (len(report.sent), report.errors)
        return count / elapsed

    async def measure() -> dict[str, list[float]]:
        poller = Poller(ctx)
        await poller.poll(datetime.now(UTC))  # sets the cursor
        rates: dict[str, list[float]] = {"raw": [], "edge": [], "daemon": []}
        for round_ in range(sizes.send_rounds):
            rates["raw"].append(await raw())
            rates["daemon"].append(await daemon(poller))
            if round_ == 0:  # a detail only
                rates["edge"].append(await edge())
        return rates

    try:
        rates = asyncio.run(measure())
    finally:
        ctx.store.close()
    value, base = median(rates["daemon"]), median(rates["raw"])
    share = value / base
    return [Figure(f"replies sent, {count}, SMTP over TLS", value, "msg/s", base, share,
                   ">= 70%", share >= 0.7,
                   [f"modbot Sender.send alone on pre-built messages: "
                    f"{median(rates['edge']):.0f} msg/s",
                    "modbot: Poller.poll sending queued replies (render, mark sending, send, "
                    f"mark sent); median of {len(rates['daemon'])} rounds"])]


# ---------------------------------------------------------------------------------------------
# 6. Arrival to reply, with IDLE


def _wait_exists(client: Any, timeout: float = 10.0) -> bool:
    deadline = perf() + timeout
    while perf() < deadline:
        for response in client.idle_check(timeout=max(0.05, deadline - perf())):
            if len(response) > 1 and response[1] == b"EXISTS":
                return True
    return False


_INVITATION_ID = b"7012345678901234567"


def idle(env: Environment, sizes: Sizes) -> list[Figure]:
    progress(f"IDLE notice and arrival to reply, {sizes.idle_samples} samples")
    user = env.add_user("idle", 100)
    jordan = (corpus.DATA / "invitation_current_jordan_rivera.eml").read_bytes()
    rng = random.Random(7)
    settings = env.settings("idle", mode="auto", person_window_days=0,
                            max_replies_per_hour=100_000, max_replies_per_day=100_000)

    async def measure() -> tuple[list[float], list[float]]:
        ctx = Context.build(settings, dkim_lookup=None)
        poller = Poller(ctx)
        await poller.poll(datetime.now(UTC))  # sets the cursor
        watcher = env.connect("idle")
        watcher.select_folder("INBOX")
        watcher.idle()
        notice, reply = [], []
        try:
            for i in range(sizes.idle_samples * 2):
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                invitation = i % 2 == 1
                raw = (corpus.with_message_id(
                    jordan.replace(_INVITATION_ID, str(rng.randrange(10**18, 10**19)).encode()),
                    f"idle.{i}.{rng.getrandbits(48):012x}@linkedin.com")
                    if invitation else corpus.ordinary(5_000_000 + i))
                start = perf()
                user.maildir.deliver([raw])
                if not _wait_exists(watcher):
                    raise RuntimeError("Dovecot sent no EXISTS within 10 s of a delivery")
                notice.append(perf() - start)
                if not invitation:
                    continue
                report = await poller.poll(datetime.now(UTC))
                reply.append(perf() - start)
                assert len(report.sent) == 1, (report.handled, report.errors)
        finally:
            watcher.idle_done()
            watcher.logout()
            ctx.store.close()
        return notice, reply

    async def daemon() -> list[float]:
        """The real daemon (IDLE on, interval poll 5 min): delivery to reply recorded as sent."""
        from modbot.daemon import run_daemon

        stop = asyncio.Event()
        running = asyncio.create_task(run_daemon(Config((settings,)), stop))
        observer = Store.open(settings.database.url)
        latencies = []
        try:
            await asyncio.sleep(2.0)  # the first poll, and the IDLE connection settles
            for i in range(sizes.idle_samples):
                await asyncio.sleep(rng.uniform(0.3, 1.7))  # irregular, unlike Dovecot's timer
                before = len(observer.items(settings.account, OutboxStatus.SENT))
                raw = corpus.with_message_id(
                    jordan.replace(_INVITATION_ID, str(rng.randrange(10**18, 10**19)).encode()),
                    f"daemon.{i}.{rng.getrandbits(48):012x}@linkedin.com")
                start = perf()
                user.maildir.deliver([raw])
                while len(observer.items(settings.account, OutboxStatus.SENT)) == before:
                    if perf() - start > 30:
                        raise RuntimeError("the daemon sent no reply within 30 s of a delivery")
                    await asyncio.sleep(0.01)
                latencies.append(perf() - start)
        finally:
            stop.set()
            await running
            observer.close()
        return latencies

    notice, reply = asyncio.run(measure())
    arrivals = asyncio.run(daemon())
    value = p95(arrivals)
    return [Figure("arrival to reply sent, with IDLE", value, "s", p95(notice),
                   value / p95(notice), "p95 <= 2 s", value <= 2.0,
                   [f"modbot run_daemon with IDLE, {len(arrivals)} arrivals at irregular gaps: "
                    f"median {median(arrivals):.2f} s, p95 {value:.2f} s",
                    f"baseline, Dovecot's IDLE notice after a maildir delivery: median "
                    f"{median(notice):.2f} s, p95 {p95(notice):.2f} s",
                    f"that notice followed by one Poller.poll that sends the reply "
                    f"(auto mode): median {median(reply):.2f} s, p95 {p95(reply):.2f} s"])]


# ---------------------------------------------------------------------------------------------
# 7. Daemon memory over many polls


def memory(env: Environment, sizes: Sizes) -> list[Figure]:
    progress(f"daemon memory over {sizes.memory_polls} polls")
    user = env.add_user("memory", sizes.small)
    config_path = env.config_file("memory", mode="auto", look_back_days=7, person_window_days=0,
                             max_replies_per_hour=100_000, max_replies_per_day=100_000)
    a = env.dovecot.accounts
    done = subprocess.run([sys.executable, str(BENCH / "daemon_memory.py"), str(config_path),
                           str(sizes.memory_polls), str(user.maildir.path), str(a.mail_uid),
                           str(a.mail_gid)], capture_output=True, text=True,
                          timeout=1800, check=False, env=dict(os.environ))
    if done.returncode != 0:
        raise RuntimeError(f"daemon_memory.py failed: {done.stderr.strip()[-800:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    first, last = result["rss_first"], result["rss_last"]
    growth = last - first
    checkpoints = ", ".join(f"{n}: {rss:.1f}" for n, rss in result["checkpoints"])
    return [Figure(f"daemon memory after {sizes.memory_polls} polls (growth)", growth, "MB",
                   first, last / first, "growth <= 5 MB; <= 80 MB total",
                   growth <= 5 and last <= 80,
                   [f"RSS after the first poll {first:.1f} MB, after the last {last:.1f} MB "
                    f"(baseline column: the first; ratio: last / first)",
                    f"RSS in MB after poll n: {checkpoints}",
                    f"{result['seconds'] / sizes.memory_polls * 1000:.1f} ms per poll; "
                    f"{result['handled']} messages handled and {result['sent']} replies sent "
                    "(the first poll handles the folder's last week; 5 new messages arrive "
                    "every 1/20 of the run)"])]


# ---------------------------------------------------------------------------------------------
# 8. The weekly digest over many logged actions

_MIX = (  # (share per 1000, kind, action, policy rule, outbox status)
    (850, "other_linkedin", "log", "log", None),
    (40, "group_activity", "log", "log", None),
    (70, "connection_invitation", "reply", "reply", OutboxStatus.SENT),
    (20, "linkedin_message", "reply", "reply", OutboxStatus.SENT),
    (10, "connection_invitation", "log", "already-replied-person", None),
    (9, "not_linkedin", "ignore", "not-linkedin", None),
    (1, "spoofed_linkedin", "hold", "spoof", None),
)


def _fill_actions(store: Store, account: str, count: int, now: datetime) -> None:
    rng = random.Random(count)
    table = [row for share, *row in _MIX for _ in range(share)]
    rows, replies = [], []
    for i in range(count):
        kind, action, rule, status = table[i % len(table)]
        seen = now - timedelta(seconds=rng.uniform(60, 6.9 * 86400))
        rows.append({
            "id": i + 1, "account": account, "message_key": f"{i:064x}", "folder": "INBOX",
            "uidvalidity": 1, "uid": i + 1, "seen_at": seen, "kind": kind,
            "authentic": kind != "spoofed_linkedin", "classify_rule": "bench",
            "person_name": f"Person {i}", "profile_url": None, "invitation_id": None,
            "address_source": None, "action": action, "policy_rule": rule,
            "reasons": json.dumps([f"the {rule} rule decided"]), "error": None,
            "resolved_at": None,
        })
        if status is not None:
            replies.append({
                "message_row": i + 1, "message_id": f"<bench{i}@counsel.example.edu>",
                "template": kind, "recipient_name": f"Person {i}",
                "recipient_email": f"p{i}@students.example.edu", "redirected_to": None,
                "status": status, "attempts": 1, "next_attempt_at": None, "last_error": None,
                "created_at": seen, "sent_at": seen + timedelta(seconds=5),
            })
    with store.transaction() as c:
        c.execute(schema.messages.insert(), rows)
        c.execute(schema.outbox.insert(), replies)


def digest(env: Environment, sizes: Sizes) -> list[Figure]:
    from modbot import digest as digest_module

    count = sizes.digest_rows
    progress(f"digest over {k(count)} logged actions")
    settings = env.settings("small")
    ctx = Context.build(settings, dkim_lookup=None)
    now = datetime.now(UTC)
    try:
        _fill_actions(ctx.store, settings.account, count, now)
        gathered: list[float] = []
        built: list[float] = []
        size = 0
        for _ in range(3):
            start = perf()
            data = digest_module.gather(ctx.store, settings, now)
            middle = perf()
            message = digest_module.build(data, ctx.templates, settings.counselor, now=now,
                                          message_id="<digest@counsel.example.edu>")
            built.append(perf() - middle)
            gathered.append(middle - start)
            size = len(bytes(message))
    finally:
        ctx.store.close()
    total = [g + b for g, b in zip(gathered, built, strict=True)]
    value = median(total)
    return [Figure(f"digest over {k(count)} logged actions", value, "s", None, None, "<= 1 s",
                   value <= 1,
                   [f"gather {median(gathered):.3f} s + build {median(built):.3f} s; the "
                    f"digest email is {size / 1024:.0f} KiB",
                    "all in the last 7 days: 89% logged, 9% replies sent, 0.9% ignored, "
                    "0.1% held as spoofs"])]


def dump_env_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "dovecot": subprocess.run([mailservers.DOVECOT, "--version"], capture_output=True,
                                      text=True, check=False).stdout.strip()}


__all__ = ["FULL", "QUICK", "Figure", "Sizes", "backlog", "digest", "idle", "memory",
           "poll_new", "poll_nothing_new", "run_once", "sends"]
