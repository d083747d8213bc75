"""One daemon per account: a lock taken before the first poll and held until the process ends.

Two modbot processes polling the same inbox into the same database would both fetch a new
notification before either records it, and both could answer it. The unique keys in the store
catch the second record, but a lock is what keeps the second daemon from starting at all:

- PostgreSQL: a session-level advisory lock, ``pg_try_advisory_lock(space, hashtext(account))``,
  held by one dedicated connection (autocommit, so never "idle in transaction"). The two-key form
  with modbot's own ``space`` keeps clear of single-key advisory locks other programs take in the
  same database. The server releases the lock when that session ends: the process exits or dies,
  or the connection breaks, which :meth:`AccountLock.check` notices and repairs or reports.
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
from pathlib import Path
from types import TracebackType

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
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


class _AdvisoryLock(AccountLock):
    def __init__(self, account: str, url: URL) -> None:
        super().__init__(account)
        libpq = url.get_driver_name() in _LIBPQ_DRIVERS
        connect_args = {"application_name": APPLICATION_NAME, **_CLIENT_KEEPALIVES} if libpq else {}
        try:
            self._engine = create_engine(url, poolclass=NullPool, hide_parameters=True,
                                         connect_args=connect_args)
        except ImportError as exc:
            raise StoreError(
                f"the database driver {exc.name} is not installed "
                "(for PostgreSQL: pip install 'modbot[postgres]')") from None
        except (SQLAlchemyError, ValueError) as exc:
            raise StoreError(f"cannot use the database URL: {type(exc).__name__}") from None
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
