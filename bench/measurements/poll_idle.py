"""The benchmark's measurement `poll-idle`: a poll with nothing new."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import environment
from environment import Environment
from framework import Figure, Sizes, k, median, ms, perf, progress, timed

from modbot import config
from modbot.config import Account
from modbot.mailbox import Mailbox
from modbot.poll import Context, Poller
from modbot.tls import client_context


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

    tls = environment.client_tls(env.ca_file)
    phases: dict[str, list[float]] = {phase: [] for phase in PHASES}

    def once() -> None:
        marks = [perf()]
        client = IMAPClient(environment.HOST, env.dovecot.imaps_port, ssl=True, ssl_context=tls,
                            timeout=60)
        marks.append(perf())
        client.login(user, environment.PASSWORD)
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


def figures(env: Environment, sizes: Sizes, blocks: int = 5) -> list[Figure]:
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
