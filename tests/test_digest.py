"""The weekly digest: what it lists, how it reads in text and HTML, and what it never shows."""

from __future__ import annotations

import dataclasses
import html
import itertools
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from modbot import config, digest, store
from modbot.config import Settings
from modbot.render import Templates, default_templates_dir
from modbot.store import Store

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CONTACT = "careers.example.edu/appointments"
MESSAGE_ID = "<digest-1@careers.example.edu>"


def settings(**policy: Any) -> Settings:
    return config.parse({
        "counselor": {"name": "Dana Whitfield", "email": "dana@careers.example.edu",
                      "confidential_contact": CONTACT},
        "imap": {"host": "imap.example.edu", "username": "dana"},
        "smtp": {"host": "smtp.example.edu"},
        "policy": {"mode": "auto", **policy},
    }, resolve_secrets=False)


SETTINGS = settings()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'db'}")
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load()


_keys = itertools.count(1)


def add(db: Store, kind: str = "connection_invitation", name: str | None = "Ana Lima", *,
        at: datetime = NOW - DAY, action: str = "reply", rule: str = "reply",
        reasons: tuple[str, ...] = ("answer it with its template",),
        status: str | None = store.SENT, error: str | None = None,
        authentic: bool | None = True, profile_url: str | None = None) -> int:
    """Record one message as a poll would, its reply marked ``status``; return the message row."""
    key = next(_keys)
    row = {
        "account": "dana@imap.example.edu", "message_key": f"k{key}", "folder": "INBOX",
        "uidvalidity": 1, "uid": key, "seen_at": at, "kind": kind, "authentic": authentic,
        "classify_rule": "template-key", "person_name": name, "profile_url": profile_url,
        "invitation_id": None, "address_source": None, "action": action, "policy_rule": rule,
        "reasons": list(reasons), "error": None,
    }
    reply = None if action != "reply" else {
        "message_id": f"<r{key}@careers.example.edu>", "template": kind, "recipient_name": name,
        "recipient_email": f"s{key}@students.example.edu", "redirected_to": None,
        "status": store.QUEUED, "created_at": at,
    }
    item = db.record(row, reply)
    if item is not None and status is not None:
        db.mark(item, status, now=at + timedelta(minutes=1), error=error)
    return key


def hold(db: Store, kind: str, rule: str, reason: str, **kwargs: Any) -> int:
    return add(db, kind, action="hold", rule=rule, reasons=(reason,), status=None, **kwargs)


