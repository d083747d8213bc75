"""The conventions an admin expects of a command-line tool: --version, status, a dry run,
readable --help, and the counselor's items shown in full."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from support import configs, faults, servers
from support.rows import message_row, reply_row
from typer.testing import CliRunner

from modbot.cli import app
from modbot.store import OutboxStatus, Store

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

ACCOUNT = "counselor@127.0.0.1"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    return configs.write_config(
        tmp_path, database={"url": "sqlite:///modbot.db"},  # beside the file
        digest={"day": "fri", "time": "16:30", "timezone": "America/Chicago"})


def invoke(config: Path, *args: str) -> str:
    result = runner.invoke(app, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def message(store: Store, *, kind: str, name: str, authentic: bool | None, action: str,
            profile: str | None = None, reason: str = "the person is not in the directory",
            reply_status: str | None = None) -> int | None:
    now = datetime.now(UTC)
    reply = None if reply_status is None else reply_row(
        f"<{name.replace(' ', '.')}@counsel.example.edu>", OutboxStatus(reply_status),
        template=kind, recipient_name=name, recipient_email="student@students.example.edu",
        created_at=now)
    return store.record(message_row(
        hashlib.sha256(name.encode()).hexdigest(), ACCOUNT, seen_at=now, kind=kind,
        authentic=authentic, classify_rule="r", person_name=name, profile_url=profile,
        invitation_id=None, address_source=None, action=action, policy_rule="p",
        reasons=[reason]), reply)


def dump(database: Path) -> list[str]:
    """Everything the SQLite file holds, as SQL."""
    connection = sqlite3.connect(database)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def test_version_is_the_package_version() -> None:
    """`modbot --version` prints the version the package is built with, and nothing else."""
    result = runner.invoke(app, ["--version"])
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.exit_code == 0
    assert result.output == f"modbot {expected}\n"


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command under ``group`` (itself included) with its path of names."""
    found = [(prefix, group)]
    for name, command in getattr(group, "commands", {}).items():
        found += _commands(command, (*prefix, name))
    return found


