"""Files: the database and its WAL are owner-only whatever the umask, deleted data is overwritten
(secure_delete), and after ``policy.retention_days`` no byte of a student's name, address,
profile or invitation id is left in any database file, while the counts stay."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support import faults, servers
from support.trials import NOW

from modbot.poll import Poller
from modbot.store import OutboxStatus, schema

pytestmark = pytest.mark.integration

CANARY = faults.Person("Philippa Retention-Canary", "philippa-canary-91",
                       "pr.canary@students.example.edu", "7500000000000000091")
DIRECTORY = faults.DIRECTORY + (f"{CANARY.name},{CANARY.email},"
                                f"https://www.linkedin.com/in/{CANARY.slug}\n")


def traces(directory: Path) -> dict[str, list[str]]:
    """Which canary words each database file still holds, byte for byte."""
    words = [CANARY.name, CANARY.name.split()[1], CANARY.email, CANARY.slug,
             CANARY.invitation_id]
    found = {}
    for path in sorted(directory.glob("modbot.db*")):
        data = path.read_bytes()
        found[path.name] = [w for w in words if w.encode() in data]
    return found


def test_files_are_owner_only_under_a_permissive_umask(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path) -> None:
    """`modbot run-once` started with umask 022 still creates the database, its WAL and shared
    memory 0600, and writes no other file (its log goes to stderr)."""
    imap_user.append("INBOX", faults.invitation(CANARY))
    config = faults.write_config(tmp_path, imap_user, smtp_server, ca_file, directory=DIRECTORY)
    before = {p.name for p in tmp_path.iterdir()}
    result = subprocess.run(
        [sys.executable, "-m", "modbot", "--config", str(config), "run-once"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "MODBOT_IMAP_PASSWORD": imap_user.password},
        preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, result.stderr[-2000:]
    created = {p.name for p in tmp_path.iterdir()} - before
    # The database, its WAL and shared memory, and the account lock beside them.
    locks = {name for name in created if name.startswith("modbot.db.") and name.endswith(".lock")}
    assert created - locks <= {"modbot.db", "modbot.db-wal", "modbot.db-shm"}
    assert "modbot.db" in created
    for name in created:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


async def test_secure_delete_is_on(tmp_path: Path, imap_user: servers.ImapUser,
                                   smtp_server: servers.SmtpServer, ca_file: Path) -> None:
    """Every connection of the store overwrites deleted content with zeros."""
    ctx = faults.context_for(tmp_path, imap_user, smtp_server, ca_file)
    with ctx.store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA secure_delete").scalar_one() == 1
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    ctx.store.close()


async def test_retention_purge_leaves_no_trace_of_the_person(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path) -> None:
    """A year and a day later the poll removes the person from every database file, WAL
    included; the message's kind and action, and the reply's status, stay for the digest."""
    imap_user.append("INBOX", faults.invitation(CANARY))
    ctx = faults.context_for(tmp_path, imap_user, smtp_server, ca_file,
                             directory=DIRECTORY, retention_days=365)
    await Poller(ctx).poll(NOW)
    assert len(smtp_server.messages) == 1
    assert any(traces(tmp_path).values())  # the control: the canary is really written
    await Poller(ctx).poll(NOW + timedelta(days=364))
    assert any(traces(tmp_path).values())  # not before its time
    await Poller(ctx).poll(NOW + timedelta(days=366))
    assert traces(tmp_path) == {name: [] for name in traces(tmp_path)}
    with ctx.store.engine.connect() as c:
        kinds = c.execute(select(schema.messages.c.kind, schema.messages.c.action)).all()
        statuses = c.execute(select(schema.outbox.c.status)).scalars().all()
        purged = c.execute(select(func.count()).select_from(schema.messages)
                           .where(schema.messages.c.purged_at.is_not(None))).scalar_one()
    assert kinds == [("connection_invitation", "reply")]
    assert statuses == [OutboxStatus.SENT]
    assert purged == 1
    ctx.store.close()
    assert traces(tmp_path) == {name: [] for name in traces(tmp_path)}
