"""`modbot check`: every problem of an installation in one line with what to do, and no change
to anything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support import servers
from support.checking import check, config_text, line
from typer.testing import CliRunner

from modbot import checks
from modbot.render import default_templates_dir

runner = CliRunner()


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODBOT_CHECK_PASSWORD", "x")


def test_every_problem_is_one_line_and_the_checks_go_on(tmp_path: Path) -> None:
    """A template with a syntax error, a missing directory file and unreachable servers are each
    named on one line with what to do, and no check stops the ones after it."""
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    broken = templates / "group_welcome.j2"
    broken.write_text(broken.read_text(encoding="utf-8") + "{% if counselor %}\nno end\n",
                      encoding="utf-8")
    extra = '[templates]\ndir = "templates"\n[directory]\ncsv = "missing.csv"\n'
    code, lines = check(tmp_path, config_text(tmp_path, extra=extra))
    assert code == 1
    template = line(lines, "problem: templates:")
    assert "group_welcome.j2, line " in template and "fix that line" in template
    directory = line(lines, "problem: directory:")
    assert "missing.csv" in directory and "export the campus directory there" in directory
    assert "nothing listens on 127.0.0.1:1" in line(lines, "problem: IMAP:")
    assert "nothing listens on 127.0.0.1:2" in line(lines, "problem: SMTP:")
    assert lines.index("checking IMAP 127.0.0.1:1…") < lines.index(line(lines, "problem: IMAP"))
    assert lines[-1].startswith("modbot will not work as configured")


def test_missing_templates_are_named(tmp_path: Path) -> None:
    """A template folder lacking a template names it, and says where the originals are."""
    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    (templates / "linkedin_message.j2").unlink()
    _, lines = check(tmp_path, config_text(tmp_path, extra='[templates]\ndir = "templates"\n'))
    problem = line(lines, "problem: templates:")
    assert "linkedin_message" in problem and "copy config/templates" in problem


def test_malformed_directory_rows_are_warnings(tmp_path: Path) -> None:
    """A directory with a bad row is usable: the row is a warning with its line, and the people
    are counted."""
    (tmp_path / "directory.csv").write_text(
        "name;email\nJordan Rivera;jrivera@students.example.edu\nSam Lee;\n", encoding="utf-8")
    _, lines = check(tmp_path, config_text(tmp_path, extra='[directory]\ncsv = "directory.csv"\n'))
    assert "line 3 has no email" in line(lines, "warning: directory:")
    assert "lists 1 person" in line(lines, "ok: directory:")
    assert not [text for text in lines if text.startswith("problem: directory")]


def test_check_creates_no_database(tmp_path: Path) -> None:
    """The database that does not exist yet is announced, not created, nor its folder."""
    _, lines = check(tmp_path, config_text(tmp_path))
    assert "does not exist yet" in line(lines, "note: database:")
    assert not (tmp_path / "state").exists()


def test_unwritable_database_folder_names_path_and_user(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A database folder the user cannot create is a problem naming the folder, the user and
    the command that fixes it."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere: see the folder as any other user would
        real = os.access
        monkeypatch.setattr(checks.os, "access", lambda p, mode: real(p, mode) and (
            Path(p) != locked or not mode & os.W_OK))
    lines: list[str] = []
    checks.check_database(f"sqlite:///{locked / 'lib' / 'modbot.db'}",
                          checks.Report(lines.append))
    (problem,) = lines
    user = checks._user()
    assert problem.startswith("problem: database: cannot create")
    assert f"{locked} is not writable by user {user}" in problem
    assert f"sudo install -d -o {user} -m 700 {locked / 'lib'}" in problem


def test_unreadable_configuration_stops_with_every_problem(tmp_path: Path) -> None:
    """A configuration with mistakes lists each as its own line and exits 2."""
    text = config_text(tmp_path).replace('username = "counselor"', 'usernme = "counselor"')
    code, lines = check(tmp_path, text)
    assert code == 2
    assert any("imap.usernme: unknown key — did you mean username?" in t for t in lines)


def test_a_missing_password_still_checks_the_rest(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the password the other checks still run, and the servers are tried."""
    monkeypatch.delenv("MODBOT_CHECK_PASSWORD")
    code, lines = check(tmp_path, config_text(tmp_path))
    assert code == 1
    assert "MODBOT_CHECK_PASSWORD is not set" in line(lines, "problem: configuration:")
    line(lines, "ok: templates:")
    line(lines, "problem: IMAP:")


@pytest.mark.integration
def test_a_working_installation_is_all_good(tmp_path: Path, ca_file: Path,
                                            imap_user: servers.ImapUser,
                                            smtp_server: servers.SmtpServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Against real IMAP and SMTP servers every check passes, and nothing is created."""
    monkeypatch.setenv("MODBOT_CHECK_PASSWORD", imap_user.password)
    code, lines = check(tmp_path, config_text(
        tmp_path, imap_port=imap_user.port, smtp_port=smtp_server.port, ca_file=ca_file,
        user=imap_user.username))
    assert code == 0, "\n".join(lines)
    assert f"logged in as {imap_user.username}" in line(lines, "ok: IMAP:")
    assert lines[-1] == "all good"
    assert not (tmp_path / "state").exists()


@pytest.mark.integration
def test_the_465_587_mix_up_is_named(tmp_path: Path, ca_file: Path,
                                     imap_user: servers.ImapUser,
                                     smtp_server: servers.SmtpServer,
                                     smtp_starttls_server: servers.SmtpServer,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS asked of a STARTTLS port, and STARTTLS of a TLS port, are named as the mix-up they
    are, with the keys to change, for IMAP and SMTP alike."""
    monkeypatch.setenv("MODBOT_CHECK_PASSWORD", imap_user.password)
    _, lines = check(tmp_path, config_text(
        tmp_path, imap_port=imap_user.starttls_port, smtp_port=smtp_starttls_server.port,
        ca_file=ca_file, user=imap_user.username))
    assert "993/143 mix-up" in line(lines, "problem: IMAP:")
    smtp = line(lines, "problem: SMTP:")
    assert "465/587 mix-up" in smtp and 'security = "starttls"' in smtp
    _, lines = check(tmp_path, config_text(
        tmp_path, imap_port=imap_user.port, imap_security="starttls",
        smtp_port=smtp_server.port, smtp_security="starttls", ca_file=ca_file,
        user=imap_user.username))
    assert "993/143 mix-up" in line(lines, "problem: IMAP:")
    assert "said nothing in plain text" in line(lines, "problem: SMTP:")
