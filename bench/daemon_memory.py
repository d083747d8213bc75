"""Poll an inbox many times in one process, as the daemon does, and report its memory.

Run by ``measurements/memory.py`` in a process of its own, so that only the daemon's objects count:
``daemon_memory.py CONFIG POLLS MAILDIR UID GID``. The first poll handles the mail already in
the folder (the configuration looks back a week), so every stage has run before the first
measurement; every POLLS/20 polls five new messages arrive (one a LinkedIn invitation, which
is answered over SMTP). Prints one JSON line: the resident set size (MB) after the first poll,
after the last, at checkpoints in between, and the seconds the polls took.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus

from modbot import config
from modbot.poll import Context, Poller

INVITATION_ID = b"7012345678901234567"


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def arrivals(serial: int, rng: random.Random) -> list[bytes]:
    """Four ordinary messages and one invitation with its own Message-ID and invitation id."""
    jordan = (corpus.DATA / "invitation_current_jordan_rivera.eml").read_bytes()
    invitation = corpus.with_message_id(
        jordan.replace(INVITATION_ID, str(rng.randrange(10**18, 10**19)).encode()),
        f"memory.{serial}.{rng.getrandbits(48):012x}@linkedin.com")
    return [corpus.ordinary(7_000_000 + serial * 5 + i, rng) for i in range(4)] + [invitation]


async def main(path: str, polls: int, maildir: corpus.Maildir) -> dict[str, object]:
    settings = config.load(path).first
    ctx = Context.build(settings, dkim_lookup=None)
    poller = Poller(ctx, keep_open=True)  # as the daemon's poller
    rng = random.Random(3)
    handled = len((await poller.poll(datetime.now(UTC))).handled)
    first = rss_mb()
    checkpoints = [(1, first)]
    marks = {polls * n // 10 for n in range(1, 11)}
    every = max(1, polls // 20)
    sent = 0
    start = time.perf_counter()
    for n in range(2, polls + 1):
        if n % every == 0:
            maildir.deliver(arrivals(n, rng))
        report = await poller.poll(datetime.now(UTC))
        handled += len(report.handled)
        sent += len(report.sent)
        if n in marks:
            checkpoints.append((n, rss_mb()))
    seconds = time.perf_counter() - start
    await poller.close()
    ctx.store.close()
    return {"rss_first": first, "rss_last": checkpoints[-1][1], "checkpoints": checkpoints,
            "seconds": seconds, "handled": handled, "sent": sent}


if __name__ == "__main__":
    config_path, count, maildir_path, uid, gid = sys.argv[1:6]
    box = corpus.Maildir(Path(maildir_path), int(uid), int(gid))
    print(json.dumps(asyncio.run(main(config_path, int(count), box))))
