"""`modbot check` reads the last 30 days of a real Dovecot mailbox holding campus-shaped
LinkedIn mail: the report, what it proves, what it suggests, and no flag changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import servers
from support.checking import check, config_text, line
from support.linkedin_mail import delivered, forged, genuine, lookup
from test_campus_stacks import EXO_BROKEN, PROOFPOINT, PROOFPOINT_HOP, TENANT, exchange

from modbot import checks

pytestmark = pytest.mark.integration

FORGED_EXO = ("spf=fail (sender IP is 203.0.113.9) smtp.mailfrom=evil.example; dkim=pass "
              "(signature was verified) header.d=evil.example;dmarc=fail action=none "
              "header.from=linkedin.com;compauth=fail reason=000")
UNRELATED = (b"From: Sam Lee <slee@students.example.edu>\nTo: counselor@counsel.example.edu\n"
             b"Subject: appointment\nIn-Reply-To: <1@counsel.example.edu>\n"
             b"Message-ID: <2@students.example.edu>\n\nSee you Tuesday.\n")


def fill(user: servers.ImapUser) -> dict[int, tuple[str, ...]]:
    """The mailbox of a Microsoft 365 college, partly behind Proofpoint: genuine invitations,
    a forgery, an unrelated reply, and one invitation older than 30 days. Its flags."""
    behind_proofpoint = exchange(genuine(), verdict=EXO_BROKEN, client=PROOFPOINT_HOP,
                                 between=PROOFPOINT)
    user.append("INBOX", exchange(genuine()), flags=("\\Seen",))
    user.append("INBOX", exchange(genuine()))
    user.append("INBOX", behind_proofpoint, flags=("\\Flagged",))
    user.append("INBOX", exchange(forged(), verdict=FORGED_EXO))
    user.append("INBOX", UNRELATED)
    with user.connect() as client:
        client.append("INBOX", exchange(genuine()),
                      msg_time=datetime.now(UTC) - timedelta(days=60))
    return user.flags("INBOX")


def settings_file(tmp_path: Path, user: servers.ImapUser, ca_file: Path, policy: str) -> Path:
    path = tmp_path / "modbot.toml"
    path.write_text(config_text(tmp_path, imap_port=user.port, ca_file=ca_file,
                                user=user.username, extra=f"[policy]\n{policy}\n"),
                    encoding="utf-8")
    return path


@pytest.fixture
def password(imap_user: servers.ImapUser, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODBOT_CHECK_PASSWORD", imap_user.password)


def test_unconfigured_mailbox_gets_its_settings_suggested(
        tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser, password: None) -> None:
    """With nothing configured, `check` finds the four recent notifications, proves none, and
    suggests the tenant and Proofpoint's hosts, which prove the three genuine ones."""
    before = fill(imap_user)
    lines: list[str] = []
    code = checks.run(settings_file(tmp_path, imap_user, ca_file, ""), None, lines.append,
                      today=datetime.now(UTC).date(), dkim_lookup=lookup)
    assert code == 1
    headline = line(lines, "problem: mail survey:")
    assert "4 LinkedIn notifications in the last 30 days of INBOX (5 messages)" in headline
    assert "proves none of them" in headline
    text = "\n".join(lines)
    assert "with them 3 of 4 would be proven" in text
    assert f'microsoft365_tenant = "{TENANT}"' in text
    assert 'gateway_hosts = ["mx0a-00000d07.pphosted.com"]' in text
    assert "Safe Links (4)" in text
    assert imap_user.flags("INBOX") == before


def test_configured_mailbox_is_proven_through_the_command(
        tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser, password: None) -> None:
    """Configured as suggested, `modbot check` proves the genuine mail by Exchange's and the
    gateway's verdicts, counts the forgery as forged, and changes no flag."""
    before = fill(imap_user)
    policy = (f'microsoft365_tenant = "{TENANT}"\n'
              'gateway_hosts = ["mx0a-00000d07.pphosted.com"]')
    _, lines = check(tmp_path, (settings_file(tmp_path, imap_user, ca_file, policy)
                                .read_text(encoding="utf-8")))
    headline = line(lines, "warning: mail survey:")
    assert headline.endswith("3 proven, 1 not")
    assert "      2    by Exchange Online's verdict" in lines
    assert "      1    by the gateway's verdict" in lines
    assert "      1  judged forged: held, never answered" in lines
    assert not any("suggested" in text for text in lines)
    assert imap_user.flags("INBOX") == before


def test_no_mail_skips_the_survey(tmp_path: Path, ca_file: Path, imap_user: servers.ImapUser,
                                  password: None) -> None:
    """`check --no-mail` logs in and reads no message."""
    fill(imap_user)
    path = settings_file(tmp_path, imap_user, ca_file, "")
    from typer.testing import CliRunner

    from modbot.cli import app

    result = CliRunner().invoke(app, ["--config", str(path), "check", "--no-mail"])
    assert "ok: IMAP: logged in" in result.output
    assert "mail survey" not in result.output


def test_postfix_mailbox_is_proven_by_dkim(tmp_path: Path, ca_file: Path,
                                           imap_user: servers.ImapUser, password: None) -> None:
    """A college's own Postfix with no verdict trusted: LinkedIn's DKIM verified here proves it."""
    imap_user.append("INBOX", delivered(genuine()))
    lines: list[str] = []
    checks.run(settings_file(tmp_path, imap_user, ca_file, ""), None, lines.append,
               today=datetime.now(UTC).date(), dkim_lookup=lookup)
    assert line(lines, "ok: mail survey:").endswith("all proven")
    assert "      1    by DKIM verified here" in lines
