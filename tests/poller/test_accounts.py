"""Several inboxes in one configuration and one daemon: each its own counselor, servers, replies
and digest, polled side by side, so that one failing inbox never holds up another."""

from __future__ import annotations

import asyncio
import email
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from support import configs, faults, servers
from support.rows import message_row, reply_row

from modbot import config, digest
from modbot.daemon import run_daemon
from modbot.errors import ConfigError
from modbot.model import Mode
from modbot.store import OutboxStatus, Store

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# Two inboxes as [[accounts]] tables load them.
ADA = configs.inbox("Ada Counselor", "ada@counsel.example.edu", "ada", password_env="PW_A")
BEN = configs.inbox("Ben Counselor", "ben@counsel.example.edu", "ben", password_env="PW_B")


@pytest.fixture(autouse=True)
def _passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_A", "secret-a")
    monkeypatch.setenv("PW_B", "secret-b")


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        config.parse(data)
    return str(caught.value)


# --- the configuration ----------------------------------------------------------------------------


def test_single_inbox_is_its_only_account() -> None:
    """The top-level [counselor], [imap] and [smtp] form is one account: itself."""
    loaded = config.parse({key: ADA[key] for key in ("counselor", "imap", "smtp")})
    assert loaded.accounts == (loaded.first,)
    assert loaded.first.account == "ada@imap.counsel.example.edu"


def test_accounts_have_their_own_inbox_and_share_the_rest() -> None:
    """Each account has its counselor and servers; database, policy and schedule are shared."""
    settings = config.parse({
        "accounts": [ADA, BEN], "database": {"url": "sqlite:////var/lib/modbot/m.db"},
        "policy": {"mode": "auto"}, "schedule": {"poll_seconds": 60},
    })
    ada, ben = settings.accounts
    assert settings.first == ada
    assert (ada.counselor.email, ben.counselor.email) == ("ada@counsel.example.edu",
                                                          "ben@counsel.example.edu")
    assert (ada.account, ben.account) == ("ada@imap.counsel.example.edu",
                                          "ben@imap.counsel.example.edu")
    assert ben.imap.password is not None and ben.imap.password.get_secret_value() == "secret-b"
    assert ada.database == ben.database and ben.schedule.poll_seconds == 60
    assert ada.policy.mode is ben.policy.mode is Mode.AUTO
    assert settings.database == ben.database and settings.schedule == ben.schedule


def test_an_account_table_replaces_the_shared_one_as_a_whole(tmp_path: Path) -> None:
    """An account's own policy or directory replaces the top-level table, key for key."""
    ben = {**BEN, "policy": {"mode": "shadow"}, "directory": {"csv": "ben.csv"}}
    settings = config.parse({
        "accounts": [ADA, ben], "directory": {"csv": "all.csv"},
        "policy": {"mode": "auto", "max_replies_per_hour": 5},
    }, base=tmp_path)
    ada, ben_ = settings.accounts
    assert (ada.policy.mode, ada.policy.max_replies_per_hour) == (Mode.AUTO, 5)
    assert (ben_.policy.mode, ben_.policy.max_replies_per_hour) == (Mode.SHADOW, 20)
    assert (ada.directory.csv, ben_.directory.csv) == (tmp_path / "all.csv", tmp_path / "ben.csv")


def test_one_form_or_the_other() -> None:
    """A top-level [imap] beside [[accounts]] is refused with a sentence that says why."""
    text = problems({"accounts": [ADA], "imap": BEN["imap"]})
    assert "[imap] at the top level cannot be used with [[accounts]]" in text


