"""Secrets and people never reach the logs: a poll at DEBUG (every library too) with canary
passwords and a canary student, through success and failure, writes neither anywhere."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import faults, servers
from support.trials import NOW

from modbot.mailbox import Mailbox
from modbot.poll import Context
from modbot.store import Store

pytestmark = pytest.mark.integration

CANARY = faults.Person("Zebulon Quagmire-Canary", "zebulon-canary-77",
                       "zq.canary@students.example.edu", "7400000000000000077")
SECOND = faults.Person("Xanthippe Canary-Second", "xanthippe-canary-78",
                       "xc.canary@students.example.edu", "7400000000000000078")


def directory() -> str:
    rows = [f"{p.name},{p.email},https://www.linkedin.com/in/{p.slug}" for p in (CANARY, SECOND)]
    return faults.DIRECTORY + "\n".join(rows) + "\n"


def canaries(imap_user: servers.ImapUser) -> list[str]:
    words = [imap_user.password, servers.SmtpServer.password]
    for person in (CANARY, SECOND):
        words += [person.name, person.name.split()[1], person.email, person.slug,
                  person.invitation_id]
    return words


def leaks(text: str, words: list[str]) -> list[str]:
    return [word for word in words if word.lower() in text.lower()]


def test_debug_poll_through_success_and_failure_leaks_nothing(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path) -> None:
    """Replies sent, a recipient refused, a held unknown, then a refused login: the DEBUG output
    of all of it holds no password, name, address, profile or invitation id."""
    imap_user.append("INBOX", faults.invitation(CANARY, serial=1))
    imap_user.append("INBOX", faults.fixture(faults.PRIYA))
    config = faults.write_config(tmp_path, imap_user, smtp_server, ca_file, directory=directory(),
                                 smtp_login=True, level="DEBUG")
    output = ""
    first = faults.run_poll(config, NOW, imap_user.password, debug=True)
    output += first.stdout + first.stderr
    assert len(smtp_server.messages) == 1, first.stderr[-2000:]
    smtp_server.rcpt_reply = f"550 5.1.1 <{SECOND.email}> unknown user {SECOND.name}"
    imap_user.append("INBOX", faults.invitation(SECOND, serial=2))
    second = faults.run_poll(config, NOW, imap_user.password, debug=True)
    output += second.stdout + second.stderr
    assert "550" in second.stdout
    refused = faults.run_poll(config, NOW, imap_user.password + "-wrong", debug=True)
    output += refused.stdout + refused.stderr
    assert refused.returncode == 1
    assert "DEBUG" in output  # the libraries did talk
    assert leaks(output, canaries(imap_user)) == []


def test_run_once_at_debug_keeps_people_and_passwords_out_of_the_log(
        tmp_path: Path, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        ca_file: Path) -> None:
    """`modbot run-once` with logging.level = "DEBUG": its log (stderr) names nobody and holds
    no password; its report on stdout holds no password."""
    imap_user.append("INBOX", faults.invitation(CANARY, serial=1))
    config = faults.write_config(tmp_path, imap_user, smtp_server, ca_file, directory=directory(),
                                 smtp_login=True, level="DEBUG")
    result = subprocess.run(
        [sys.executable, "-m", "modbot", "--config", str(config), "run-once"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "MODBOT_IMAP_PASSWORD": imap_user.password,
             "MODBOT_SMTP_PASSWORD": servers.SmtpServer.password})
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(smtp_server.messages) == 1
    assert leaks(result.stderr, canaries(imap_user)) == []
    assert leaks(result.stdout, [imap_user.password, servers.SmtpServer.password]) == []


def test_libraries_are_kept_quiet(tmp_path: Path, imap_user: servers.ImapUser,
                                  smtp_server: servers.SmtpServer, ca_file: Path) -> None:
    """SQLAlchemy hides parameters and its loggers, imapclient's and alembic's stay at WARNING
    even when the root logger is at DEBUG."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        opened = Store.open(f"sqlite:///{tmp_path / 'quiet.db'}")
        ctx = Context.build(faults.settings_for(tmp_path, imap_user, smtp_server, ca_file),
                            store_=opened, dkim_lookup=None)
        with Mailbox(ctx.settings.imap, ctx.imap_tls) as mailbox:
            mailbox.select("INBOX")
        assert opened.engine.hide_parameters is True
        for name in ("sqlalchemy", "sqlalchemy.engine", "alembic", "imapclient",
                     "imapclient.imaplib"):
            assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
        opened.close()
    finally:
        root.setLevel(previous)
