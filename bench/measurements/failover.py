"""The benchmark's measurement `failover`: daemons sharing 20 accounts on PostgreSQL, killed
and stopped while invitations arrive (the scaled run of ``bench/failover.py``)."""

from __future__ import annotations

import failover
from environment import Environment
from framework import QUICK, Figure, Sizes, progress


def figures(env: Environment, sizes: Sizes) -> list[Figure]:
    quick = sizes == QUICK
    plan = failover.Plan(seconds=90.0 if quick else 150.0, stop_for=40.0 if quick else 45.0,
                         kill_every=(20.0, 40.0))
    progress(f"failover: {plan.daemons} daemons, {plan.accounts} accounts, "
             f"{plan.seconds:.0f} s of kills and invitations")
    result = failover.soak(plan, verbose=False)
    out = result.outcome
    assert out is not None
    details = result.lines()
    wrong = out.lost + out.duplicates
    return [
        Figure("failover takeover p95", result.p95, "s", None, None, "p95 <= 60 s",
               bool(result.takeovers) and result.p95 <= failover.TARGET_SECONDS
               and result.unserved == 0, details),
        Figure("failover replies lost or duplicated", float(wrong), "replies", None, None,
               "0", wrong == 0,
               [f"{out.invitations} invitations, {out.answered} answered once, lost "
                f"{out.lost}, duplicated {out.duplicates}"]),
    ]
