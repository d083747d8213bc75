"""Opening the database: the engine, SQLite's settings, and the schema brought to head.

SQLite by default (created owner-only, WAL, foreign keys, busy timeout, secure delete), any
SQLAlchemy URL otherwise. The schema changes only through the alembic migrations in
``migrations/``, applied by ``Database.open``; a new, empty database is created from
``modbot.store.schema`` and stamped, so that alembic stays out of the process.

This module must never put row values in logs or exception text (``hide_parameters=True``),
and never let a SQLAlchemy exception out: every failure becomes a ``StoreError``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from modbot.errors import StoreError
from modbot.store.schema import HEAD_REVISION, alembic_version, metadata


def quiet_library_loggers() -> None:
    """Hold SQLAlchemy's loggers at WARNING whatever level the application logs at.

    At INFO SQLAlchemy logs every statement and at DEBUG every result row: names, addresses and
    profile links of students. ``hide_parameters`` hides parameters but not rows.
    """
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "alembic"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def migrations_dir() -> Path:
    """The alembic scripts: packaged inside modbot, else beside it in a source tree."""
    packaged = Path(__file__).parent.parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "migrations"


@dataclass(frozen=True)
class Location:
    """Where a database URL points: its backend, and for SQLite the file (None: in memory)."""

    backend: str  # "sqlite", "postgresql", ...
    file: Path | None

    @property
    def memory(self) -> bool:
        return self.backend == "sqlite" and self.file is None


def locate(url: str) -> Location:
    """Read a database URL without opening anything; ``ValueError`` if it is not one."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy's ArgumentError, or worse on odd input
        raise ValueError(f"{url!r} is not a database URL") from exc
    backend = parsed.get_backend_name()
    database = parsed.database or ""
    if backend != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return Location(backend, None)
    return Location(backend, Path(database).expanduser())


def _prepare_sqlite_file(url: str) -> None:
    """Create the SQLite file owner-only before SQLite creates it 0644."""
    path = locate(url).file
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    milliseconds = max(int(busy_timeout * 1000), 0)

    def connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Another writer (a second modbot, a counselor's sqlite3 shell) is waited for this long;
        # then the write fails as a StoreError and the poll is tried again next time.
        cursor.execute(f"PRAGMA busy_timeout={milliseconds}")
        # Purged names and addresses are overwritten with zeros, not left in free pages.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    return connect


def current_revision(engine: Engine) -> str | None:
    """The schema's alembic revision, or None for a new database."""
    try:
        with engine.connect() as connection:
            value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:
        return None
    return None if value is None else str(value)


def upgrade(engine: Engine) -> None:
    """Bring the schema to head: nothing to do when it is current; a new, empty database gets
    the tables as defined here, stamped with the head revision (the migrations build the same
    schema, which a test checks, and alembic stays out of the process); an older schema is
    migrated with alembic."""
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    if revision is None and not inspect(engine).get_table_names():
        with engine.begin() as connection:
            metadata.create_all(connection)
            alembic_version.create(connection)
            connection.execute(alembic_version.insert().values(version_num=HEAD_REVISION))
        return
    migrate(engine)


def migrate(engine: Engine) -> None:
    """Apply the alembic migrations up to head."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """An open database: the engine and its transactions. ``Store`` adds the statements."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, busy_timeout: float = 10.0) -> Self:
        """Open (creating owner-only if needed) and migrate the database at ``url``.

        ``busy_timeout`` is how many seconds a write waits for another process's write lock
        before it fails with ``StoreError``.
        """
        quiet_library_loggers()
        try:
            if url.startswith("sqlite"):
                _prepare_sqlite_file(url)
            engine = create_engine(url, hide_parameters=True, future=True)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
            if migrate:
                upgrade(engine)
        except ImportError as exc:
            raise StoreError(
                f"the database driver {exc.name or 'for this URL'} is not installed "
                "(for PostgreSQL: pip install 'modbot[postgres]')") from None
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise StoreError(f"cannot open the database: {type(exc).__name__}") from None
        return cls(engine)

    @classmethod
    def scratch_copy(cls, url: str) -> tuple[Self, str | None]:
        """A copy of the database at ``url`` in memory, and a note when it could not be copied.

        Only a SQLite file can be copied; for another database (or none yet) the copy starts
        empty, as on a first poll. The original is opened read-only and never changed.
        """
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            where = locate(url)
        except ValueError:
            raise StoreError("the database URL cannot be read") from None
        note = None
        if where.file is not None:
            if where.file.exists():
                try:
                    source = sqlite3.connect(f"{where.file.as_uri()}?mode=ro", uri=True)
                    try:
                        source.backup(memory)
                    finally:
                        source.close()
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot read the database {where.file}: {exc}") from None
            else:
                note = "no database yet: judged as the first poll would judge"
        else:
            note = ("the database is not a SQLite file and cannot be copied: judged as the "
                    "first poll would judge")
        # One connection for every thread: the poll judges in worker threads.
        engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
        try:
            upgrade(engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot copy the database: {type(exc).__name__}") from None
        return cls(engine), note

    def close(self) -> None:
        self.engine.dispose()

    def revision(self) -> str | None:
        """The schema's revision (None for a new database); ``StoreError`` with the server's
        own first line when the database cannot be reached."""
        try:
            with self.engine.connect():
                pass
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0][:200]
            raise StoreError(reason) from None
        return current_revision(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; any database failure becomes a ``StoreError``."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"database write failed: {type(exc).__name__}") from None