def make(db: Store, templates: Templates, settings_: Settings = SETTINGS) -> EmailMessage:
    data = digest.gather(db, settings_, NOW)
    return digest.build(data, templates, settings_.counselor, now=NOW, message_id=MESSAGE_ID)


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain text, and the HTML reduced to its visible text with entities decoded."""
    text, markup = (message.get_body(preferencelist=(subtype,)) for subtype in ("plain", "html"))
    assert isinstance(text, EmailMessage) and isinstance(markup, EmailMessage)
    visible = html.unescape(re.sub(r"<[^>]+>", " ", markup.get_content()))
    return text.get_content(), " ".join(visible.split())


def test_no_address_item_has_reason_and_paste_text(db: Store, templates: Templates) -> None:
    """A held invitation without an address shows its reason and the reply to paste."""
    hold(db, "connection_invitation", "no-address",
         "no address to reply to: no one in the directory has this name", name="Jordan Rivera")
    for part in parts(make(db, templates)):
        assert "No address to reply to: no one in the directory has this name." in part
        assert "Reply to paste into LinkedIn" in part
        assert "Hello Jordan Rivera," in part and CONTACT in part


def test_paste_text_is_plain_lines_in_the_text_part(db: Store, templates: Templates) -> None:
    """The text part gives the reply unindented, between rules, ready to copy."""
    hold(db, "linkedin_message", "no-address", "no address to reply to", name="Jordan Rivera")
    text, _ = parts(make(db, templates))
    pasted = text.split("-" * 60)[1]
    assert pasted.startswith("\nHello Jordan Rivera,\n\nThank you for your message")


def test_spoof_is_listed_without_paste_text(db: Store, templates: Templates) -> None:
    """A spoof needs the counselor but gets no reply to paste."""
    hold(db, "spoofed_linkedin", "spoofed-linkedin",
         "looks like LinkedIn but is not authentic; never answered", authentic=False)
    text, visible = parts(make(db, templates))
    assert "Spoofed LinkedIn mail" in visible
    assert "Looks like LinkedIn but is not authentic; never answered." in text
    assert "paste" not in text


def test_profile_link_only_from_authentic_linkedin(db: Store, templates: Templates) -> None:
    """A profile link is shown for authentic mail only, and only to www.linkedin.com."""
    hold(db, "connection_invitation", "no-address", "no address",
         profile_url="https://www.linkedin.com/in/jordan")
    hold(db, "spoofed_linkedin", "spoofed-linkedin", "a spoof", authentic=False,
         profile_url="https://www.linkedin.com/in/spoof")
    hold(db, "connection_invitation", "no-address", "no address",
         profile_url="https://linkedin.example.net/in/lure")
    text, _ = parts(make(db, templates))
    assert "https://www.linkedin.com/in/jordan" in text
    assert "/in/spoof" not in text and "lure" not in text


@pytest.mark.parametrize(("status", "label"), [
    (store.UNCERTAIN, "May have been sent"),
    (store.FAILED, "Reply not sent"),
    (store.REVIEW, "Waiting for your review"),
])
def test_outbox_problems_show_their_last_error(db: Store, templates: Templates, status: str,
                                               label: str) -> None:
    """Uncertain, failed and review replies are listed with the outbox's last error."""
    add(db, name="Chloe Dubois", status=status, error="the server said no")
    _, visible = parts(make(db, templates))
    assert label.upper() in visible.upper()
    assert "Chloe Dubois" in visible and "The server said no." in visible


def test_review_item_says_it_waits_for_approval(db: Store, templates: Templates) -> None:
    """A reply queued for review is listed as waiting, not with the policy's reason to reply."""
    add(db, name="Chloe Dubois", status=store.REVIEW)
    text, _ = parts(make(db, templates))
    assert ("[Waiting for your review] Chloe Dubois (Connection invitation, Sun 22 Nov)\n"
            "The reply is ready and waits for your approval.") in text


def test_answer_to_modbot_is_listed(db: Store, templates: Templates) -> None:
    """A person's answer to modbot's mail is listed for the counselor."""
    hold(db, "not_linkedin", "answer-to-modbot",
         "a person answered modbot's mail; only the counselor answers it", name=None)
    _, visible = parts(make(db, templates))
    assert "A person answered modbot" in visible
    assert "A person answered modbot's mail; only the counselor answers it." in visible


def test_items_stay_listed_until_resolved(db: Store, templates: Templates) -> None:
    """An old unresolved item is listed; a resolved one is not."""
    hold(db, "unknown_linkedin", "configured-action", "held", name="Old Item", at=NOW - 40 * DAY)
    done = hold(db, "unknown_linkedin", "configured-action", "held", name="Closed Item")
    with db.transaction() as c:
        c.execute(store.messages.update().where(store.messages.c.uid == done)
                  .values(resolved_at=NOW))
    text, _ = parts(make(db, templates))
    assert "Old Item" in text and "Closed Item" not in text


def test_subject_counts_what_needs_the_counselor(db: Store, templates: Templates) -> None:
    """The subject says how many items need the counselor."""
    assert make(db, templates)["Subject"].startswith("Nothing needs you")
    hold(db, "spoofed_linkedin", "spoofed-linkedin", "a spoof")
    assert make(db, templates)["Subject"].startswith("1 item needs you")
    hold(db, "unknown_linkedin", "configured-action", "unknown")
    assert make(db, templates)["Subject"].startswith("2 items need you")


def test_sent_replies_by_kind_with_names(db: Store, templates: Templates) -> None:
    """Replies sent this week are grouped by kind with the people's names."""
    add(db, name="Ana Lima")
    add(db, name="Liam Chen")
    add(db, "group_join_request", name="Grace Park")
    add(db, name="Last Week", at=NOW - 9 * DAY)
    text, _ = parts(make(db, templates))
    assert "Connection invitation (2): Ana Lima, Liam Chen" in text
    assert "Group join request (1): Grace Park" in text
    assert "Last Week" not in text


