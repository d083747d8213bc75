"""The benchmark's measurement `digest`: the weekly digest over many logged actions."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from environment import Environment
from framework import Figure, Sizes, k, median, perf, progress

from modbot.poll import Context
from modbot.store import OutboxStatus, Store, schema

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


def figures(env: Environment, sizes: Sizes) -> list[Figure]:
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
