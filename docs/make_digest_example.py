"""Write docs/digest-example.html: the digest for a realistic week, from a real store.

Run it from the project root with ``.venv/bin/python docs/make_digest_example.py``; it prints
the plain-text part too. Where headless Chromium is installed it also renders the HTML as a
phone (docs/digest-400.png, 400 px wide) and a desktop mail client (docs/digest-900.png) show it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modbot import config, digest, words
from modbot.model import PolicyRule
from modbot.render import Templates
from modbot.store import MessageRecord, OutboxStatus, ReplyRecord, Store, schema

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 08:00 in Chicago
SETTINGS = config.parse({
    "counselor": {"name": "Dana Whitfield", "email": "dana.whitfield@careers.example.edu",
                  "confidential_contact": "careers.example.edu/appointments or (555) 010-0142"},
    "imap": {"host": "imap.example.edu", "username": "dana"},
    "smtp": {"host": "smtp.example.edu"},
    "policy": {"mode": "auto"},
    "digest": {"timezone": "America/Chicago"},
}, resolve_secrets=False).first
REFERENCE = "5f0c2a9e71b84d3c9a6e0b1f2d4c8a73"  # an example of the digest's one-time token
SPOOF = "pretends to come from LinkedIn but is shown not to; it is never answered"


class Week:
    """Records messages into the store the way a poll does."""

    def __init__(self, db: Store) -> None:
        self.db, self.count = db, 0

    def add(self, kind: str, name: str | None, at: datetime, *, action: str = "reply",
            rule: str = "reply", reason: str | None = None,
            status: OutboxStatus | None = OutboxStatus.SENT,
            error: str | None = None, authentic: bool | None = True,
            profile: str | None = None) -> None:
        self.count += 1
        row: dict[str, Any] = {
            "account": "dana@imap.example.edu", "message_key": f"k{self.count}",
            "folder": "INBOX", "uidvalidity": 1, "uid": self.count, "seen_at": at,
            "kind": kind, "authentic": authentic, "classify_rule": "template-key",
            "person_name": name, "profile_url": profile, "invitation_id": None,
            "address_source": None, "action": action, "policy_rule": rule,
            "reasons": (reason or (f"{words.kind_phrase(kind)} gets the standard reply"
                                   if action == "reply" else
                                   f"as configured, {words.kind_phrase(kind)} is only noted: "
                                   "it needs no answer"),),
            "error": None,
        }
        reply: dict[str, Any] | None = None
        if action == "reply":
            reply = {"message_id": f"<r{self.count}@careers.example.edu>", "template": kind,
                     "recipient_name": name, "recipient_email": f"s{self.count}@example.edu",
                     "redirected_to": None, "status": OutboxStatus.QUEUED, "created_at": at}
        item = self.db.record(MessageRecord(**row),
                              None if reply is None else ReplyRecord(**reply))
        if item is not None and status is not None:
            self.db.mark(item, status, now=at + timedelta(minutes=1), error=error)


def fill(db: Store) -> None:
    week = Week(db)
    day = timedelta(days=1)
    # Earlier weeks, for the chart.
    for back in range(1, 8):
        start = NOW - timedelta(weeks=back) - 3 * day
        for i in range(2 + back % 4):
            week.add("connection_invitation", f"Student {back}-{i}", start + i * day / 3)
        for i in range(back % 3):
            week.add("linkedin_message", f"Writer {back}-{i}", start + i * day / 2)
        week.add("group_join_request", f"Member {back}", start + day)
        for i in range(4 + back % 5):
            week.add("other_linkedin", None, start + i * day / 4, action="log",
                     rule=PolicyRule.CONFIGURED_ACTION, status=None)
        if back in (3, 6):
            week.add("spoofed_linkedin", "LinkedIn Security", start, action="hold",
                     rule=PolicyRule.SPOOFED_LINKEDIN, status=None, authentic=False,
                     reason=SPOOF)
            with db.transaction() as c:  # the counselor looked at it that week
                c.execute(schema.messages.update().where(schema.messages.c.uid == week.count)
                          .values(resolved_at=start + day))
        if back == 2:
            week.add("recommendation_request", "Priya Natarajan", start, status=OutboxStatus.SENT)
    # This week.
    start = NOW - 7 * day
    sent = [("connection_invitation", "Ana Lima"), ("connection_invitation", "Marcus Okafor"),
            ("connection_invitation", "Sofia Hernández"), ("connection_invitation", "Liam Chen"),
            ("group_join_request", "Grace Park"), ("group_join_request", "Tomás Rivera"),
            ("linkedin_message", "Hannah Weiss"), ("recommendation_request", "Omar Haddad")]
    for i, (kind, name) in enumerate(sent):
        week.add(kind, name, start + (i + 1) * day / 2)
    for i in range(11):
        week.add("other_linkedin", None, start + i * day / 2, action="log",
                 rule=PolicyRule.CONFIGURED_ACTION, status=None)
    for i in range(4):
        week.add("group_activity", None, start + i * day, action="log",
                 rule=PolicyRule.CONFIGURED_ACTION, status=None)
    week.add("connection_invitation", "Jordan Rivera", start + 2 * day, action="hold",
             rule=PolicyRule.NO_ADDRESS, status=None, profile="https://www.linkedin.com/in/jordan-rivera-4b1a2",
             reason="no address to reply to: no one in the directory has this name")
    week.add("spoofed_linkedin", "LinkedIn Security", start + 3 * day, action="hold",
             rule=PolicyRule.SPOOFED_LINKEDIN, status=None, authentic=False,
             profile="https://linkedin.example.net/verify",
             reason=SPOOF)
    week.add("linkedin_message", "Chloe Dubois", start + 4 * day + timedelta(hours=3),
             status=OutboxStatus.UNCERTAIN,
             error="the reply may have been sent: the connection ended before the server "
                   "confirmed it; held so it is never sent twice")
    week.add("not_linkedin", None, start + 5 * day, action="hold", rule=PolicyRule.ANSWER_TO_MODBOT,
             status=None, authentic=None,
             reason="a person answered modbot's mail; only the counselor answers it")
    failed = [db.poll_started("dana@imap.example.edu", start + 5 * day + timedelta(minutes=m))
              for m in (0, 5, 10)]
    for poll in failed:
        db.poll_finished(poll, start + 5 * day + timedelta(minutes=1), ok=False, new_messages=0,
                         error="IMAP login to imap.example.edu failed: the server refused the "
                               "credentials")
    for minutes in range(0, 7 * 24 * 60, 5):
        if 5 * 24 * 60 <= minutes < 5 * 24 * 60 + 15:
            continue
        poll = db.poll_started("dana@imap.example.edu", start + timedelta(minutes=minutes))
        db.poll_finished(poll, start + timedelta(minutes=minutes, seconds=4), ok=True,
                         new_messages=0)


def screenshot(page: Path, width: int) -> None:
    """Render ``page`` in headless Chromium ``width`` px wide, beside it as digest-WIDTH.png."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print(f"(no chromium: digest-{width}.png not rendered)", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--screenshot={page.parent / f'digest-{width}.png'}",
             f"--window-size={width},3200", page.resolve().as_uri()],
            check=True, capture_output=True, timeout=120)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "digest-example.html"
    with tempfile.TemporaryDirectory() as tmp:
        db = Store.open(f"sqlite:///{tmp}/example.db")
        fill(db)
        data = digest.gather(db, SETTINGS, NOW)
        db.close()
    templates = Templates.load()
    out.write_text(digest.preview_html(data, templates, SETTINGS.counselor, NOW, REFERENCE),
                   encoding="utf-8")
    for width in (400, 900):
        screenshot(out, width)
    mail = digest.build(data, templates, SETTINGS.counselor, now=NOW,
                        message_id="<digest-example@careers.example.edu>", reference=REFERENCE)
    text = mail.get_body(preferencelist=("plain",))
    print(f"Subject: {mail['Subject']}\n")
    print(text.get_content() if text is not None else "")


if __name__ == "__main__":
    main()
