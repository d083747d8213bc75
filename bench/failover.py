"""The failover soak: several modbot daemons share 20 accounts on one PostgreSQL while
invitations arrive throughout; daemons that serve accounts are SIGKILLed at random moments and
restarted, and one is SIGSTOPped (a hung host) and resumed later.

    .venv/bin/python bench/failover.py            # full: 10 minutes, 3 daemons, 20 accounts
    .venv/bin/python bench/failover.py --quick    # scaled: 2.5 minutes
    .venv/bin/python bench/failover.py --seconds 300 --daemons 2 --seed 7

At each kill or stop, one invitation goes at once to each account the victim served, so the
time to take over is measured from the (last) kill to that account's next reply as the SMTP
server receives it. Prints the kills, stops, takeovers, takeover median, p95 and max, and the
invitations lost and the replies duplicated (counted at the SMTP server by recipient: every
invitation comes from a distinct person). Exits 1 when the takeover p95 exceeds 60 s or
anything was lost or duplicated. Needs Dovecot (dovecot-imapd) and PostgreSQL >= 14 like the
tests.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# The test support package (tests/support/), shared with the tests, is imported as `support`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trustme
from support import pgserver, servers
from support.failover import Cluster, Daemon, Outcome, StampedSmtp

from modbot.tls import client_context

TARGET_SECONDS = 60.0


@dataclass
class Plan:
    seconds: float  # how long invitations arrive and daemons are killed
    accounts: int = 20
    daemons: int = 3
    gap: float = 1.0  # seconds between invitations, round robin over the accounts
    kill_every: tuple[float, float] = (25.0, 55.0)  # a kill after a random wait in this range
    stop_at: float = 0.35  # the SIGSTOP, as a fraction of ``seconds``
    stop_for: float = 60.0  # how long the stopped daemon stays stopped
    seed: int = 1


@dataclass
class Result:
    kills: int = 0
    stops: int = 0
    takeovers: list[float] = field(default_factory=list)  # seconds, one per orphaned account
    unserved: int = 0  # orphaned accounts never served again
    outcome: Outcome | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.takeovers) if self.takeovers else float("nan")

    @property
    def p95(self) -> float:
        ordered = sorted(self.takeovers)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] \
            if ordered else float("nan")

    @property
    def worst(self) -> float:
        return max(self.takeovers) if self.takeovers else float("nan")

    @property
    def ok(self) -> bool:
        out = self.outcome
        return (out is not None and out.lost == 0 and out.duplicates == 0
                and self.unserved == 0 and bool(self.takeovers) and self.p95 <= TARGET_SECONDS)

    def lines(self) -> list[str]:
        out = self.outcome
        assert out is not None
        return [
            f"kills {self.kills}, stops {self.stops}, takeovers {len(self.takeovers)} "
            f"(accounts never served again: {self.unserved})",
            f"takeover: median {self.median:.1f} s, p95 {self.p95:.1f} s, max {self.worst:.1f} s"
            f" (target p95 <= {TARGET_SECONDS:.0f} s)",
            f"invitations {out.invitations}: answered once {out.answered}, lost {out.lost}, "
            f"duplicated {out.duplicates}, held as 'may have been sent' {out.uncertain}",
        ]


class Arrivals:
    """Invitations round robin every ``gap`` seconds (jittered) from a thread until stopped."""

    def __init__(self, cluster: Cluster, gap: float, rng: random.Random) -> None:
        self.cluster, self.gap, self.rng = cluster, gap, rng
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.rng.uniform(0.5, 1.5) * self.gap):
            self.cluster.deliver()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def _say(text: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {text}", flush=True)


def run(plan: Plan, cluster: Cluster, *, verbose: bool = True) -> Result:
    """Run ``plan`` against ``cluster`` (its daemons not yet started)."""
    rng = random.Random(plan.seed)
    say = _say if verbose else (lambda _: None)
    result = Result()
    for _ in range(plan.daemons):
        cluster.start()
    held = cluster.wait_held(240)  # each daemon loads every account's templates and directory
    if len(held) < plan.accounts:
        raise RuntimeError(f"the daemons took only {len(held)} of {plan.accounts} accounts")
    say(f"{plan.daemons} daemons serve {plan.accounts} accounts")
    pending: dict[int, float] = {}  # orphaned account -> when its last holder was killed
    restarts: list[float] = []
    began = time.monotonic()
    end = began + plan.seconds
    next_kill = began + rng.uniform(*plan.kill_every)
    stop_at, stopped, resume_at = began + plan.stop_at * plan.seconds, None, 0.0
    arrivals = Arrivals(cluster, plan.gap, rng)

    def orphan(victim: Daemon, what: str) -> None:
        now = time.monotonic()
        its = [a for a, pid in cluster.holders().items() if pid == victim.pid]
        for account in its:
            pending[account] = now
            cluster.deliver(account)  # the probe: answered as soon as someone serves it
        say(f"{what} daemon {victim.pid}, which served {len(its)} accounts")

    def active() -> list[Daemon]:
        serving = set(cluster.holders().values())
        return [d for d in cluster.live() if not d.stopped and d.pid in serving]

    try:
        while time.monotonic() < end or (pending and time.monotonic() < end + 120):
            now = time.monotonic()
            for account, since in list(pending.items()):
                at = cluster.served_after(account, since)
                if at is not None:
                    result.takeovers.append(at - since)
                    del pending[account]
            if now < end and now >= next_kill and active():
                victim = rng.choice(active())
                orphan(victim, "killed")
                cluster.kill(victim)
                result.kills += 1
                restarts.append(time.monotonic() + rng.uniform(1, 5))
                next_kill = time.monotonic() + rng.uniform(*plan.kill_every)
            if stopped is None and now >= stop_at and active():
                stopped = rng.choice(active())
                orphan(stopped, "stopped")
                cluster.pause(stopped)
                result.stops += 1
                resume_at = time.monotonic() + plan.stop_for
            if stopped is not None and stopped.stopped and now >= resume_at:
                cluster.resume(stopped)
                say(f"resumed daemon {stopped.pid}")
            for due in [t for t in restarts if t <= now]:
                restarts.remove(due)
                say(f"started daemon {cluster.start().pid}")
            time.sleep(0.2)
    finally:
        arrivals.stop()
        if stopped is not None and stopped.stopped:
            cluster.resume(stopped)
    result.unserved = len(pending)
    drained = time.monotonic() + 60
    while cluster.answered() < len(cluster.sent_to) and time.monotonic() < drained:
        time.sleep(0.5)
    result.outcome = cluster.outcome()
    return result


def soak(plan: Plan, *, verbose: bool = True, dovecot: servers.Dovecot | None = None,
         cert: trustme.LeafCert | None = None, ca_file: Path | None = None) -> Result:
    """Start what ``plan`` needs (PostgreSQL, aiosmtpd; Dovecot unless given), run it, stop."""
    work = Path(tempfile.mkdtemp(prefix="modbot-failover-", dir="/tmp"))
    work.chmod(0o755)
    own_dovecot = dovecot is None
    if cert is None or ca_file is None:
        ca = trustme.CA()
        cert = ca.issue_cert(*servers.CERT_NAMES)
        ca_file = work / "ca.pem"
        ca.cert_pem.write_to_path(ca_file)
        ca_file.chmod(0o644)
    postgres = pgserver.start_postgres()
    smtp = StampedSmtp("tls", cert).start()
    cluster = None
    kept = True
    try:
        if dovecot is None:
            dovecot = servers.start_dovecot(cert, client_context(ca_file))
        cluster = Cluster(work, dovecot, smtp, ca_file, postgres.create_database(),
                          accounts=plan.accounts, people=int(plan.seconds / plan.gap * 1.5) + 300,
                          tag=f"soak{plan.seed}-")
        result = run(plan, cluster, verbose=verbose)
        kept = not result.ok
        return result
    finally:
        if cluster is not None:
            cluster.close()
        smtp.stop()
        postgres.stop()
        if own_dovecot and dovecot is not None:
            dovecot.stop()
        if kept:
            print(f"the daemons' logs are kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the scaled run: 2.5 minutes")
    parser.add_argument("--seconds", type=float, help="how long kills and invitations go on")
    parser.add_argument("--daemons", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    seconds = args.seconds or (150.0 if args.quick else 600.0)
    plan = Plan(seconds=seconds, accounts=args.accounts, daemons=args.daemons, seed=args.seed,
                stop_for=45.0 if args.quick else 60.0)
    print(f"failover soak: {plan.daemons} daemons, {plan.accounts} accounts, {seconds:.0f} s, "
          f"seed {plan.seed}", flush=True)
    result = soak(plan)
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