@pytest.mark.parametrize(("change", "expected"), [
    ({"database": {"url": "sqlite:///x.db"}},
     "accounts[2].database: [database] is shared by every account; set it at the top level"),
    ({"colour": "blue"}, "accounts[2].colour: unknown key"),
    ({"imap": {"host": "imap.counsel.example.edu", "username": "ben", "password_env": "NONE"}},
     "accounts[2].imap.password_env: environment variable NONE is not set"),
    ({"counselor": {"name": "Ben", "email": "not-an-address", "confidential_contact": "x"}},
     "accounts[2].counselor.email"),
    ({"imap": {**ADA["imap"]}}, "accounts[2]: the same inbox (ada@imap.counsel.example.edu) as "
                                "accounts[1]"),
    ({"policy": {"mode": "review"}}, "accounts[2].policy: review mode is not available with "
                                     "several accounts"),
])
def test_problems_name_their_account(change: dict[str, Any], expected: str) -> None:
    """Every problem of an account's table is reported with the table's place in the file."""
    assert expected in problems({"accounts": [ADA, {**BEN, **change}]})


def test_every_account_problem_reported_at_once() -> None:
    """Problems in several accounts and in shared tables come back together."""
    text = problems({"accounts": [{**ADA, "colour": 1}, {**BEN, "smtp": {"port": 0}}],
                     "schedule": {"poll_seconds": 1}})
    assert "accounts[1].colour" in text and "accounts[2].smtp" in text
    assert "schedule.poll_seconds" in text


def test_no_accounts_is_an_error() -> None:
    """An empty list of accounts is refused rather than running a daemon with nothing to do."""
    assert "at least one [[accounts]] table" in problems({"accounts": []})


def test_oauth_token_files_differ_between_accounts(tmp_path: Path) -> None:
    """Two OAuth2 accounts never share a token file unless the file says so."""
    oauth = {"provider": "generic", "client_id": "c", "token_url": "https://idp.example.edu/t"}

    def oauth_account(base: dict[str, Any]) -> dict[str, Any]:
        imap = {k: v for k, v in base["imap"].items() if k != "password_env"}
        return {**base, "imap": {**imap, "auth": "oauth2", "oauth2": oauth}}

    settings = config.parse({"accounts": [oauth_account(ADA), oauth_account(BEN)],
                             "database": {"url": f"sqlite:///{tmp_path / 'm.db'}"}})
    files = [a.imap.oauth2.token_file for a in settings.accounts if a.imap.oauth2]
    assert files == [tmp_path / "modbot-imap-token-ada.json",
                     tmp_path / "modbot-imap-token-ben.json"]


def test_example_accounts_block_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The example configuration's [[accounts]] tables, uncommented, are two valid accounts."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    monkeypatch.setenv("MODBOT_INTERNSHIPS_PASSWORD", "y")
    text = (ROOT / "config" / "modbot.example.toml").read_text(encoding="utf-8")
    block = text[text.index("# [[accounts]]"):]
    path = tmp_path / "modbot.toml"
    path.write_text("\n".join(line.removeprefix("# ") for line in block.splitlines()
                              if line.startswith("# ")), encoding="utf-8")
    first, second = config.load(path).accounts
    assert second.counselor.name == "Internship Office"
    assert second.directory.csv is not None and first.directory.csv is None


def test_readme_accounts_example_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The README's several-inboxes example is a valid configuration."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    monkeypatch.setenv("MODBOT_INTERNSHIPS_PASSWORD", "y")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Several inboxes"):]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "modbot.toml"
    path.write_text(example, encoding="utf-8")
    assert [a.imap.username for a in config.load(path).accounts] == ["counselor",
                                                                         "internships"]


# --- one store, several accounts ------------------------------------------------------------------


def record(db: Store, account_: str, key: str, *, action: str = "reply",
           status: str = OutboxStatus.QUEUED) -> None:
    """A message of ``account_`` as a poll records it, with a reply in ``status``."""
    row = message_row(key, account_, seen_at=NOW - timedelta(days=1),
                      person_name=f"Person {key}", invitation_id=None, address_source=None,
                      action=action, policy_rule=action, reasons=["a reason"])
    reply = None if action != "reply" else reply_row(
        f"<{key}@counsel.example.edu>", recipient_name=None,
        recipient_email="same.person@students.example.edu", created_at=NOW - timedelta(days=1))
    item = db.record(row, reply)
    if item is not None and status != OutboxStatus.QUEUED:
        db.mark(item, status, now=NOW - timedelta(hours=23))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'modbot.db'}")
    yield opened
    opened.close()


