"""What every measurement shares: the ``Figure`` row, the sizes of full and quick mode, and
timing helpers. The measurements themselves are in ``measurements/``, one module each; each
``figures(env, sizes)`` returns ``Figure`` rows: modbot's figure, the raw baseline measured in
the same run, their ratio, the target, and whether it is met.

Baselines do the least work that gets the same job done, with the same libraries modbot uses
(imapclient, mail-parser, aiosmtplib) or, for the whole-process row, Debian's imapfilter. Every
TLS connection verifies the benchmark CA's certificate, the same way for modbot and baselines.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import servers

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
    inboxes: tuple[int, ...]  # one daemon over this many inboxes, each size in turn
    inboxes_quiet_seconds: float  # the quiet-CPU window of the largest size
    inboxes_arrivals: int  # invitations delivered to random inboxes of the largest size


FULL = Sizes(small=1_000, large=100_000, poll_iterations=150, baseline_iterations=2_000,
             run_once_runs=10, new_rounds=8, backlog=10_000, backlog_imap=1_000, sends=1_000,
             send_rounds=3, idle_samples=15, memory_polls=10_000, digest_rows=100_000,
             inboxes=(1, 50, 200), inboxes_quiet_seconds=600, inboxes_arrivals=40)
QUICK = Sizes(small=1_000, large=10_000, poll_iterations=20, baseline_iterations=200,
              run_once_runs=2, new_rounds=2, backlog=300, backlog_imap=100, sends=100,
              send_rounds=1, idle_samples=3, memory_polls=100, digest_rows=5_000,
              inboxes=(1, 5, 20), inboxes_quiet_seconds=20, inboxes_arrivals=10)


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


def dump_env_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "dovecot": subprocess.run([servers.find_dovecot(), "--version"], capture_output=True,
                                      text=True, check=False).stdout.strip()}

