"""One daemon per account: a lock taken before an account's first poll and held while it is served.

Two modbot processes polling the same inbox into the same database would both fetch a new
notification before either records it, and both could answer it. The unique keys in the store
catch the second record, but a lock is what keeps the second daemon from starting at all:

- PostgreSQL: a session-level advisory lock, ``pg_try_advisory_lock(space, hashtext(account))``,
  held by one dedicated connection (autocommit, so never "idle in transaction"). The two-key form
  with modbot's own ``space`` keeps clear of single-key advisory locks other programs take in the
  same database. The server releases the lock when that session ends: the process exits or dies,
  or the connection breaks, which :meth:`AccountLock.check` notices and repairs or reports.
- PostgreSQL, in the daemon: one :class:`LockSession` per daemon holds the advisory locks of
  every account it serves, so several daemons can share one database and take accounts over
  from one another (``modbot.standby`` decides which). A thread keeps the session busy; the
  server ends a session that falls silent for ``SILENCE_SECONDS`` (``idle_session_timeout``),
  which frees a hung or vanished daemon's accounts, and the daemon stops trusting its own locks
  well before that (``LEASE_SECONDS`` after the last heartbeat it sent).
- SQLite: ``flock`` on a lock file next to the database, one per account
  (``<database>.<sha256 of the account, 16 hex>.lock``, created 0600, holding the holder's pid).
  The kernel releases it when the process exits or dies. The file is never deleted: deleting it
  would let a second daemon lock a new file while the first still holds the old one.
- An in-memory SQLite database cannot be shared, so it needs no lock. Other databases offer no
  lock here: a warning says so, and the operator must run one daemon per account.

This module never puts the database URL in a message or a log: it may hold a password.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from modbot.errors import StoreError

log = logging.getLogger(__name__)

# The first key of modbot's advisory locks: "modb" in ASCII, as a signed 32-bit integer.
LOCK_SPACE = 0x6D6F6462
APPLICATION_NAME = "modbot account lock"
_SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 30",
    "SET tcp_keepalives_interval = 10",
    "SET tcp_keepalives_count = 3",
)
# The same on the client's side, so that check() learns of a dead server within about a minute.
_CLIENT_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                      "keepalives_count": 3}
_LIBPQ_DRIVERS = ("psycopg", "psycopg2", "psycopg2cffi")  # drivers that take libpq's options


def _taken(account: str, pid: int | None = None) -> StoreError:
    holder = f" (process {pid})" if pid else ""
    return StoreError(f"another modbot is already handling {account}{holder}")


class AccountLock:
    """A held per-account lock; release it with :meth:`release` or by leaving a ``with``."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.held = True

    def __enter__(self) -> AccountLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()

    def check(self) -> None:
        """Make sure the lock is still held; raise ``StoreError`` if it is lost for good.

        Call it before each poll: a poll must not run without the lock.
        """

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        self.held = False


class _NoLock(AccountLock):
    """For databases that no other process can share, or that offer no lock here."""


