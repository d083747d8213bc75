"""Shadow mode is the counselor's trial week: it decides exactly as automatic mode would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from support import configs, servers
from support.faults import DIRECTORY, JORDAN, NEWSLETTER, PRIYA, SAM, SPOOF, fixture

from modbot import digest
from modbot.config import PolicySettings
from modbot.model import Mode, PolicyRule
from modbot.poll import Context, Poller
from modbot.render import Templates
from modbot.store import OutboxStatus, schema

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REMINDER = "invitation_reminder_jordan_rivera.eml"
PEOPLE = DIRECTORY + "Priya Natarajan,pnatarajan@students.example.edu,\n"


def context(mode: Mode, imap_user: servers.ImapUser, smtp: servers.SmtpServer, ca_file: Path,
            where: Path) -> Context:
    """A poll context with its own database, in ``mode``, reading the shared test inbox."""
    where.mkdir()
    settings = configs.account(where, imap_user.imap_settings(), smtp.smtp_settings(),
                               people=PEOPLE, policy={"mode": mode, "max_replies_per_hour": 2})
    ctx = configs.poll_context(settings, ca_file)
    return ctx


def decisions(ctx: Context) -> list[tuple[str, str, str]]:
    m = schema.messages
    with ctx.store.transaction() as c:
        rows = c.execute(select(m.c.kind, m.c.action, m.c.policy_rule).order_by(m.c.uid))
        return [tuple(row) for row in rows]


async def test_shadow_decides_every_message_as_auto_does(
        imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, ca_file: Path,
        tmp_path: Path) -> None:
    """The same week of mail gets the same decisions, reminder and cap included, in both modes;
    only auto sends, and the shadow digest names the reminder's inviter once."""
    for name in (JORDAN, SAM, REMINDER, SPOOF, NEWSLETTER, PRIYA):
        imap_user.append("INBOX", fixture(name))
    shadow = context(Mode.SHADOW, imap_user, smtp_server, ca_file, tmp_path / "shadow")
    auto = context(Mode.AUTO, imap_user, smtp_server, ca_file, tmp_path / "auto")
    await Poller(shadow).poll(NOW)
    assert smtp_server.messages == []
    await Poller(auto).poll(NOW)
    assert decisions(shadow) == decisions(auto)
    answered = ("connection_invitation", "log", PolicyRule.INVITATION_ALREADY_ANSWERED)
    assert answered in decisions(shadow)
    capped = ("connection_invitation", "hold", PolicyRule.HOURLY_CAP)
    assert capped in decisions(shadow)  # the third
    to_people = [m for m in smtp_server.messages
                 if m.recipients != ("counselor@counsel.example.edu",)]
    assert len(to_people) == 2  # and the alert that the cap paused replies
    assert shadow.store.active_pause(shadow.settings.account) is None
    assert auto.store.active_pause(auto.settings.account) is not None
    data = digest.gather(shadow.store, shadow.settings, NOW + timedelta(hours=1))
    message = digest.build(data, Templates.load(), shadow.settings.counselor,
                           now=NOW + timedelta(hours=1), message_id="<d@counsel.example.edu>")
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    assert "Jordan Rivera, Jordan Rivera" not in text.get_content()
    assert "Jordan Rivera" in text.get_content()


async def test_after_the_switch_a_shadow_era_person_gets_the_real_reply(
        imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, ca_file: Path,
        tmp_path: Path) -> None:
    """Nobody received a shadow reply: once in auto mode, the reminder of a shadow-era
    invitation is answered, and the shadow-era reply itself is never sent."""
    shadow = context(Mode.SHADOW, imap_user, smtp_server, ca_file, tmp_path / "db")
    imap_user.append("INBOX", fixture(JORDAN))
    await Poller(shadow).poll(NOW)
    auto = configs.poll_context(shadow.settings.model_copy(update={"policy": PolicySettings(
        mode=Mode.AUTO, trusted_authserv_ids=("mx.counsel.example.edu",))}), ca_file)
    imap_user.append("INBOX", fixture(REMINDER))
    await Poller(auto).poll(NOW + timedelta(days=7))
    assert len(smtp_server.messages) == 1
    # still only recorded
    assert len(auto.store.items(auto.settings.account, OutboxStatus.SHADOW)) == 1
