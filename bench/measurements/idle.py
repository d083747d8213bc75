"""The benchmark's measurement `idle`: arrival to reply, with IDLE."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import corpus
from environment import Environment
from framework import Figure, Sizes, median, p95, perf, progress

from modbot.poll import Context, Poller
from modbot.store import OutboxStatus, Store


def _wait_exists(client: Any, timeout: float = 10.0) -> bool:
    deadline = perf() + timeout
    while perf() < deadline:
        for response in client.idle_check(timeout=max(0.05, deadline - perf())):
            if len(response) > 1 and response[1] == b"EXISTS":
                return True
    return False


_INVITATION_ID = b"7012345678901234567"


def figures(env: Environment, sizes: Sizes) -> list[Figure]:
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
        from modbot.config import Config
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
