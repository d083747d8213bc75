"""Running modbot as a service: `init`, `health`, and logs as text or JSON."""

from __future__ import annotations

import json
import logging
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import configs, servers
from typer.testing import CliRunner

from modbot import config
from modbot.cli import app, health_problem
from modbot.logs import JsonFormatter, StderrHandler, install
from modbot.model import Mode
from modbot.store import Store

runner = CliRunner()
DATA = Path(__file__).parents[1] / "data"

# --- init ------------------------------------------------------------------------------------

ANSWERS = {
    "name": 'Dr. Ana "Annie" Núñez \\ Career Services',
    "email": "anunez@counsel.example.edu",
    "contact": "https://counsel.example.edu/secure or 555-0100",
    "imap-host": "imap.counsel.example.edu",
    "imap-user": "anunez",
    "smtp-host": "smtp.counsel.example.edu",
    "smtp-user": "anunez",
    "security": "starttls",
    "mail-system": "microsoft365",
    "tenant": "5D3E2773-E07F-4432-A630-1A0F68A28A05",
}


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "imap-secret")
    monkeypatch.setenv("MODBOT_SMTP_PASSWORD", "smtp-secret")


def options(tmp_path: Path, **changes: str) -> list[str]:
    values = {**ANSWERS, "directory": "", "database": str(tmp_path / "db" / "modbot.db"),
              **changes}
    return [part for key, value in values.items() for part in (f"--{key}", value)]