class _FileLock(AccountLock):
    def __init__(self, account: str, path: Path) -> None:
        super().__init__(account)
        self.path = path
        self._fd = self._open_and_lock()

    def _open_and_lock(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise _taken(self.account, pid) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
        if not self._same_file(fd):  # deleted or replaced between open() and flock()
            os.close(fd)
            return self._open_and_lock()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\naccount {self.account}\n".encode(), 0)
        return fd

    def _same_file(self, fd: int) -> bool:
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def check(self) -> None:
        if not self.held:
            raise StoreError(f"the lock for {self.account} was released")
        if not self._same_file(self._fd):
            raise StoreError(
                f"the lock file {self.path} was removed or replaced; stop this modbot and "
                "start it again so that only one handles this account")

    def release(self) -> None:
        if self.held:
            self.held = False
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the only descriptor releases the flock


def _read_pid(fd: int) -> int | None:
    try:
        first = os.pread(fd, 64, 0).split(b"\n", 1)[0]
    except OSError:
        return None
    if first.startswith(b"pid ") and first[4:].isdigit():
        return int(first[4:])
    return None


def _session_engine(url: URL, name: str, keepalives: dict[str, int]) -> Engine:
    """An engine for one long-lived lock session, named ``name`` in ``pg_stat_activity``,
    with ``keepalives`` where the driver takes libpq's options."""
    libpq = url.get_driver_name() in _LIBPQ_DRIVERS
    connect_args = {"application_name": name, **keepalives} if libpq else {}
    try:
        return create_engine(url, poolclass=NullPool, hide_parameters=True,
                             connect_args=connect_args)
    except ImportError as exc:
        raise StoreError(
            f"the database driver {exc.name} is not installed "
            "(for PostgreSQL: pip install 'modbot[postgres]')") from None
    except (SQLAlchemyError, ValueError) as exc:
        raise StoreError(f"cannot use the database URL: {type(exc).__name__}") from None


class _AdvisoryLock(AccountLock):
    def __init__(self, account: str, url: URL) -> None:
        super().__init__(account)
        self._engine = _session_engine(url, APPLICATION_NAME, _CLIENT_KEEPALIVES)
        self._connection: Connection | None = None
        try:
            self._acquire()
        except BaseException:
            self._engine.dispose()
            raise

    def _acquire(self) -> None:
        try:
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot reach the database to lock {self.account}: {type(exc).__name__}"
            ) from None
        try:
            # The server notices a vanished client (a host that died, a cut line) only through
            # TCP keepalives; its default of two hours would keep the lock, and a replacement
            # daemon out, that long. Ignored on Unix sockets.
            for setting in _SESSION_SETTINGS:
                connection.execute(text(setting))
            version = connection.dialect.server_version_info or (0,)
            if version >= (14,):
                # A server-wide idle_session_timeout would end this idle session and its lock.
                connection.execute(text("SET idle_session_timeout = 0"))
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:space, hashtext(:account))"),
                {"space": LOCK_SPACE, "account": self.account},
            ).scalar_one()
        except SQLAlchemyError as exc:
            connection.close()
            raise StoreError(
                f"cannot lock {self.account} in the database: {type(exc).__name__}") from None
        if not got:
            connection.close()
            raise _taken(self.account)
        self._connection = connection

    def check(self) -> None:
        if not self.held:
            raise StoreError(f"the lock for {self.account} was released")
        connection = self._connection
        if connection is not None:
            try:
                connection.execute(text("SELECT 1"))
                return  # the session lives, so its lock does
            except SQLAlchemyError:
                with contextlib.suppress(SQLAlchemyError):
                    connection.invalidate()
                self._connection = None
        log.warning("the database session holding the lock for %s ended; taking it again",
                    self.account)
        self._acquire()

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:space, hashtext(:account))"),
                    {"space": LOCK_SPACE, "account": self.account})
            with contextlib.suppress(SQLAlchemyError):
                self._connection.close()
            self._connection = None
        self._engine.dispose()


def sqlite_lock_path(database: str, account: str) -> Path | None:
    """The lock file for ``account`` next to the SQLite file ``database``; None in memory."""
    if not database or database == ":memory:" or "mode=memory" in database:
        return None
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    path = Path(database).expanduser()
    digest = hashlib.sha256(account.encode()).hexdigest()[:16]
    return path.with_name(f"{path.name}.{digest}.lock")


def acquire_account_lock(store_url: str, account: str) -> AccountLock:
    """Take the lock that lets one modbot, and only one, handle ``account`` in this database.

    Raises ``StoreError`` ("another modbot is already handling <account>") when another process
    holds it, and ``StoreError`` when the database cannot be reached. Use it as a context
    manager, or call :meth:`AccountLock.release`.
    """
    try:
        url = make_url(store_url)
    except (ArgumentError, ValueError):
        raise StoreError("cannot read the database URL") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_lock_path(url.database or "", account)
        return _NoLock(account) if path is None else _FileLock(account, path)
    if backend == "postgresql":
        return _AdvisoryLock(account, url)
    log.warning("no account lock on %s databases: run only one modbot for %s", backend, account)
    return _NoLock(account)


# --- PostgreSQL: one lock session per daemon, shared among daemons ---------------------------

DAEMON_PREFIX = "modbot daemon "  # a lock session's application_name: "modbot daemon <host> <pid>"
HEARTBEAT_SECONDS = 3.0  # how often the session's thread shows the server it is alive
LEASE_SECONDS = 20.0  # how long after a heartbeat was sent this process trusts its locks
SILENCE_SECONDS = 30  # the server ends a lock session silent this long, freeing its locks
_DAEMON_SETTINGS = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
)
# tcp_user_timeout bounds a heartbeat written into a cut line (milliseconds, libpq >= 12).
_DAEMON_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                      "keepalives_count": 3, "tcp_user_timeout": 15000, "connect_timeout": 10}
_HOLDERS = text(
    "SELECT a.pid, a.application_name, a.backend_start, l.objid::bigint AS key"
    " FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid"
    " AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
    " AND l.classid::bigint = :space"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " WHERE a.datname = current_database() AND a.application_name LIKE :prefix")