def test_each_account_sends_only_its_own_replies(db: Store) -> None:
    """A reply queued for one account's message is never due for another account."""
    record(db, "ada@imap", "a1")
    record(db, "ben@imap", "b1")
    assert [i.message_id for i in db.due("ada@imap", NOW)] == ["<a1@counsel.example.edu>"]
    assert [i.message_id for i in db.due("ben@imap", NOW)] == ["<b1@counsel.example.edu>"]


def test_caps_and_person_window_count_each_account(db: Store) -> None:
    """One counselor's replies neither use up another's caps nor stop their reply to a person."""
    record(db, "ada@imap", "a1", status=OutboxStatus.SENT)
    since = NOW - timedelta(days=2)
    assert [r.email for r in db.replied("ada@imap", since)] == \
        ["same.person@students.example.edu"]
    assert db.replied("ben@imap", since) == []


def test_digest_tells_each_counselor_of_their_own_inbox(db: Store) -> None:
    """A counselor's digest lists their own held items and replies, never another's."""
    ada, ben = config.parse({"accounts": [ADA, BEN]}).accounts
    record(db, ada.account, "a1", action="hold")
    record(db, ben.account, "b1", action="hold")
    record(db, ben.account, "b2", status=OutboxStatus.SENT)
    for_ada = digest.gather(db, ada, NOW)
    assert [r.person_name for r in for_ada.open_items] == ["Person a1"]
    assert for_ada.replies == ()
    for_ben = digest.gather(db, ben, NOW)
    assert [r.person_name for r in for_ben.open_items] == ["Person b1"]
    assert [r.person_name for r in for_ben.replies] == ["Person b2"]


# --- on real servers ------------------------------------------------------------------------------


@pytest.fixture
def other_user(dovecot: servers.Dovecot) -> servers.ImapUser:
    return dovecot.add_user()


def write_config(tmp_path: Path, ca_file: Path, first: servers.ImapUser,
                 smtp_first: servers.SmtpServer, second: servers.ImapUser,
                 smtp_second: servers.SmtpServer, *, second_port: int | None = None) -> Path:
    """Two accounts: Ada's inbox is ``first``, Ben's ``second`` (at ``second_port`` if given)."""
    csv = tmp_path / "directory.csv"
    csv.write_text(faults.DIRECTORY, encoding="utf-8")

    def served(name: str, address: str, imap_port: int, username: str, password_env: str,
               smtp: servers.SmtpServer) -> dict[str, Any]:
        return configs.inbox(
            name, address, username, password_env=password_env,
            imap={"host": "127.0.0.1", "port": imap_port, "ca_file": ca_file,
                  "timeout_seconds": 5, "sent_folder": "Sent"},
            smtp={"host": "127.0.0.1", "port": smtp.port, "ca_file": ca_file,
                  "timeout_seconds": 5},
            directory={"csv": csv})

    return configs.write_config(tmp_path, configs.accounts_text(
        served("Ada Counselor", "ada@counsel.example.edu", first.port, first.username, "PW_A",
               smtp_first),
        served("Ben Counselor", "ben@counsel.example.edu", second_port or second.port,
               second.username, "PW_B", smtp_second),
        database={"url": configs.sqlite_url(tmp_path / "modbot.db")},
        policy={"mode": "auto", "trusted_authserv_ids": [faults.TRUSTED]}))