def test_init_interactive_writes_a_loadable_config(tmp_path: Path, passwords: None) -> None:
    """Answering the questions writes an owner-only file that loads as written, in shadow mode."""
    target = tmp_path / "modbot.toml"
    directory = tmp_path / "directory.csv"
    directory.write_text("name,email,linkedin_url\n", encoding="utf-8")
    answers = [
        "Career Services Counselor", "counselor@counsel.example.edu",
        "https://counsel.example.edu/secure", "imap.counsel.example.edu",
        "",  # IMAP user: the default, the email address
        "",  # SMTP host: the default, the IMAP host
        "",  # SMTP user: the default, the IMAP user
        "ssl", "tls",  # a wrong answer is asked again
        str(directory), str(tmp_path / "modbot.db"),
        "google",  # Google Workspace: its verdict, with no further question
    ]
    result = runner.invoke(app, ["init", str(target)], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "Please answer one of: tls, starttls, none" in result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    settings = config.load(target).first
    assert settings.counselor.email == "counselor@counsel.example.edu"
    assert settings.imap.username == "counselor@counsel.example.edu"
    assert (settings.imap.port, settings.smtp.port) == (993, 465)
    assert settings.smtp.host == "imap.counsel.example.edu"
    assert settings.smtp.username == "counselor@counsel.example.edu"
    assert settings.directory.csv == directory
    assert settings.database.url == f"sqlite:///{tmp_path / 'modbot.db'}"
    assert settings.policy.mode is Mode.SHADOW
    assert settings.policy.trusted_authserv_ids == ("mx.google.com",)


def test_init_non_interactive_keeps_every_character(tmp_path: Path, passwords: None) -> None:
    """Quotes, backslashes and accents in answers come back exactly from the written file."""
    target = tmp_path / "modbot.toml"
    result = runner.invoke(app, ["init", str(target), "--non-interactive", *options(tmp_path)])
    assert result.exit_code == 0, result.output
    settings = config.load(target).first
    assert settings.counselor.name == ANSWERS["name"]
    assert (settings.imap.security, settings.imap.port, settings.smtp.port) == (
        "starttls", 143, 587)
    assert settings.imap.password is not None
    assert "imap-secret" not in target.read_text(encoding="utf-8")
    assert settings.directory.csv is None


def test_init_without_smtp_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An SMTP user of "-" writes no SMTP login, so only the IMAP password is needed."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "imap-secret")
    monkeypatch.delenv("MODBOT_SMTP_PASSWORD", raising=False)
    target = tmp_path / "modbot.toml"
    result = runner.invoke(app, ["init", str(target), "--non-interactive",
                                 *options(tmp_path, **{"smtp-user": "-"})])
    assert result.exit_code == 0, result.output
    assert config.load(target).first.smtp.username is None


def test_init_uses_the_config_option(tmp_path: Path, passwords: None) -> None:
    """Without a PATH, init writes where --config points."""
    target = tmp_path / "etc-modbot.toml"
    result = runner.invoke(app, ["--config", str(target), "init", "--non-interactive",
                                 *options(tmp_path)])
    assert result.exit_code == 0, result.output
    assert config.load(target).first.imap.host == "imap.counsel.example.edu"


def test_init_never_overwrites(tmp_path: Path) -> None:
    """An existing file is left exactly as it was, before any question is asked."""
    target = tmp_path / "modbot.toml"
    target.write_text("# the counselor's own\n", encoding="utf-8")
    result = runner.invoke(app, ["init", str(target)], input="")
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert target.read_text(encoding="utf-8") == "# the counselor's own\n"


def test_init_non_interactive_names_missing_options(tmp_path: Path) -> None:
    """Without the required answers nothing is written and the missing options are named."""
    target = tmp_path / "modbot.toml"
    result = runner.invoke(app, ["init", str(target), "--non-interactive", "--name", "X"])
    assert result.exit_code == 2
    assert "--email, --contact, --imap-host" in result.output
    assert not target.exists()


def test_init_bad_answers_write_nothing(tmp_path: Path) -> None:
    """Every problem with the answers is reported at once, and no file is left behind."""
    target = tmp_path / "modbot.toml"
    result = runner.invoke(app, ["init", str(target), "--non-interactive", *options(
        tmp_path, email="not-an-address", security="none")])
    assert result.exit_code == 2
    assert "--email: 'not-an-address' is not an email address" in result.output
    assert '--security: "none" sends the password in clear text' in result.output
    assert not target.exists()


# --- health ----------------------------------------------------------------------------------


@pytest.fixture
def health_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration whose database is in tmp_path; no password in the environment."""
    monkeypatch.delenv("MODBOT_IMAP_PASSWORD", raising=False)
    return configs.write_config(
        tmp_path, database={"url": configs.sqlite_url(tmp_path / "modbot.db")},
        schedule={"poll_seconds": 300})


def record_poll(tmp_path: Path, finished: datetime, *, ok: bool = True) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'modbot.db'}")
    poll = store.poll_started("counselor@127.0.0.1", finished - timedelta(seconds=2))
    store.poll_finished(poll, finished, ok=ok, new_messages=0)
    store.close()


def test_health_after_a_recent_poll(health_config: Path, tmp_path: Path) -> None:
    """A poll that succeeded a minute ago is healthy: exit 0, without needing the password."""
    record_poll(tmp_path, datetime.now(UTC) - timedelta(minutes=1))
    result = runner.invoke(app, ["--config", str(health_config), "health"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("healthy: the last successful poll was")


def test_health_after_an_old_poll(health_config: Path, tmp_path: Path) -> None:
    """A last success older than three intervals (15 min) is unhealthy: one sentence, exit 1."""
    record_poll(tmp_path, datetime.now(UTC) - timedelta(minutes=20))
    record_poll(tmp_path, datetime.now(UTC) - timedelta(minutes=1), ok=False)
    result = runner.invoke(app, ["--config", str(health_config), "health"])
    assert result.exit_code == 1
    assert result.output.strip() == ("modbot: unhealthy: the last successful poll was 20 min "
                                     "ago, more than three poll intervals (15 min)")


def test_health_before_any_poll(health_config: Path, tmp_path: Path) -> None:
    """A database with no successful poll is unhealthy."""
    Store.open(f"sqlite:///{tmp_path / 'modbot.db'}").close()
    result = runner.invoke(app, ["--config", str(health_config), "health"])
    assert result.exit_code == 1
    assert "no poll has succeeded yet" in result.output


def test_health_without_database_creates_none(health_config: Path, tmp_path: Path) -> None:
    """Before modbot ever ran there is no database; health says so and creates none."""
    result = runner.invoke(app, ["--config", str(health_config), "health"])
    assert result.exit_code == 1
    assert "there is no database" in result.output
    assert not (tmp_path / "modbot.db").exists()


def test_health_with_a_broken_config_exits_1(tmp_path: Path) -> None:
    """A broken configuration is unhealthy with exit 1: Docker reserves exit code 2."""
    path = tmp_path / "modbot.toml"
    path.write_text("[bogus]\n", encoding="utf-8")
    result = runner.invoke(app, ["--config", str(path), "health"])
    assert result.exit_code == 1
    assert "unhealthy" in result.output


@pytest.mark.parametrize(("age", "healthy"), [
    (timedelta(seconds=0), True),
    (timedelta(seconds=899), True),
    (timedelta(seconds=900), False),
    (timedelta(days=3), False),
])
def test_health_threshold_is_three_intervals(age: timedelta, healthy: bool) -> None:
    """Healthy means the last success is less than 3 × poll_seconds old."""
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert (health_problem(now - age, now, 300) is None) is healthy


# --- logs ------------------------------------------------------------------------------------


def test_json_formatter_fields() -> None:
    """A JSON line holds time (UTC), level, logger and message, and any traceback."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("modbot.poll").makeRecord(
            "modbot.poll", logging.ERROR, __file__, 1, "poll failed: %s", ("Zoë",),
            sys.exc_info())
    record.created = datetime(2026, 11, 23, 12, 0, 0, 250000, tzinfo=UTC).timestamp()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"] == "2026-11-23T12:00:00.250Z"
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "ERROR", "modbot.poll", "poll failed: Zoë")
    assert "ValueError: boom" in entry["exception"]


