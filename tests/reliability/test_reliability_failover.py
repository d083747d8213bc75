"""Failover on PostgreSQL: three real daemons share four accounts while invitations arrive;
the busiest is SIGKILLed and restarted, another is SIGSTOPped (a hung host) and later resumed.
Every invitation is answered exactly once, counted where the replies arrive; every account is
served again within a minute; and the accounts end spread over the live daemons."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from support import servers
from support.failover import Cluster, StampedSmtp

pytestmark = pytest.mark.integration

ACCOUNTS = 4
TAKEOVER_TARGET = 60.0  # seconds from a kill or stop to the account's next reply


@pytest.fixture
def stamped_smtp(server_cert: trustme.LeafCert) -> Iterator[StampedSmtp]:
    server = StampedSmtp("tls", server_cert).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path: Path, dovecot: servers.Dovecot, stamped_smtp: StampedSmtp,
            ca_file: Path, postgres_url: str) -> Iterator[Cluster]:
    made = Cluster(tmp_path, dovecot, stamped_smtp, ca_file, postgres_url, accounts=ACCOUNTS,
                   people=400)
    yield made
    made.close()


class Arrivals:
    """Invitations delivered round robin every ``gap`` seconds by a thread until stopped."""

    def __init__(self, cluster: Cluster, gap: float) -> None:
        self.cluster, self.gap = cluster, gap
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(self.gap):
            self.cluster.deliver()

    def __enter__(self) -> Arrivals:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stopping.set()
        self.thread.join()


def served_again(cluster: Cluster, accounts: list[int], since: float,
                 timeout: float) -> dict[int, float]:
    """Seconds from ``since`` to each account's next reply (waiting up to ``timeout``)."""
    deadline = since + timeout
    found: dict[int, float] = {}
    while time.monotonic() < deadline and len(found) < len(accounts):
        for account in accounts:
            at = cluster.served_after(account, since)
            if at is not None:
                found[account] = at - since
        time.sleep(0.2)
    return found


def logs(cluster: Cluster) -> str:
    return "\n".join(f"--- {d.log.name}\n" + d.log.read_text(errors="replace")[-3000:]
                     for d in cluster.daemons)


def test_failover_answers_everything_once_and_takes_over_within_a_minute(
        cluster: Cluster) -> None:
    daemons = [cluster.start() for _ in range(3)]
    held = cluster.wait_held(20, by={d.pid for d in daemons})
    assert len(held) == ACCOUNTS, logs(cluster)
    with Arrivals(cluster, gap=0.4):
        time.sleep(2)
        # The busiest daemon dies at once, as on a crash or an OOM kill.
        counts = Counter(held.values())
        victim = next(d for d in daemons if d.pid == counts.most_common(1)[0][0])
        its = [a for a, pid in held.items() if pid == victim.pid]
        killed_at = time.monotonic()
        cluster.kill(victim)
        taken = served_again(cluster, its, killed_at, TAKEOVER_TARGET)
        assert set(taken) == set(its), logs(cluster)
        restarted = cluster.start()
        # Another one hangs: its session falls silent and the server frees its accounts.
        held = cluster.holders()
        survivors = [d for d in daemons if d.alive]
        hung = next(d for d in survivors if d.pid in held.values())
        its_hung = [a for a, pid in held.items() if pid == hung.pid]
        stopped_at = time.monotonic()
        cluster.pause(hung)
        taken_hung = served_again(cluster, its_hung, stopped_at, TAKEOVER_TARGET)
        assert set(taken_hung) == set(its_hung), logs(cluster)
        cluster.resume(hung)
        time.sleep(1)
    drained = time.monotonic() + 20
    while cluster.answered() < len(cluster.sent_to) and time.monotonic() < drained:
        time.sleep(0.5)
    outcome = cluster.outcome()
    print(f"killed: taken over in {sorted(round(t, 1) for t in taken.values())} s; "
          f"stopped: taken over in {sorted(round(t, 1) for t in taken_hung.values())} s; "
          f"{outcome}")
    assert outcome.lost == 0 and outcome.duplicates == 0, (outcome, logs(cluster))
    assert outcome.answered + outcome.uncertain == outcome.invitations, outcome
    assert max(taken.values()) <= TAKEOVER_TARGET
    assert max(taken_hung.values()) <= TAKEOVER_TARGET
    # The live daemons share the accounts: no daemon serves two more than another.
    live = {d.pid for d in cluster.live()}
    assert live == {restarted.pid, hung.pid} | {d.pid for d in daemons if d.alive}
    spread = cluster.wait_spread(live, 30)
    assert spread is not None, cluster.holders()
