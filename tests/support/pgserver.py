"""A private PostgreSQL cluster for the tests, started once per test session.

``start_postgres`` runs Debian's ``initdb`` and ``postgres`` (``/usr/lib/postgresql/<ver>/bin``)
in a fresh directory under /tmp. The server listens on a Unix socket in that directory only (no
TCP, so no other process can take its port), with trust authentication and durability switched
off: it exists for a few seconds and holds nothing worth keeping. PostgreSQL refuses to run as
root, so as root it runs as the ``postgres`` system user (created by Debian's package), otherwise
as the current user. Each test gets its own database from ``Postgres.create_database``.

``tests/conftest.py`` turns this into the ``postgres`` fixtures; the logic lives here so the
fixture stays short.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from support.servers import (
    ServerUnavailable,
    _die_with_parent,
    free_port,
    log_tail,
    remove_stale_instances,
    stop_process,
)

PG_BIN_ENV = "MODBOT_TEST_PG_BIN"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "postgres"
SUPERUSER = "modbot"
# Not $TMPDIR: the server runs as another user and must traverse every parent directory, and a
# Unix socket path must stay under ~107 bytes; /tmp is world-traversable and short.
INSTANCE_PARENT = Path("/tmp")  # noqa: S108
INSTANCE_PREFIX = "mbpg-"
START_TIMEOUT = 15.0

# A throwaway cluster: nothing needs to survive a crash, and fsync would only cost time.
_SERVER_SETTINGS = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "16MB",
    "max_wal_size": "64MB",
    "logging_collector": "off",
}


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``postgres``; ``ServerUnavailable`` if missing."""
    chosen = os.environ.get(PG_BIN_ENV)
    if chosen:
        candidates = [Path(chosen)]
    else:
        def version(path: Path) -> tuple[int, ...]:
            return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

        candidates = sorted((Path(p) for p in glob.glob(PG_BIN_GLOB)), key=version, reverse=True)
    for candidate in candidates:
        if os.access(candidate / "initdb", os.X_OK) and os.access(candidate / "postgres", os.X_OK):
            return candidate
    raise ServerUnavailable(
        f"PostgreSQL is not installed (looked in {chosen or PG_BIN_GLOB}); install the Debian "
        f"package postgresql or set {PG_BIN_ENV}"
    )


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments that drop root to the ``postgres`` user; none for other users."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ServerUnavailable(
            f"PostgreSQL refuses to run as root and the system user {SERVER_USER!r} is missing"
        ) from None
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@dataclass
class Postgres:
    """A running private PostgreSQL; stop it with ``stop()``."""

    root: Path
    process: subprocess.Popen[bytes]
    port: int
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _migrated: str = ""

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URL for ``database`` over the Unix socket."""
        return f"{driver}://{SUPERUSER}@/{database}?host={self.root}&port={self.port}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        """A plain psycopg connection in autocommit mode (close it when done)."""
        return psycopg.connect(host=str(self.root), port=self.port, user=SUPERUSER,
                               dbname=database, autocommit=True, connect_timeout=5)

    def create_database(self, template: str = "template1") -> str:
        """Create a database (empty, or a copy of ``template``) and return its SQLAlchemy URL."""
        return self.url(self._new_database(template))

    def create_migrated_database(self) -> str:
        """A database already at the latest schema: a copy of one migrated once per run.

        Copying costs a fraction of running every migration again for each test; the tests of
        the migrations themselves use ``create_database``.
        """
        if not self._migrated:
            from modbot.store import Store

            name = self._new_database("template1")
            Store.open(self.url(name)).close()  # leaves no session, so it can be a template
            self._migrated = name
        return self.create_database(template=self._migrated)

    def _new_database(self, template: str) -> str:
        name = f"t{next(self._serial)}_{os.getpid()}"
        with self.connect() as connection:
            connection.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{template}"')  # type: ignore[arg-type]
        return name

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote, for failure messages."""
        return log_tail(self.root / "server.log", lines=lines)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended) and remove its directory."""
        stop_process(self.process, signal.SIGINT, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def _ready(server: Postgres) -> bool:
    try:
        with server.connect():
            return True
    except psycopg.OperationalError:
        return False


def start_postgres() -> Postgres:
    """Create and start a private cluster; raise ``ServerUnavailable`` if it cannot run."""
    bindir = find_pg_bin()
    as_user = _run_as()
    remove_stale_instances(INSTANCE_PREFIX, "data/postmaster.pid")
    root = Path(tempfile.mkdtemp(prefix=INSTANCE_PREFIX, dir=INSTANCE_PARENT))
    root.chmod(0o700)
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    data = root / "data"
    initdb = subprocess.run(
        [str(bindir / "initdb"), "--pgdata", str(data), "--username", SUPERUSER,
         "--auth", "trust", "--encoding", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
        capture_output=True, text=True, check=False, timeout=120, cwd=root, **as_user,
    )
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        said = (initdb.stderr or initdb.stdout).strip().splitlines()[-3:]
        raise ServerUnavailable(f"initdb failed: {' '.join(said) or '(nothing)'}")
    port = free_port()  # only names the socket file: the server opens no TCP port
    options = [f"--{key}={value}" for key, value in _SERVER_SETTINGS.items()]
    with (root / "server.log").open("wb") as log:
        if as_user:
            os.fchown(log.fileno(), as_user["user"], as_user["group"])
        process = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-k", str(root), "-p", str(port),
             *options],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=root,
            preexec_fn=_die_with_parent, **as_user,
        )
    server = Postgres(root, process, port)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if _ready(server):
            return server
        time.sleep(0.02)
    tail = server.log_tail()
    server.stop()
    raise ServerUnavailable(f"PostgreSQL did not start; it said: {tail.strip() or '(nothing)'}")
