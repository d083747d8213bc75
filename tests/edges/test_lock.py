"""The per-account lock: two modbots on one database never handle the same account at once."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from modbot.errors import StoreError
from modbot.lock import AccountLock, acquire_account_lock, sqlite_lock_path

pytestmark = pytest.mark.integration

ACCOUNT = "counselor@imap.counsel.example.edu"
OTHER = "advisor@imap.counsel.example.edu"

# Another modbot in its own process: takes the lock, says so, and holds it until killed.
HOLDER = """
import sys
from modbot.lock import acquire_account_lock
lock = acquire_account_lock(sys.argv[1], sys.argv[2])
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def pg_url(postgres: Any) -> str:
    """The session PostgreSQL's own database: advisory locks need no tables, so no new one."""
    return str(postgres.url())


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'modbot.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def held(url: str) -> Iterator[AccountLock]:
    """The lock for ACCOUNT, held by this process."""
    with acquire_account_lock(url, ACCOUNT) as lock:
        yield lock


def holder(url: str) -> tuple[subprocess.Popen[str], str]:
    """Start another process that takes the lock; return it and the line it reported."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, url, ACCOUNT],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def test_second_lock_in_the_same_process_is_refused(url: str, held: AccountLock) -> None:
    """A second taker is refused with a sentence naming the account."""
    with pytest.raises(StoreError, match=f"^another modbot is already handling {ACCOUNT}"):
        acquire_account_lock(url, ACCOUNT)


def test_other_accounts_are_independent(url: str, held: AccountLock) -> None:
    """Another account in the same database can be handled at the same time."""
    with acquire_account_lock(url, OTHER) as other:
        assert other.held


def test_release_lets_the_next_one_in(url: str) -> None:
    """After release (or leaving the ``with``), the lock can be taken again."""
    first = acquire_account_lock(url, ACCOUNT)
    first.release()
    first.release()  # idempotent
    with acquire_account_lock(url, ACCOUNT) as second:
        second.check()


def test_a_killed_holder_frees_the_lock(url: str) -> None:
    """Another process's lock keeps this one out until that process dies (SIGKILL)."""
    process, said = holder(url)
    try:
        assert said == "locked"
        with pytest.raises(StoreError, match=f"^another modbot is already handling {ACCOUNT}"):
            acquire_account_lock(url, ACCOUNT)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    with acquire_account_lock(url, ACCOUNT) as lock:
        lock.check()


def test_check_on_a_held_lock_passes(held: AccountLock) -> None:
    """``check`` is silent while the lock is held, and fails once it is released."""
    held.check()
    held.release()
    with pytest.raises(StoreError, match="released"):
        held.check()


# --- SQLite ----------------------------------------------------------------------------------


def test_lock_file_is_owner_only_next_to_the_database(tmp_path: Path) -> None:
    """The lock file sits beside the database, is created 0600 and names its holder."""
    database = tmp_path / "data" / "modbot.db"
    with acquire_account_lock(f"sqlite:///{database}", ACCOUNT):
        path = sqlite_lock_path(str(database), ACCOUNT)
        assert path is not None and path.parent == database.parent
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == f"pid {os.getpid()}\naccount {ACCOUNT}\n"
    assert path.exists()  # kept: deleting it would let two holders lock two different files


def test_refusal_names_the_holding_process(tmp_path: Path) -> None:
    """On SQLite the refusal says which process holds the lock."""
    url = f"sqlite:///{tmp_path / 'modbot.db'}"
    with acquire_account_lock(url, ACCOUNT), pytest.raises(
            StoreError, match=rf"\(process {os.getpid()}\)$"):
        acquire_account_lock(url, ACCOUNT)


def test_removed_lock_file_is_noticed(tmp_path: Path) -> None:
    """If someone deletes the lock file, ``check`` says so rather than run unprotected."""
    database = tmp_path / "modbot.db"
    with acquire_account_lock(f"sqlite:///{database}", ACCOUNT) as lock:
        path = sqlite_lock_path(str(database), ACCOUNT)
        assert path is not None
        path.unlink()
        with pytest.raises(StoreError, match="removed or replaced"):
            lock.check()


def test_memory_database_needs_no_lock() -> None:
    """An in-memory database cannot be shared, so taking its lock always works."""
    with acquire_account_lock("sqlite://", ACCOUNT), acquire_account_lock("sqlite://", ACCOUNT):
        pass


# --- PostgreSQL ------------------------------------------------------------------------------


def test_lost_session_is_taken_again(pg_url: str) -> None:
    """If the server ends the lock's session, ``check`` takes the lock again on a new one."""
    engine = create_engine(pg_url)
    try:
        with acquire_account_lock(pg_url, ACCOUNT) as lock:
            with engine.begin() as connection:
                ended = connection.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'modbot account lock'")).scalars().all()
            assert ended == [True]
            lock.check()
            with pytest.raises(StoreError, match="already handling"):
                acquire_account_lock(pg_url, ACCOUNT)
    finally:
        engine.dispose()


def test_lost_session_taken_by_another_is_reported(pg_url: str) -> None:
    """If another modbot took the lock while the session was gone, ``check`` refuses."""
    engine = create_engine(pg_url)
    try:
        with acquire_account_lock(pg_url, ACCOUNT) as lock:
            with engine.begin() as connection:
                connection.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'modbot account lock'"))
            with acquire_account_lock(pg_url, ACCOUNT), pytest.raises(
                    StoreError, match="already handling"):
                lock.check()
    finally:
        engine.dispose()


def test_unreachable_database_is_one_sentence(pg_url: str) -> None:
    """A PostgreSQL that cannot be reached gives a StoreError without the URL or password."""
    broken = pg_url.replace("modbot@", "modbot:canary-pw@").replace("port=", "port=1")
    with pytest.raises(StoreError, match="cannot reach the database") as caught:
        acquire_account_lock(broken, ACCOUNT)
    assert "canary-pw" not in str(caught.value) and "mbpg-" not in str(caught.value)