def modbot(*args: str, passwords: tuple[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PW_A": passwords[0], "PW_B": passwords[1]}
    return subprocess.run([sys.executable, "-m", "modbot", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def senders(smtp: servers.SmtpServer) -> list[str]:
    parsed = [email.message_from_bytes(m.data, policy=default_policy) for m in smtp.messages]
    return [m["From"].addresses[0].addr_spec for m in parsed if isinstance(m, EmailMessage)]




@pytest.mark.integration
def test_run_once_answers_every_inbox_from_its_own_counselor(
        tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser,
        other_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        other_smtp_server: servers.SmtpServer) -> None:
    """`modbot run-once` polls both inboxes; each reply leaves through its account's own SMTP
    server, from its own counselor, and nothing is sent twice."""
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    other_user.append("INBOX", faults.fixture(faults.SAM))
    path = write_config(tmp_path, ca_file, imap_user, smtp_server, other_user, other_smtp_server)
    passwords = (imap_user.password, other_user.password)
    first = modbot("--config", str(path), "run-once", passwords=passwords)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{imap_user.username}@127.0.0.1:" in first.stdout
    assert f"{other_user.username}@127.0.0.1:" in first.stdout
    again = modbot("--config", str(path), "run-once", passwords=passwords)
    assert again.returncode == 0, again.stdout + again.stderr
    assert senders(smtp_server) == ["ada@counsel.example.edu"]
    assert senders(other_smtp_server) == ["ben@counsel.example.edu"]
    assert smtp_server.messages[0].recipients == ("jrivera@students.example.edu",)
    assert other_smtp_server.messages[0].recipients[0].endswith("@reply.linkedin.com")


@pytest.mark.integration
def test_run_once_reports_a_refused_inbox_and_answers_the_other(
        tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser,
        other_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        other_smtp_server: servers.SmtpServer) -> None:
    """A wrong password on one inbox fails the run, says which, and the other is answered."""
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    path = write_config(tmp_path, ca_file, imap_user, smtp_server, other_user, other_smtp_server)
    result = modbot("--config", str(path), "run-once",
                    passwords=(imap_user.password, "wrong-password-canary"))
    assert result.returncode == 1
    assert len(smtp_server.messages) == 1
    ben = result.stdout.split(f"{other_user.username}@127.0.0.1:", 1)[1]
    assert "problem:" in ben and "refused the login" in ben
    assert "wrong-password-canary" not in result.stdout + result.stderr


@pytest.mark.integration
def test_check_checks_every_inbox(tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser,
                                  other_user: servers.ImapUser, smtp_server: servers.SmtpServer,
                                  other_smtp_server: servers.SmtpServer) -> None:
    """`modbot check` checks each account and fails when one of them is broken."""
    path = write_config(tmp_path, ca_file, imap_user, smtp_server, other_user, other_smtp_server)
    good = modbot("--config", str(path), "check",
                  passwords=(imap_user.password, other_user.password))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.count("all good") == 2
    bad = modbot("--config", str(path), "check", passwords=(imap_user.password, "nope"))
    assert bad.returncode == 1
    assert bad.stdout.count("all good") == 1 and "problem: IMAP" in bad.stdout


@pytest.mark.integration
async def test_daemon_answers_one_inbox_while_another_is_silent(
        tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser,
        other_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        other_smtp_server: servers.SmtpServer,
        silent_server: servers.SilentServer, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With Ben's IMAP server silent, Ada's notification is still answered within seconds."""
    monkeypatch.setenv("PW_A", imap_user.password)
    monkeypatch.setenv("PW_B", other_user.password)
    path = write_config(tmp_path, ca_file, imap_user, smtp_server, other_user, other_smtp_server,
                        second_port=silent_server.port)
    settings = config.load(path)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="modbot")
    daemon = asyncio.create_task(run_daemon(settings, stop))
    try:
        deadline = time.monotonic() + 20
        while "over IDLE" not in caplog.text and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert "over IDLE" in caplog.text
        await asyncio.to_thread(imap_user.append, "INBOX", faults.fixture(faults.JORDAN))
        arrived = time.monotonic()
        while not smtp_server.messages and time.monotonic() - arrived < 10:
            await asyncio.sleep(0.02)
        assert smtp_server.messages and time.monotonic() - arrived < 3.0
        ben_failed = f"{other_user.username}@127.0.0.1: poll failed"
        assert ben_failed not in caplog.text  # Ben's poll still waits for its silent server
        while ben_failed not in caplog.text and time.monotonic() - arrived < 15:
            await asyncio.sleep(0.05)
        assert ben_failed in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 20)
    assert other_smtp_server.messages == []
