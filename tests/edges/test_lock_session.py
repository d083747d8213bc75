"""The daemons' shared lock session on PostgreSQL: taking, giving back, sharing and losing."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from modbot.errors import StoreError
from modbot.lock import DAEMON_PREFIX, LockSession, survey
from modbot.standby import Standby, fair_share

pytestmark = pytest.mark.integration

ACCOUNTS = [f"counselor{n}@imap.counsel.example.edu" for n in range(4)]

# A daemon's lock session in its own process: it takes the first account and reports, then
# after any line on stdin says whether it still holds it.
HOLDER = """
import sys
from modbot.lock import LockSession
session = LockSession(sys.argv[1], heartbeat=0.5, lease=2, silence=3)
session.start()
print("locked" if session.take(sys.argv[2]) else "refused", flush=True)
sys.stdin.readline()
print("holds" if session.holds(sys.argv[2]) else "lost", flush=True)
"""


@pytest.fixture
def sessions(postgres_url: str) -> Iterator[list[LockSession]]:
    """Lock sessions on a fresh database, opened by ``open_session``; closed afterwards."""
    opened: list[LockSession] = []
    yield opened
    for session in opened:
        session.close()


def open_session(url: str, opened: list[LockSession], **timing: float) -> LockSession:
    session = LockSession(url, **timing)
    session.start()
    opened.append(session)
    return session


def test_fair_share_rounds_up() -> None:
    """Each live daemon serves at most the accounts divided by the daemons, rounded up."""
    assert [fair_share(20, n) for n in (0, 1, 2, 3, 7, 40)] == [20, 20, 10, 7, 3, 1]


def test_one_session_per_account_and_the_survey_names_it(
        postgres_url: str, sessions: list[LockSession]) -> None:
    """An account taken by one daemon's session is refused to another; the survey tells which
    daemon holds it and counts both daemons; given back, the other takes it."""
    first, second = open_session(postgres_url, sessions), open_session(postgres_url, sessions)
    assert first.take(ACCOUNTS[0]) and first.take(ACCOUNTS[1])
    assert not second.take(ACCOUNTS[0])
    found = survey(postgres_url, ACCOUNTS)
    assert found is not None and len(found.daemons) == 2
    assert set(found.holders) == {ACCOUNTS[0], ACCOUNTS[1]}
    holder = found.holders[ACCOUNTS[0]]
    assert holder.name == first.name and holder.name.startswith(DAEMON_PREFIX)
    assert found.count(holder) == 2
    first.give_back(ACCOUNTS[0])
    assert not first.holds(ACCOUNTS[0]) and first.holds(ACCOUNTS[1])
    assert second.take(ACCOUNTS[0]) and second.holds(ACCOUNTS[0])


def test_a_lost_session_stops_holding_and_frees_its_accounts(
        postgres_url: str, sessions: list[LockSession]) -> None:
    """When the server ends the session, the next heartbeat says so, the accounts are no
    longer held here, another daemon can take them, and a new session opens, holding none."""
    lost: list[bool] = []
    first = open_session(postgres_url, sessions, heartbeat=60)
    first.on_lost = lambda: lost.append(True)
    second = open_session(postgres_url, sessions, heartbeat=60)
    assert first.take(ACCOUNTS[0])
    old = first.backend_pid
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": old})
    finally:
        engine.dispose()
    first.beat()
    assert lost == [True] and not first.holds(ACCOUNTS[0])
    assert second.take(ACCOUNTS[0])
    first.beat()  # opens a new session
    assert first.backend_pid not in (None, old)
    assert not first.take(ACCOUNTS[0])


def test_a_stopped_holder_loses_its_accounts_to_the_server(postgres_url: str) -> None:
    """A daemon stopped (SIGSTOP) past the silence bound has its session ended by the server:
    another takes the account, and the stopped one, resumed, no longer trusts its lock."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, postgres_url, ACCOUNTS[0]],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdin is not None and process.stdout is not None
    other = LockSession(postgres_url, heartbeat=60)
    other.start()
    try:
        assert process.stdout.readline().strip() == "locked"
        assert not other.take(ACCOUNTS[0])
        process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        while not other.take(ACCOUNTS[0]):
            assert time.monotonic() - started < 15, "the server kept a silent session's lock"
            time.sleep(0.2)
        assert time.monotonic() - started >= 2  # not before its lease could have run out
        process.send_signal(signal.SIGCONT)
        process.stdin.write("\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "lost"
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.communicate()
        other.close()


def test_lease_runs_out_without_heartbeats(postgres_url: str,
                                           sessions: list[LockSession]) -> None:
    """Without an answered heartbeat for the lease, the lock is no longer trusted here."""
    session = open_session(postgres_url, sessions, heartbeat=60, lease=0.5, silence=5)
    assert session.take(ACCOUNTS[0])
    time.sleep(0.7)
    assert not session.holds(ACCOUNTS[0])
    with pytest.raises(StoreError, match="no longer holds the lock"):
        session.lock(ACCOUNTS[0]).check()


class Serving:
    """What a ``Standby`` was told to begin and end."""

    def __init__(self) -> None:
        self.now: set[str] = set()
        self.ended: list[str] = []

    async def begin(self, account: str) -> None:
        self.now.add(account)

    async def end(self, account: str) -> None:
        self.now.discard(account)
        self.ended.append(account)


def standby(session: LockSession) -> tuple[Standby, Serving]:
    serving = Serving()
    return Standby(session, ACCOUNTS, serving.begin, serving.end), serving


def test_accounts_are_shared_taken_over_and_given_back(
        postgres_url: str, sessions: list[LockSession]) -> None:
    """Two daemons split the accounts; one gone, the other takes them all; a newcomer gets
    its share back one account at a time, and then nothing moves."""
    async def scenario() -> None:
        first, first_serving = standby(open_session(postgres_url, sessions))
        second, second_serving = standby(open_session(postgres_url, sessions))
        await first.round()
        await second.round()
        assert len(first_serving.now) == len(second_serving.now) == 2
        assert not first_serving.now & second_serving.now
        second.session.close()
        await first.round()
        assert first_serving.now == set(ACCOUNTS)
        third, third_serving = standby(open_session(postgres_url, sessions))
        for _ in range(8):
            await first.round()
            await third.round()
        assert len(first_serving.now) == len(third_serving.now) == 2
        moved = len(first_serving.ended)
        for _ in range(4):
            await first.round()
            await third.round()
        assert len(first_serving.ended) == moved == 2  # no flapping once balanced

    asyncio.run(scenario())


def test_a_starved_account_is_taken_beyond_the_share(
        postgres_url: str, sessions: list[LockSession]) -> None:
    """An account no one takes for several rounds is taken even above the fair share."""
    async def scenario() -> None:
        idle = open_session(postgres_url, sessions)  # counted as live, never takes anything
        first, serving = standby(open_session(postgres_url, sessions))
        await first.round()
        assert len(serving.now) == 2
        for _ in range(12):
            await first.round()
        assert serving.now == set(ACCOUNTS)
        ended = len(serving.ended)
        for _ in range(10):  # and it keeps them for a while: no flapping
            await first.round()
        assert serving.now == set(ACCOUNTS) and len(serving.ended) == ended
        assert idle.held == frozenset()

    asyncio.run(scenario())


def test_lost_accounts_stop_being_served_at_the_next_round(
        postgres_url: str, sessions: list[LockSession]) -> None:
    """When the lease runs out, the next round ends every account this daemon served."""
    async def scenario() -> None:
        session = open_session(postgres_url, sessions, heartbeat=60, lease=1, silence=5)
        first, serving = standby(session)
        await first.round()
        assert serving.now == set(ACCOUNTS)
        await asyncio.sleep(1.2)
        with pytest.raises(StoreError):
            session.lock(ACCOUNTS[0]).check()
        await first.round()
        assert not serving.now - session.held
        assert set(serving.ended) == set(ACCOUNTS)

    asyncio.run(scenario())




def test_status_names_the_daemon_serving_each_account(
        postgres_migrated_url: str, sessions: list[LockSession],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``modbot status`` says which daemon serves each account, or that none does."""
    from datetime import UTC, datetime

    from modbot import config, status

    monkeypatch.setenv("PW", "secret")
    loaded = config.parse({
        "accounts": [{"counselor": {"name": f"C{n}", "email": f"c{n}@counsel.example.edu",
                                    "confidential_contact": "555-0100"},
                      "imap": {"host": "imap.counsel.example.edu", "username": f"u{n}",
                               "password_env": "PW"},
                      "smtp": {"host": "smtp.counsel.example.edu"}} for n in range(2)],
        "database": {"url": postgres_migrated_url}})
    session = open_session(postgres_migrated_url, sessions)
    assert session.take(loaded.accounts[0].account)
    said = status.lines(loaded, datetime.now(UTC))
    served = [line for line in said if "served by" in line]
    host_and_pid = session.name.removeprefix(DAEMON_PREFIX).replace(" ", ", pid ")
    assert served[0].startswith(f"  served by: the daemon on {host_and_pid}, connected since")
    assert served[1] == "  served by: no daemon holds it"
