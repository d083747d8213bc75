"""Run one real poll in this process, as ``modbot run-once`` does, for the reliability tests.

    python tests/support/poll_driver.py CONFIG NOW [--crash-at STEP [--occurrence N]]
                                                   [--pid-file PATH] [--debug]

With ``--crash-at`` the poll's checkpoint SIGKILLs this process the N-th time the poll reaches
STEP (one of ``modbot.poll.STEPS``): no cleanup, no flush, no exception handler runs, exactly as
when the machine loses power or the OOM killer strikes. ``--pid-file`` writes this process's id
first, for a server that kills it from outside. ``--debug`` logs everything at DEBUG, libraries
included, to stderr. Prints one line of JSON: what was sent and which errors were met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from modbot import config
from modbot.errors import ModbotError
from modbot.poll import STEPS, Context, Poller


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("now", type=datetime.fromisoformat)
    parser.add_argument("--crash-at", choices=STEPS)
    parser.add_argument("--occurrence", type=int, default=1)
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    if args.pid_file:
        args.pid_file.write_text(str(os.getpid()))
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
    reached = 0

    def checkpoint(step: str) -> None:
        nonlocal reached
        if step == args.crash_at:
            reached += 1
            if reached == args.occurrence:
                os.kill(os.getpid(), signal.SIGKILL)

    try:
        settings = config.load(args.config).first
        ctx = Context.build(settings, dkim_lookup=None)
        report = asyncio.run(Poller(ctx, checkpoint=checkpoint).poll(args.now))
    except ModbotError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps({"sent": len(report.sent), "errors": report.errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
