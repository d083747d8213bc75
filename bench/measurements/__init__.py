"""The benchmark's measurements, one module each, in the order ``bench/run.py`` runs them.

Each module's ``figures(env, sizes)`` takes the run's ``Environment`` and ``Sizes`` and returns
its ``Figure`` rows; ``--only`` names them as ``STEPS`` does.
"""

from __future__ import annotations

from collections.abc import Callable

from environment import Environment
from framework import Figure, Sizes

from measurements import (
    backlog,
    digest,
    failover,
    idle,
    inboxes,
    memory,
    poll_idle,
    poll_new,
    run_once,
    send,
)

STEPS: dict[str, Callable[[Environment, Sizes], list[Figure]]] = {
    "poll-idle": poll_idle.figures,
    "run-once": run_once.figures,
    "poll-new": poll_new.figures,
    "backlog": backlog.figures,
    "send": send.figures,
    "idle": idle.figures,
    "memory": memory.figures,
    "digest": digest.figures,
    "inboxes": inboxes.figures,
    "failover": failover.figures,
}