def test_long_name_lists_are_cut_with_a_count(db: Store, templates: Templates) -> None:
    """Beyond twelve names per kind the rest are counted, not listed."""
    for number in range(14):
        add(db, name=f"Student {number:02}")
    text, _ = parts(make(db, templates))
    assert "Student 11 and 2 more\n" in text and "Student 12" not in text


def test_shadow_replies_would_have_been_sent(db: Store, templates: Templates) -> None:
    """Shadow-mode replies are shown as replies that would have been sent."""
    add(db, name="Ana Lima", status=store.SHADOW)
    text, _ = parts(make(db, templates, settings(mode="shadow")))
    assert "Would have been sent (shadow mode):\nConnection invitation (1): Ana Lima" in text
    assert "Replies sent" not in text
    assert "Shadow mode: nothing was sent." in text


def test_logged_counts_by_kind(db: Store, templates: Templates) -> None:
    """Messages logged without a reply are counted by kind."""
    for _ in range(3):
        add(db, "other_linkedin", None, action="log", rule="configured-action", status=None)
    add(db, "group_activity", None, action="log", rule="configured-action", status=None)
    text, _ = parts(make(db, templates))
    assert "Group activity: 1 message\nOther LinkedIn mail: 3 messages" in text


def test_health_shows_polls_and_their_errors(db: Store, templates: Templates) -> None:
    """Health gives the last good poll and each failed poll's error once, with a count."""
    good = db.poll_started(SETTINGS.account, NOW - timedelta(minutes=10))
    db.poll_finished(good, NOW - timedelta(minutes=9), ok=True, new_messages=2)
    for minutes in (120, 115):
        bad = db.poll_started(SETTINGS.account, NOW - timedelta(minutes=minutes))
        db.poll_finished(bad, NOW - timedelta(minutes=minutes), ok=False, new_messages=0,
                         error="IMAP login failed: the server refused the credentials")
    text, _ = parts(make(db, templates))
    assert "Last good poll: Mon 23 Nov 07:51" in text
    assert "! Polls this week: 3, of which 2 failed" in text
    assert ("! Poll error: IMAP login failed: the server refused the credentials. 2 times, "
            "the last on Mon 23 Nov 06:05.") in text


def test_health_flags_a_stale_last_poll(db: Store, templates: Templates) -> None:
    """With no successful poll the digest says so as a problem."""
    text, _ = parts(make(db, templates))
    assert "! Last good poll: None yet." in text


def test_health_reports_caps_reached(db: Store, templates: Templates) -> None:
    """Messages held by the hourly cap are counted under health."""
    for _ in range(2):
        hold(db, "connection_invitation", "hourly-cap", "the hourly cap of 20 is reached")
    text, _ = parts(make(db, templates))
    assert "! Reply cap: The hourly cap was reached and held 2 messages." in text


def test_health_shows_mode_and_redirect(db: Store, templates: Templates) -> None:
    """Health names the mode, per-kind modes and a redirect of every reply."""
    custom = settings(mode="review", modes={"linkedin_message": "shadow"},
                      redirect_all_to="test@careers.example.edu")
    text, _ = parts(make(db, templates, custom))
    assert "Mode: Review (replies wait for your approval)" in text
    assert "! Mode for LinkedIn message: Shadow" in text
    assert "Every reply goes to test@careers.example.edu instead of the person." in text


def test_chart_draws_eight_weeks_of_table_cells(db: Store, templates: Templates) -> None:
    """The chart has a row per week, bars as coloured cells, and counts by kind in text."""
    add(db, at=NOW - DAY)
    add(db, "linkedin_message", at=NOW - DAY)
    add(db, at=NOW - 50 * DAY)
    add(db, "not_linkedin", None, action="ignore", rule="not-linkedin", status=None)
    message = make(db, templates)
    markup = message.get_body(preferencelist=("html",))
    assert markup is not None
    bars = re.findall(r'<td width="(\d+)%" height="16" bgcolor="#[0-9a-f]{6}"',
                      markup.get_content())
    assert bars == ["100", "50", "50"]
    text, _ = parts(message)
    assert re.search(r"\n28 Sep +1  #{10} +\(Invitations 1\)\n", text)
    assert re.search(r"\nThis week +2  #{20}  \(Invitations 1, Messages 1\)", text)
    assert len(re.findall(r"^(?:\d+ \w{3}|This week) +\d+", text, re.MULTILINE)) == 8


