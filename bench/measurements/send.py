"""The benchmark's measurement `send`: replies sent over SMTP with TLS."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import environment
from environment import Environment
from framework import Figure, Sizes, median, perf, progress

from modbot import render
from modbot.model import Person, Recipient
from modbot.outbox import Sender
from modbot.poll import Context, Poller
from modbot.store import MessageRecord, OutboxStatus, ReplyRecord, Store
from modbot.tls import client_context


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


def figures(env: Environment, sizes: Sizes) -> list[Figure]:
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
        smtp = aiosmtplib.SMTP(hostname=environment.HOST, port=env.smtp.port, use_tls=True,
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