def test_help_texts_explain_every_option_without_python_types() -> None:
    """Every command's --help gives each option a help text and shows no Python type."""
    for path, command in _commands(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        for python in ("<str>", "<int", "<float", "<path>", "<list", "<bool>", "INTEGER",
                       "TEXT", "x>=", "<=x"):
            assert python not in result.output, (path, python, result.output)
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, (path, param.name)


def test_init_help_names_the_choices_and_defaults() -> None:
    """`init --help` names the security choices and the defaults of the answers."""
    text = runner.invoke(app, ["init", "--help"]).output
    assert "tls|starttls|none" in text
    assert "Default: tls." in text and "Default: the --email" in text


def test_status_without_a_database_creates_none(config_file: Path, tmp_path: Path) -> None:
    """`status` before the first run says so, names the mode and the next digest, and creates
    no database."""
    text = invoke(config_file, "status")
    assert "modbot " in text and str(config_file) in text
    assert "mode: shadow" in text
    assert f"account {ACCOUNT}" in text
    assert "last poll: none yet" in text
    assert "next digest: Fri " in text and "16:30 C" in text
    assert not (tmp_path / "modbot.db").exists()


def test_status_tells_last_poll_caps_pause_and_what_waits(config_file: Path,
                                                          tmp_path: Path) -> None:
    """`status` after some work: the failed last poll with its error, the last good one, the
    replies against the caps, the pause, and the held and review items."""
    store = Store.open(f"sqlite:///{tmp_path / 'modbot.db'}")
    now = datetime.now(UTC)
    store.record_poll(ACCOUNT, now - timedelta(hours=2), ok=True, new_messages=3)
    store.record_poll(ACCOUNT, now - timedelta(minutes=5), ok=False, new_messages=0,
                      error="the IMAP server refused the login")
    message(store, kind="connection_invitation", name="Priya Natarajan", authentic=True,
            action="hold")
    message(store, kind="connection_invitation", name="Jordan Rivera", authentic=True,
            action="reply", reply_status=OutboxStatus.REVIEW, reason="invitation")
    message(store, kind="linkedin_message", name="Sam Okafor", authentic=True, action="reply",
            reply_status="sent", reason="message")
    store.start_pause(ACCOUNT, "the hourly cap was reached", now, "<p@counsel.example.edu>")
    store.close()
    text = invoke(config_file, "status")
    assert "FAILED: the IMAP server refused the login" in text
    assert "last poll that went well:" in text and "2.0 h ago" in text
    assert "replies: 2 in the last hour (cap 20), 2 in the last 24 hours (cap 100)" in text
    assert "PAUSED since" in text and "modbot resume" in text
    assert "1 item held" in text and "1 reply to review" in text


def test_held_shows_the_reply_to_paste_and_the_profile(config_file: Path,
                                                       tmp_path: Path) -> None:
    """`held` gives each held invitation the reply ready to paste and the person's LinkedIn
    profile; a fake notification gets neither."""
    store = Store.open(f"sqlite:///{tmp_path / 'modbot.db'}")
    message(store, kind="connection_invitation", name="Priya Natarajan", authentic=True,
            action="hold", profile="https://www.linkedin.com/in/priya-natarajan")
    message(store, kind="spoofed_linkedin", name="Fake Person", authentic=False, action="hold",
            profile="https://www.linkedin.com/in/evil", reason="the signature does not match")
    store.close()
    text = invoke(config_file, "held")
    priya, fake = re.split(r"\n(?=#\d)", text)[:2]
    assert "Connection invitation from Priya Natarajan" in priya
    assert "why: the person is not in the directory" in priya
    assert "profile: https://www.linkedin.com/in/priya-natarajan" in priya
    assert "reply to paste into LinkedIn:" in priya
    assert "https://counsel.example.edu/secure or 555-0100" in priya
    assert "Fake LinkedIn mail" in fake
    assert "linkedin.com/in/evil" not in fake and "paste" not in fake
    assert "modbot resolve NUMBER" in text


def test_texts_shows_every_reply_kind(config_file: Path) -> None:
    """`texts` prints the two texts to paste into LinkedIn and the reply of each kind, each
    reply with its Subject."""
    text = invoke(config_file, "texts")
    for title in ("Group welcome message", "Advice for contacting",
                  "Reply to a connection invitation",
                  "Reply to a request to join your LinkedIn group",
                  "Reply to a LinkedIn message", "Reply to a request for a recommendation"):
        assert f"=== {title}" in text
    assert text.count("\nSubject: ") == 4


def test_review_show_gives_the_subject(config_file: Path, tmp_path: Path) -> None:
    """`review show` prints the Subject with the address and the text of the waiting reply."""
    store = Store.open(f"sqlite:///{tmp_path / 'modbot.db'}")
    number = message(store, kind="connection_invitation", name="Jordan Rivera", authentic=True,
                     action="reply", reply_status=OutboxStatus.REVIEW, reason="invitation")
    store.close()
    text = invoke(config_file, "review", "show", str(number))
    lines = text.splitlines()
    assert lines[0] == "To: student@students.example.edu"
    assert lines[1].startswith("Subject: ") and len(lines[1]) > len("Subject: ")


@pytest.mark.integration
def test_dry_run_decides_and_changes_nothing(tmp_path: Path, ca_file: Path,
                                            imap_user: servers.ImapUser,
                                            smtp_server: servers.SmtpServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`run-once --dry-run` shows the reply a poll would send, and sends, records and marks
    nothing: the real poll afterwards still answers, and a later dry run knows what was
    answered without changing the database."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", imap_user.password)
    imap_user.append("INBOX", faults.fixture(faults.JORDAN))
    config = faults.write_config(tmp_path, imap_user, smtp_server, ca_file)
    flags = imap_user.flags("INBOX")
    dry = invoke(config, "run-once", "--dry-run")
    assert "dry run: nothing was sent, recorded or marked" in dry
    assert "a connection invitation from Jordan Rivera: would be answered" in dry
    assert smtp_server.messages == []
    assert not (tmp_path / "modbot.db").exists()
    assert imap_user.flags("INBOX") == flags
    invoke(config, "run-once")
    assert len(smtp_server.messages) == 1
    imap_user.append("INBOX", faults.fixture("invitation_reminder_jordan_rivera.eml"))
    before = dump(tmp_path / "modbot.db")
    again = invoke(config, "run-once", "--dry-run")
    assert "would be answered" not in again and "Jordan Rivera" in again
    assert dump(tmp_path / "modbot.db") == before
    assert len(smtp_server.messages) == 1