def test_install_replaces_only_its_own_handler() -> None:
    """Setting logging up twice leaves one modbot handler and keeps everyone else's."""
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        first = install("INFO", "json")
        second = install("DEBUG", "text")
        assert first not in root.handlers and second in root.handlers
        others = [h for h in before if not isinstance(h, StderrHandler)]
        assert [h for h in root.handlers if h is not second] == others
    finally:
        root.handlers[:] = before
        root.setLevel(level)


@pytest.mark.integration
def test_json_logs_of_a_real_poll(tmp_path: Path, imap_user: servers.ImapUser,
                                  smtp_server: servers.SmtpServer, ca_file: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll at DEBUG with format = "json" writes only JSON lines, and never a password."""
    imap_user.append("INBOX", (DATA / "invitation_current_jordan_rivera.eml").read_bytes())
    path = configs.write_config(tmp_path, configs.served_text(
        imap_user, smtp_server, ca_file,
        smtp={"username": smtp_server.username, "password_env": "MODBOT_SMTP_PASSWORD"},
        database={"url": configs.sqlite_url(tmp_path / "modbot.db")},
        policy={"mode": "auto", "trusted_authserv_ids": [configs.TRUSTED]},
        logging={"level": "DEBUG", "format": "json"}))
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", imap_user.password)
    monkeypatch.setenv("MODBOT_SMTP_PASSWORD", smtp_server.password)
    root = logging.getLogger()
    level = root.level
    try:
        result = runner.invoke(app, ["--config", str(path), "run-once"])
    finally:
        for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
            root.removeHandler(handler)
        root.setLevel(level)
    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    assert any(e["logger"] == "modbot.poll" for e in entries)
    for secret in (imap_user.password, smtp_server.password):
        assert secret not in result.output


def test_init_checks_each_answer_as_it_is_typed(tmp_path: Path, passwords: None) -> None:
    """A wrong answer is asked again at once, a missing directory file is warned about, and the
    earlier answers are kept: the file is written at the end."""
    target = tmp_path / "modbot.toml"
    answers = [
        "Career Services Counselor",
        "counselor at counsel", "counselor@counsel.example.edu",  # not an address: asked again
        "https://counsel.example.edu/secure",
        "imaps://imap.counsel.example.edu:993", "imap.counsel.example.edu",  # not a host name
        "", "", "",
        "none", "tls",  # clear text to a remote server: refused at once
        str(tmp_path / "later.csv"),  # does not exist yet: a warning, not a refusal
        str(tmp_path / "modbot.db"),
        "unknown",
    ]
    result = runner.invoke(app, ["init", str(target)], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "'counselor at counsel' is not an email address; please answer again" in result.output
    assert "is not a host name" in result.output
    assert '"none" sends the password in clear text' in result.output
    assert "later.csv does not exist yet" in result.output
    settings = config.load(target).first
    assert settings.counselor.email == "counselor@counsel.example.edu"
    assert settings.imap.host == "imap.counsel.example.edu"
    assert settings.directory.csv == tmp_path / "later.csv"