@dataclass(frozen=True)
class Holder:
    """A daemon's lock session as the server reports it."""

    pid: int  # the server process of the session, not the daemon's
    name: str  # "modbot daemon <host> <pid>"
    since: datetime | None  # when the session began (None when the server hides it)

    @property
    def host_and_pid(self) -> str:
        parts = self.name.removeprefix(DAEMON_PREFIX).rsplit(" ", 1)
        return f"{parts[0]}, pid {parts[1]}" if len(parts) == 2 else self.name


@dataclass(frozen=True)
class Survey:
    """Who serves what: every live daemon's lock session, and the holder of each account."""

    daemons: tuple[Holder, ...]
    holders: dict[str, Holder]  # account -> the session holding its lock; free ones are absent

    def count(self, daemon: Holder) -> int:
        return sum(1 for holder in self.holders.values() if holder.pid == daemon.pid)


def _unsigned(key: int) -> int:
    return key & 0xFFFFFFFF  # pg_locks shows the second key as an unsigned oid


def _survey(connection: Connection, accounts: Sequence[str]) -> Survey:
    keys = dict(zip(connection.execute(
        text("SELECT hashtext(a)::bigint FROM unnest(CAST(:accounts AS text[]))"
             " WITH ORDINALITY AS t(a, n) ORDER BY n"),
        {"accounts": list(accounts)}).scalars(), accounts, strict=True))
    by_key = {_unsigned(key): account for key, account in keys.items()}
    daemons: dict[int, Holder] = {}
    holders: dict[str, Holder] = {}
    for row in connection.execute(_HOLDERS, {"space": LOCK_SPACE, "prefix": DAEMON_PREFIX + "%"}):
        holder = daemons.setdefault(row.pid, Holder(row.pid, row.application_name,
                                                    row.backend_start))
        if row.key is not None and row.key in by_key:
            holders[by_key[row.key]] = holder
    return Survey(tuple(daemons.values()), holders)


def survey(store_url: str, accounts: Sequence[str]) -> Survey | None:
    """Which daemon holds each of ``accounts`` in a PostgreSQL database; None for another
    database. Raises ``StoreError`` when the database cannot be asked."""
    try:
        url = make_url(store_url)
    except (ArgumentError, ValueError):
        raise StoreError("cannot read the database URL") from None
    if url.get_backend_name() != "postgresql":
        return None
    try:
        engine = create_engine(url, poolclass=NullPool, hide_parameters=True)
        try:
            with engine.connect() as connection:
                return _survey(connection, accounts)
        finally:
            engine.dispose()
    except ImportError as exc:
        raise StoreError(f"the database driver {exc.name} is not installed") from None
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot ask the database who holds the accounts: "
                         f"{type(exc).__name__}") from None


def shares_locks(store_url: str) -> bool:
    """Whether daemons on ``store_url`` share accounts through a :class:`LockSession`."""
    try:
        return make_url(store_url).get_backend_name() == "postgresql"
    except (ArgumentError, ValueError):
        return False