def test_html_uses_no_script_svg_image_or_style_block(db: Store, templates: Templates) -> None:
    """The HTML part is tables and inline styles only, as Gmail and Outlook render them."""
    add(db)
    hold(db, "connection_invitation", "no-address", "no address")
    markup = make(db, templates).get_body(preferencelist=("html",))
    assert markup is not None
    content = markup.get_content().lower()
    for tag in ("<script", "<svg", "<img", "<style", "<link", "url("):
        assert tag not in content


def test_hostile_name_is_escaped_in_html(db: Store, templates: Templates) -> None:
    """A person's name that is markup reaches the HTML part as text only."""
    hostile = '<script>alert(1)</script><img src=x onerror="y">'
    add(db, name=hostile)
    hold(db, "connection_invitation", "no-address", "no address", name=hostile)
    markup = make(db, templates).get_body(preferencelist=("html",))
    assert markup is not None
    content = markup.get_content()
    assert "<script" not in content and "<img" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_required_headers(db: Store, templates: Templates) -> None:
    """The digest goes from the counselor to the counselor, marked as automatic."""
    message = make(db, templates)
    assert message["From"] == message["To"] == "Dana Whitfield <dana@careers.example.edu>"
    assert message["Date"] == "Mon, 23 Nov 2026 08:00:00 +0000"
    assert message["Message-ID"] == MESSAGE_ID
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message.get_content_type() == "multipart/alternative"


def test_no_message_text_reaches_the_digest(db: Store, templates: Templates) -> None:
    """Only the policy's own reason is shown: evidence that quotes a notification never is."""
    quote = "the text says “Dear Dana, my grades are”"
    add(db, action="hold", rule="no-address", status=None,
        reasons=("no address to reply to", quote))
    add(db, reasons=("answer it with its template", quote))
    for part in parts(make(db, templates)):
        assert "my grades" not in part


def test_one_template_words_both_parts(db: Store, tmp_path: Path) -> None:
    """A counselor's rewording of digest.j2 changes the text and the HTML part alike."""
    directory = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), directory)
    source = (directory / "digest.j2").read_text(encoding="utf-8")
    (directory / "digest.j2").write_text(source.replace('"Needs you"', '"Your to-do list"'),
                                         encoding="utf-8")
    for part in parts(make(db, Templates.load(directory))):
        assert "Your to-do list".upper() in part.upper() and "Needs you" not in part


def test_directory_without_digest_template_uses_the_shipped_one(db: Store,
                                                               tmp_path: Path) -> None:
    """An older template directory without digest.j2 still gets a digest."""
    directory = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), directory)
    (directory / "digest.j2").unlink()
    assert make(db, Templates.load(directory))["Subject"].startswith("Nothing needs you")


def test_preview_is_the_html_part(db: Store, templates: Templates) -> None:
    """``preview_html`` gives exactly the HTML that ``build`` sends."""
    add(db)
    data = digest.gather(db, SETTINGS, NOW)
    message = digest.build(data, templates, SETTINGS.counselor, now=NOW, message_id=MESSAGE_ID)
    markup = message.get_body(preferencelist=("html",))
    assert markup is not None
    assert digest.preview_html(data, templates, SETTINGS.counselor, NOW) == markup.get_content()


def test_sign_in_warning_shown_in_health(db: Store, templates: Templates) -> None:
    """A sign-in that ends soon appears in the health section of both parts."""
    data = dataclasses.replace(digest.gather(db, SETTINGS, NOW),
                               warnings=("The IMAP sign-in ends on 1 Dec; run modbot auth.",))
    message = digest.build(data, templates, SETTINGS.counselor, now=NOW, message_id="<d@x.edu>")
    text, visible = parts(message)
    assert "The IMAP sign-in ends on 1 Dec" in text
    assert "The IMAP sign-in ends on 1 Dec" in visible
