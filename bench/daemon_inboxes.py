"""Run the real daemon over every inbox of one configuration, in a process of its own.

Run by ``measurements/inboxes.py``: ``daemon_inboxes.py CONFIG``. The daemon is ``run_daemon``
exactly as ``modbot run`` starts it (IDLE on, its own SIGTERM handling); this wrapper only
listens to the daemon's own INFO log lines to tell the measuring process, one JSON line each on
stdout, when every inbox has finished its first poll (``polled``) and when every inbox is
waiting in IDLE (``idling``), in seconds since ``run_daemon`` was called (and since the process
started). Nothing else of the daemon's is touched, so its memory and CPU are the daemon's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

STARTED = time.monotonic()

from modbot import config  # noqa: E402
from modbot.daemon import run_daemon  # noqa: E402


class Watch(logging.Handler):
    """Counts the inboxes that reached IDLE and finished a first poll, from the log lines."""

    def __init__(self, accounts: list[str]) -> None:
        super().__init__(level=logging.INFO)
        self.accounts = accounts
        self.idling: set[str] = set()
        self.polled: set[str] = set()
        self.origin = time.monotonic()
        self.told: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name == "modbot.idle" and "over IDLE" in message:
            self.idling.add(message.split(": ", 1)[0])
            self._tell("idling", self.idling)
        elif record.name == "modbot.daemon" and ("poll:" in message or "poll failed" in message):
            # One account alone logs no "user@host: " prefix.
            name = message.split(": ", 1)[0] if len(self.accounts) > 1 else self.accounts[0]
            self.polled.add(name)
            self._tell("polled", self.polled)

    def _tell(self, event: str, seen: set[str]) -> None:
        if event in self.told or len(seen) < len(self.accounts):
            return
        self.told.add(event)
        now = time.monotonic()
        print(json.dumps({"event": event, "seconds": now - self.origin,
                          "since_process_start": now - STARTED}), flush=True)


def main(path: str) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    loaded = config.load(path)
    watch = Watch([a.account for a in loaded.accounts])
    for name in ("modbot.idle", "modbot.daemon"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(watch)
    print(json.dumps({"event": "starting", "accounts": len(loaded.accounts),
                      "since_process_start": time.monotonic() - STARTED}), flush=True)
    watch.origin = time.monotonic()
    asyncio.run(run_daemon(loaded))
    print(json.dumps({"event": "stopped"}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