class LockSession:
    """One daemon's PostgreSQL session holding the advisory locks of the accounts it serves.

    A thread sends a heartbeat every ``heartbeat`` seconds; :meth:`holds` trusts the locks only
    until ``lease`` seconds after the last heartbeat that was sent and answered, so a process
    stopped or cut off for longer stops serving its accounts before the server (which ends the
    session after ``silence`` seconds without a statement) lets another daemon take them. When
    the session is lost, ``on_lost`` is called from the thread and the next heartbeat opens a new
    session, holding nothing. It never takes an account another session holds.
    """

    def __init__(self, store_url: str, *, heartbeat: float = HEARTBEAT_SECONDS,
                 lease: float = LEASE_SECONDS, silence: float = SILENCE_SECONDS,
                 on_lost: Callable[[], None] | None = None) -> None:
        if lease >= silence:
            raise ValueError("the lease must end before the server ends a silent session")
        self.name = f"{DAEMON_PREFIX}{socket.gethostname()} {os.getpid()}"[:63]
        self.heartbeat, self.lease, self.silence = heartbeat, lease, silence
        self.on_lost = on_lost
        try:
            url = make_url(store_url)
        except (ArgumentError, ValueError):
            raise StoreError("cannot read the database URL") from None
        self._engine = _session_engine(url, self.name, _DAEMON_KEEPALIVES)
        self._mutex = threading.Lock()  # one statement at a time on the session
        self._connection: Connection | None = None
        self._held: set[str] = set()
        self._valid_until = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.backend_pid: int | None = None

    # --- the session ---------------------------------------------------------------------

    def start(self) -> None:
        """Open the session and start the heartbeat; ``StoreError`` if the database is out of
        reach or ends sessions itself too soon to be shared safely."""
        with self._mutex:
            self._open()
        self._thread = threading.Thread(target=self._beat_forever, name="modbot lock session",
                                        daemon=True)
        self._thread.start()

    def _open(self) -> None:
        sent = time.monotonic()
        try:
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot reach the database to lock accounts: "
                             f"{type(exc).__name__}") from None
        try:
            for setting in _DAEMON_SETTINGS:
                connection.execute(text(setting))
            if (connection.dialect.server_version_info or (0,)) < (14,):
                raise StoreError("several daemons on one database need PostgreSQL 14 or later "
                                 "(idle_session_timeout frees a hung daemon's accounts)")
            connection.execute(text(f"SET idle_session_timeout = {int(self.silence * 1000)}"))
            self.backend_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        except SQLAlchemyError as exc:
            connection.close()
            raise StoreError(f"cannot prepare the lock session: {type(exc).__name__}") from None
        except StoreError:
            connection.close()
            raise
        self._connection = connection
        self._valid_until = sent + self.lease

    def _run(self, statement: str, **parameters: object) -> object:
        """One statement on the session (the mutex held); a failure loses the session."""
        connection = self._connection
        if connection is None:
            raise StoreError("the lock session is not open")
        sent = time.monotonic()
        try:
            value = connection.execute(text(statement), parameters).scalar()
        except SQLAlchemyError:
            self._lose()
            raise StoreError("the database session holding the account locks ended") from None
        self._valid_until = sent + self.lease
        return value

    def _lose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                connection.invalidate()
        lost = bool(self._held)
        self._held.clear()
        self._valid_until = 0.0
        self.backend_pid = None
        if lost:
            log.warning("the database session holding the account locks ended; their "
                        "accounts are left to whichever daemon takes them")
        if self.on_lost is not None:
            self.on_lost()

    def _beat_forever(self) -> None:
        while not self._stopping.wait(self.heartbeat):
            self.beat()

    def beat(self) -> None:
        """Show the server the session is alive, or open a new one if it was lost."""
        with self._mutex:
            if self._stopping.is_set():
                return
            if self._connection is None:
                with contextlib.suppress(StoreError):
                    self._open()
                return
            if time.monotonic() > self._valid_until and self._held:
                self._lose()  # silent too long (stopped, or a statement hung): trust nothing
                return
            with contextlib.suppress(StoreError):
                self._run("SELECT 1")

    def close(self) -> None:
        """Stop the heartbeat, unlock every account and end the session (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat + 1)
        with self._mutex:
            connection, self._connection = self._connection, None
            self._held.clear()
            if connection is not None:
                with contextlib.suppress(SQLAlchemyError):
                    connection.execute(text("SELECT pg_advisory_unlock_all()"))
                with contextlib.suppress(SQLAlchemyError):
                    connection.close()
        self._engine.dispose()

    # --- the accounts --------------------------------------------------------------------

    def holds(self, account: str) -> bool:
        """Whether this daemon may serve ``account`` now: locked, and the lease running."""
        return account in self._held and time.monotonic() < self._valid_until

    @property
    def held(self) -> frozenset[str]:
        return frozenset(a for a in tuple(self._held) if self.holds(a))

    def take(self, account: str) -> bool:
        """Try to lock ``account`` without waiting; True if this session now holds it."""
        with self._mutex:
            if account in self._held:
                return True
            got = self._run("SELECT pg_try_advisory_lock(:space, hashtext(:account))",
                            space=LOCK_SPACE, account=account)
            if got:
                self._held.add(account)
            return bool(got)

    def give_back(self, account: str) -> None:
        """Unlock ``account`` so another daemon can take it."""
        with self._mutex:
            if account not in self._held:
                return
            self._held.discard(account)
            with contextlib.suppress(StoreError):
                self._run("SELECT pg_advisory_unlock(:space, hashtext(:account))",
                          space=LOCK_SPACE, account=account)

    def survey(self, accounts: Sequence[str]) -> Survey:
        """Who serves which of ``accounts``, asked on this session."""
        with self._mutex:
            connection = self._connection
            if connection is None:
                raise StoreError("the lock session is not open")
            sent = time.monotonic()
            try:
                found = _survey(connection, accounts)
            except SQLAlchemyError:
                self._lose()
                raise StoreError("the database session holding the account locks ended") \
                    from None
            self._valid_until = sent + self.lease
            return found

    def lock(self, account: str) -> AccountLock:
        """The :class:`AccountLock` face of ``account`` on this session, for a poll's checks."""
        return _SessionLock(account, self)


class _SessionLock(AccountLock):
    def __init__(self, account: str, session: LockSession) -> None:
        super().__init__(account)
        self.session = session

    def check(self) -> None:
        if not self.session.holds(self.account):
            raise StoreError(f"this daemon no longer holds the lock for {self.account}")

    def release(self) -> None:
        self.held = False
