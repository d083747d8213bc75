"""The benchmark's measurement `backlog`: a backlog of LinkedIn notifications, judged."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import corpus
from environment import Environment
from framework import Figure, Sizes, k, perf, progress

from modbot.history import Answered, Past
from modbot.judging import judge
from modbot.poll import Context, Poller


def _notifications(count: int, tag: str) -> list[bytes]:
    fixtures = corpus.linkedin_fixtures()
    rng = random.Random(count)
    return [corpus.with_message_id(fixtures[i % len(fixtures)][1],
                                   f"{tag}.{i}.{rng.getrandbits(48):012x}@linkedin.com")
            for i in range(count)]


def figures(env: Environment, sizes: Sizes) -> list[Figure]:
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
