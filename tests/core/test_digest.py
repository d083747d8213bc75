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
from modbot.config import Account
from modbot.model import PolicyRule
from modbot.render import Templates, default_templates_dir
from modbot.store import OutboxStatus, Store, schema

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CONTACT = "careers.example.edu/appointments"
MESSAGE_ID = "<digest-1@careers.example.edu>"


def settings(**policy: Any) -> Account:
    return config.parse({
        "counselor": {"name": "Dana Whitfield", "email": "dana@careers.example.edu",
                      "confidential_contact": CONTACT},
        "imap": {"host": "imap.example.edu", "username": "dana"},
        "smtp": {"host": "smtp.example.edu"},
        "policy": {"mode": "auto", **policy},
    }, resolve_secrets=False).first


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
        status: str | None = OutboxStatus.SENT, error: str | None = None,
        authentic: bool | None = True, profile_url: str | None = None) -> int:
    """Record one message as a poll would, its reply marked ``status``; return the message row."""
    key = next(_keys)
    row = store.MessageRecord(**{
        "account": "dana@imap.example.edu", "message_key": f"k{key}", "folder": "INBOX",
        "uidvalidity": 1, "uid": key, "seen_at": at, "kind": kind, "authentic": authentic,
        "classify_rule": "template-key", "person_name": name, "profile_url": profile_url,
        "invitation_id": None, "address_source": None, "action": action, "policy_rule": rule,
        "reasons": tuple(reasons), "error": None,
    })
    reply = None if action != "reply" else store.ReplyRecord(**{
        "message_id": f"<r{key}@careers.example.edu>", "template": kind, "recipient_name": name,
        "recipient_email": f"s{key}@students.example.edu", "redirected_to": None,
        "status": OutboxStatus.QUEUED, "created_at": at,
    })
    item = db.record(row, reply)
    if item is not None and status is not None:
        db.mark(item, status, now=at + timedelta(minutes=1), error=error)
    return key


def hold(db: Store, kind: str, rule: str, reason: str, **kwargs: Any) -> int:
    return add(db, kind, action="hold", rule=rule, reasons=(reason,), status=None, **kwargs)


def polled(db: Store, at: datetime = NOW - timedelta(minutes=5), *, ok: bool = True,
           error: str | None = None) -> None:
    """Record one poll of the inbox, finished at ``at``."""
    row = db.poll_started(SETTINGS.account, at - timedelta(seconds=1))
    db.poll_finished(row, at, ok=ok, new_messages=0, error=error)


def make(db: Store, templates: Templates, settings_: Account = SETTINGS, *,
         healthy: bool = True, reference: str | None = None) -> EmailMessage:
    """The digest at NOW; ``healthy``: after a good poll five minutes before."""
    if healthy:
        polled(db)
    data = digest.gather(db, settings_, NOW)
    return digest.build(data, templates, settings_.counselor, now=NOW, message_id=MESSAGE_ID,
                        reference=reference)


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain text, and the HTML reduced to its visible text with entities decoded."""
    text, markup = (message.get_body(preferencelist=(subtype,)) for subtype in ("plain", "html"))
    assert isinstance(text, EmailMessage) and isinstance(markup, EmailMessage)
    visible = html.unescape(re.sub(r"<[^>]+>", " ", markup.get_content()))
    return text.get_content(), " ".join(visible.split())


def test_no_address_item_has_reason_and_paste_text(db: Store, templates: Templates) -> None:
    """A held invitation without an address shows its reason and the reply to paste."""
    hold(db, "connection_invitation", PolicyRule.NO_ADDRESS,
         "no address to reply to: no one in the directory has this name", name="Jordan Rivera")
    for part in parts(make(db, templates)):
        assert "No address to reply to: no one in the directory has this name." in part
        assert "Reply to paste into LinkedIn" in part
        assert "Hello Jordan Rivera," in part and CONTACT in part


def test_paste_text_is_plain_lines_in_the_text_part(db: Store, templates: Templates) -> None:
    """The text part gives the reply unindented, between rules, ready to copy."""
    hold(db, "linkedin_message", PolicyRule.NO_ADDRESS, "no address to reply to",
         name="Jordan Rivera")
    text, _ = parts(make(db, templates))
    pasted = text.split("-" * 60)[1]
    assert pasted.startswith("\nHello Jordan Rivera,\n\nThank you for your message")


def test_spoof_is_listed_without_paste_text(db: Store, templates: Templates) -> None:
    """A spoof needs the counselor but gets no reply to paste."""
    hold(db, "spoofed_linkedin", PolicyRule.SPOOFED_LINKEDIN,
         "pretends to come from LinkedIn but is shown not to; it is never answered",
         authentic=False)
    text, visible = parts(make(db, templates))
    assert "Fake LinkedIn mail" in visible
    assert "Pretends to come from LinkedIn but is shown not to; it is never answered." in text
    assert "paste" not in text


def test_profile_link_only_from_authentic_linkedin(db: Store, templates: Templates) -> None:
    """A profile link is shown for authentic mail only, and only to www.linkedin.com."""
    hold(db, "connection_invitation", PolicyRule.NO_ADDRESS, "no address",
         profile_url="https://www.linkedin.com/in/jordan")
    hold(db, "spoofed_linkedin", PolicyRule.SPOOFED_LINKEDIN, "a spoof", authentic=False,
         profile_url="https://www.linkedin.com/in/spoof")
    hold(db, "connection_invitation", PolicyRule.NO_ADDRESS, "no address",
         profile_url="https://linkedin.example.net/in/lure")
    text, _ = parts(make(db, templates))
    assert "https://www.linkedin.com/in/jordan" in text
    assert "/in/spoof" not in text and "lure" not in text


@pytest.mark.parametrize(("status", "label"), [
    (OutboxStatus.UNCERTAIN, "May have been sent"),
    (OutboxStatus.FAILED, "Reply not sent"),
    (OutboxStatus.REVIEW, "Waiting for your approval"),
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
    add(db, name="Chloe Dubois", status=OutboxStatus.REVIEW)
    text, _ = parts(make(db, templates))
    assert ("[#1 · Waiting for your approval] Chloe Dubois (Connection invitation, Sun 22 Nov)"
            "\nThe reply is ready and waits for your approval.") in text


def test_answer_to_modbot_is_listed(db: Store, templates: Templates) -> None:
    """A person's answer to modbot's mail is listed for the counselor."""
    hold(db, "not_linkedin", PolicyRule.ANSWER_TO_MODBOT,
         "a person answered modbot's mail; only the counselor answers it", name=None)
    _, visible = parts(make(db, templates))
    assert "A person answered modbot" in visible
    assert "A person answered modbot's mail; only the counselor answers it." in visible


def test_items_stay_listed_until_resolved(db: Store, templates: Templates) -> None:
    """An old unresolved item is listed; a resolved one is not."""
    hold(db, "unknown_linkedin", PolicyRule.CONFIGURED_ACTION, "held", name="Old Item",
         at=NOW - 40 * DAY)
    done = hold(db, "unknown_linkedin", PolicyRule.CONFIGURED_ACTION, "held", name="Closed Item")
    with db.transaction() as c:
        c.execute(schema.messages.update().where(schema.messages.c.uid == done)
                  .values(resolved_at=NOW))
    text, _ = parts(make(db, templates))
    assert "Old Item" in text and "Closed Item" not in text


def test_subject_counts_what_needs_the_counselor(db: Store, templates: Templates) -> None:
    """The subject says how many items need the counselor; fake mail, needing only deleting,
    is counted apart."""
    assert make(db, templates)["Subject"].startswith("Nothing needs you")
    hold(db, "spoofed_linkedin", PolicyRule.SPOOFED_LINKEDIN, "a spoof")
    assert make(db, templates)["Subject"].startswith("1 fake LinkedIn email to delete")
    hold(db, "unknown_linkedin", PolicyRule.CONFIGURED_ACTION, "unknown")
    assert make(db, templates)["Subject"].startswith("1 item needs you")
    hold(db, "unknown_linkedin", PolicyRule.CONFIGURED_ACTION, "unknown")
    assert make(db, templates)["Subject"].startswith("2 items need you")


# --- modbot's own troubles come first ---------------------------------------------------------


@pytest.mark.parametrize(("setup", "title"), [
    ("fresh", "modbot has not read your inbox yet — tell IT"),
    ("failing", "modbot could not read your inbox this week — tell IT"),
    ("stopped", "modbot has not checked your inbox since Sun 22 Nov 08:00 — tell IT"),
    ("flaky", "modbot often could not read your inbox this week — tell IT"),
    ("paused", "Automatic replies are paused — a reply cap was reached"),
], ids=lambda value: value if value.isalpha() else "")
def test_trouble_names_the_digest_and_leads_needs_you(db: Store, templates: Templates,
                                                      setup: str, title: str) -> None:
    """Failed or missing polls and a paused cap go first: in the subject, the headline and
    the top of "Needs you", never under a green "Nothing needs you"."""
    error = "IMAP login failed: the server refused the credentials"
    if setup == "failing":
        polled(db, NOW - 3 * DAY)
        for hours in (30, 2):
            polled(db, NOW - timedelta(hours=hours), ok=False, error=error)
    elif setup == "stopped":
        polled(db, NOW - DAY)
    elif setup == "flaky":
        polled(db, NOW - timedelta(hours=2), ok=False, error=error)
        polled(db)
    elif setup == "paused":
        polled(db)
        db.start_pause(SETTINGS.account, "the hourly cap of 20 replies is reached; replies are "
                       "paused", NOW - DAY, "<alert@careers.example.edu>")
    message = make(db, templates, healthy=False, reference="ab" * 16)
    assert message["Subject"] == f"{title} – modbot weekly digest, 16–23 Nov 2026"
    text, visible = parts(message)
    assert text.startswith(f"{title}\n")
    assert text.split("NEEDS YOU", 1)[1].split("\n")[3] == f"[modbot itself] {title}"
    assert "Nothing needs you" not in visible and "Nothing is waiting" not in visible
    if setup in ("failing", "flaky"):
        assert f"The last error: {error}." in text
    if setup == "paused":
        assert "answer this email with the word resume" in text


def test_problem_and_items_share_the_subject(db: Store, templates: Templates) -> None:
    """With a problem and held items the subject names the problem, then counts the items."""
    hold(db, "unknown_linkedin", PolicyRule.CONFIGURED_ACTION, "unknown")
    subject = make(db, templates, healthy=False)["Subject"]
    assert subject.startswith("modbot has not read your inbox yet — tell IT · 1 item needs you")


def test_sign_in_ending_soon_is_a_problem(db: Store, templates: Templates) -> None:
    """A sign-in that ends soon is told first, with its own sentence, as well as under Health."""
    polled(db)
    data = dataclasses.replace(digest.gather(db, SETTINGS, NOW),
                               warnings=("The IMAP sign-in ends on 1 Dec; run modbot auth.",))
    message = digest.build(data, templates, SETTINGS.counselor, now=NOW, message_id=MESSAGE_ID)
    assert message["Subject"].startswith("modbot's sign-in to your mailbox ends soon — tell IT")
    text, _ = parts(message)
    assert ("The IMAP sign-in ends on 1 Dec; run modbot auth. Forward this email to your IT "
            "contact.") in text


def test_a_good_week_says_so_in_green(db: Store, templates: Templates) -> None:
    """Only a week with fresh good polls and nothing held reads "Nothing needs you"."""
    text, _ = parts(make(db, templates))
    assert text.startswith("Nothing needs you\n")
    assert "Nothing is waiting for you, and modbot read your inbox all week." in text
    markup = make(db, templates).get_body(preferencelist=("html",))
    assert markup is not None and "#067647" in markup.get_content().split("</td>", 1)[0]


# --- numbered items, in the order of what needs doing -----------------------------------------


def row_of(db: Store, uid: int) -> int:
    """The message row (the item's number) of the message recorded with ``uid``."""
    with db.transaction() as c:
        return int(c.execute(schema.messages.select().with_only_columns(schema.messages.c.id)
                             .where(schema.messages.c.uid == uid)).scalar_one())


def test_items_are_numbered_as_held_and_resolve_name_them(db: Store,
                                                         templates: Templates) -> None:
    """Each item shows the number that `modbot held`, `modbot resolve` and an answer use."""
    first = row_of(db, hold(db, "unknown_linkedin", PolicyRule.CONFIGURED_ACTION, "held",
                            name="Kim Ito"))
    text, visible = parts(make(db, templates, reference="cd" * 16))
    assert f"[#{first} · LinkedIn mail of an unknown kind] Kim Ito" in text
    assert f'such as "resolve {first}", or "resolve all"' in text
    assert f"Reference MR-{'cd' * 16}" in text and f"Reference MR-{'cd' * 16}" in visible
    assert digest.listed(digest.gather(db, SETTINGS, NOW)) == [first]


def test_items_with_something_to_do_come_first(db: Store, templates: Templates) -> None:
    """A reply to paste or one that may have been sent comes before reading and deciding, and a
    fake notification, with nothing to do but delete it, comes last."""
    hold(db, "spoofed_linkedin", PolicyRule.SPOOFED_LINKEDIN, "a spoof", name="Fake Sender",
         at=NOW - 3 * DAY)
    hold(db, "unknown_linkedin", PolicyRule.CONFIGURED_ACTION, "held", name="Unknown Kind",
         at=NOW - 3 * DAY)
    hold(db, "not_linkedin", PolicyRule.ANSWER_TO_MODBOT, "a person answered", name="Answer Person")
    hold(db, "connection_invitation", PolicyRule.NO_ADDRESS, "no address", name="Paste Person")
    add(db, name="Maybe Sent", status=OutboxStatus.UNCERTAIN, error="the line was lost")
    text, _ = parts(make(db, templates))
    order = [text.index(name) for name in
             ("Maybe Sent", "Paste Person", "Answer Person", "Unknown Kind", "Fake Sender")]
    assert order == sorted(order)
    spoof = text[text.index("Fake Sender"):]
    assert "Nothing to do — delete it." in spoof.split("\n\n")[0]
    paste = text[text.index("Paste Person"):]
    assert "Paste the reply below into LinkedIn, then resolve this item." in paste


def test_a_reply_that_may_have_been_sent_can_be_pasted(db: Store, templates: Templates) -> None:
    """Where the Sent folder lacks it, the counselor pastes the reply: the digest gives it."""
    add(db, name="Maybe Sent", status=OutboxStatus.UNCERTAIN, error="the line was lost")
    text, _ = parts(make(db, templates))
    assert "Look in your Sent folder for this reply." in text
    assert "Hello Maybe Sent," in text


# --- words a counselor uses -------------------------------------------------------------------


def test_no_identifier_or_python_reaches_the_counselor(db: Store, templates: Templates) -> None:
    """Kinds, states and authenticity are words: no identifier, None or class name is shown."""
    for kind in ("other_linkedin", "group_activity", "unknown_linkedin", "spoofed_linkedin",
                 "recommendation_request", "group_join_request", "linkedin_message"):
        hold(db, kind, PolicyRule.CONFIGURED_ACTION, "held", authentic=None)
        add(db, kind, "Some One", action="log", rule=PolicyRule.CONFIGURED_ACTION, status=None)
    add(db, status=OutboxStatus.SHADOW)
    add(db, status=OutboxStatus.FAILED, error="the server said no")
    for part in parts(make(db, templates, settings(mode="shadow"))):
        assert not re.search(r"\b[a-z]+_[a-z_]+\b", part), re.findall(r"\b[a-z]+_[a-z_]+\b", part)
        for word in ("None", "True", "False", "\\Seen", "authentic:", "Error:", "Exception"):
            assert word not in part


# --- a phone's screen -------------------------------------------------------------------------


def widths(markup: str) -> list[int]:
    """Every fixed width in pixels the HTML sets, in attributes and in inline styles."""
    found = re.findall(r'\bwidth="(\d+)"', markup)
    found += re.findall(r"(?<![-\w])(?:min-)?width:\s*(\d+)px", markup)
    return [int(value) for value in found]


def test_html_fits_a_400_pixel_screen(db: Store, templates: Templates) -> None:
    """Nothing in the HTML is fixed wider than a narrow column: the card is fluid, up to 640 px,
    so it lays out on a 400 px phone; long lines and links wrap."""
    hold(db, "connection_invitation", PolicyRule.NO_ADDRESS, "no address", name="Jordan Rivera",
         profile_url="https://www.linkedin.com/in/" + "a" * 120)
    add(db, name="Ana Lima")
    markup = make(db, templates).get_body(preferencelist=("html",))
    assert markup is not None
    content = markup.get_content()
    assert max(widths(content)) <= 100
    assert "max-width:640px" in content and 'width="640"' not in content
    assert content.count("overflow-wrap:anywhere") >= 3


def test_chart_writes_its_numbers_out(db: Store, templates: Templates) -> None:
    """Each week's bar is followed by its counts in words, so no colour has to be told apart."""
    add(db, at=NOW - DAY)
    add(db, "linkedin_message", at=NOW - DAY)
    hold(db, "spoofed_linkedin", PolicyRule.SPOOFED_LINKEDIN, "a spoof", at=NOW - DAY)
    _, visible = parts(make(db, templates))
    assert "Invitations 1 · Messages 1 · Fake or unknown 1" in visible


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (not installed in CI)")
def test_chromium_lays_the_digest_out_within_400_pixels(db: Store, templates: Templates,
                                                        tmp_path: Path) -> None:
    """Headless Chromium at 400 px wide lays the page out no wider than the screen."""
    import subprocess

    hold(db, "connection_invitation", PolicyRule.NO_ADDRESS, "no address", name="Jordan Rivera",
         profile_url="https://www.linkedin.com/in/" + "a" * 120)
    for week in range(8):
        add(db, at=NOW - week * 7 * DAY - DAY)
    data = digest.gather(db, SETTINGS, NOW)
    page = tmp_path / "digest.html"
    page.write_text(digest.preview_html(data, templates, SETTINGS.counselor, NOW),
                    encoding="utf-8")
    assert CHROMIUM is not None
    # Headless Chromium keeps its window at least 500 px wide when it prints the DOM, so the
    # body is held to 400 px and the right edge of every element laid out is measured; the
    # printed DOM carries the result.
    probe = page.read_text(encoding="utf-8").replace(
        '<body style="', '<body style="width:400px;', 1).replace(
        "</body>", '<p id="w"></p><script>document.getElementById("w").textContent = "W=" + '
        "Math.ceil(Math.max(...Array.from(document.body.querySelectorAll('*'), "
        "e => e.getBoundingClientRect().right)));</script></body>")
    (tmp_path / "probe.html").write_text(probe, encoding="utf-8")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=400,2000",
         "--dump-dom", (tmp_path / "probe.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"W=(\d+)", result.stdout)
    assert found, result.stderr[-500:]
    assert int(found.group(1)) <= 400


def test_sent_replies_by_kind_with_names(db: Store, templates: Templates) -> None:
    """Replies sent this week are grouped by kind with the people's names."""
    add(db, name="Ana Lima")
    add(db, name="Liam Chen")
    add(db, "group_join_request", name="Grace Park")
    add(db, name="Last Week", at=NOW - 9 * DAY)
    text, _ = parts(make(db, templates))
    assert "Connection invitation (2): Ana Lima, Liam Chen" in text
    assert "Request to join your group (1): Grace Park" in text
    assert "Last Week" not in text


def test_long_name_lists_are_cut_with_a_count(db: Store, templates: Templates) -> None:
    """Beyond twelve names per kind the rest are counted, not listed."""
    for number in range(14):
        add(db, name=f"Student {number:02}")
    text, _ = parts(make(db, templates))
    assert "Student 11 and 2 more\n" in text and "Student 12" not in text


def test_shadow_replies_would_have_been_sent(db: Store, templates: Templates) -> None:
    """Shadow-mode replies are shown as replies that would have been sent."""
    add(db, name="Ana Lima", status=OutboxStatus.SHADOW)
    text, _ = parts(make(db, templates, settings(mode="shadow")))
    assert "Would have been sent (shadow mode):\nConnection invitation (1): Ana Lima" in text
    assert "Replies sent" not in text
    assert "Shadow mode: nothing was sent." in text


def test_logged_counts_by_kind(db: Store, templates: Templates) -> None:
    """Messages logged without a reply are counted by kind."""
    for _ in range(3):
        add(db, "other_linkedin", None, action="log", rule=PolicyRule.CONFIGURED_ACTION,
            status=None)
    add(db, "group_activity", None, action="log", rule=PolicyRule.CONFIGURED_ACTION, status=None)
    text, _ = parts(make(db, templates))
    assert "LinkedIn group news: 1 message\nLinkedIn job alerts and news: 3 messages" in text


def test_health_shows_polls_and_their_errors(db: Store, templates: Templates) -> None:
    """Health gives the last good poll and each failed poll's error once, with a count."""
    good = db.poll_started(SETTINGS.account, NOW - timedelta(minutes=10))
    db.poll_finished(good, NOW - timedelta(minutes=9), ok=True, new_messages=2)
    for minutes in (120, 115):
        bad = db.poll_started(SETTINGS.account, NOW - timedelta(minutes=minutes))
        db.poll_finished(bad, NOW - timedelta(minutes=minutes), ok=False, new_messages=0,
                         error="IMAP login failed: the server refused the credentials")
    text, _ = parts(make(db, templates, healthy=False))
    assert "Last good check of your inbox: Mon 23 Nov 07:51" in text
    assert "! Checks this week: 3, of which 2 failed" in text
    assert ("! Error: IMAP login failed: the server refused the credentials. 2 times, "
            "the last on Mon 23 Nov 06:05.") in text


def test_health_flags_a_stale_last_poll(db: Store, templates: Templates) -> None:
    """With no successful poll the digest says so as a problem."""
    text, _ = parts(make(db, templates, healthy=False))
    assert "! Last good check of your inbox: None yet." in text


def test_health_counts_the_directory_rows_skipped(db: Store, templates: Templates,
                                                   tmp_path: Path) -> None:
    """Rows of the directory export the polls skip (no name, no plain address) are counted
    under health, and IT is pointed to `modbot check`, which names them by line."""
    from modbot.config import DirectorySettings
    from modbot.daemon import directory_skipped
    from modbot.poll import Context

    csv = tmp_path / "directory.csv"
    csv.write_text("name,email,linkedin_url\nAna Lima,alima@students.example.edu,\n"
                   ",nobody@students.example.edu,\nKim Ito,,\nLee Park,not an address,\n",
                   encoding="utf-8")
    settings_ = SETTINGS.model_copy(update={"directory": DirectorySettings(csv=csv)})
    ctx = Context.build(settings_, store_=db, dkim_lookup=None)
    assert directory_skipped(ctx) == 3
    polled(db)
    data = digest.gather(db, settings_, NOW, directory_skipped=directory_skipped(ctx))
    message = digest.build(data, templates, settings_.counselor, now=NOW, message_id=MESSAGE_ID)
    text, visible = parts(message)
    said = ("3 rows of the directory were skipped, so modbot cannot find those people — IT "
            "sees which with modbot check.")
    assert f"! Directory: {said}" in text and said in visible
    assert str(message["Subject"]).startswith("Nothing needs you")  # health, not a problem


def test_health_says_nothing_of_a_clean_directory(db: Store, templates: Templates) -> None:
    """Without skipped rows (or without a directory) health has no directory line."""
    assert digest.skipped_rows(None) == 0
    text, _ = parts(make(db, templates))
    assert "Directory:" not in text


def test_health_reports_caps_reached(db: Store, templates: Templates) -> None:
    """Messages held by the hourly cap are counted under health."""
    for _ in range(2):
        hold(db, "connection_invitation", PolicyRule.HOURLY_CAP, "the hourly cap of 20 is reached")
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
    add(db, "not_linkedin", None, action="ignore", rule=PolicyRule.NOT_LINKEDIN, status=None)
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
    hold(db, "connection_invitation", PolicyRule.NO_ADDRESS, "no address")
    markup = make(db, templates).get_body(preferencelist=("html",))
    assert markup is not None
    content = markup.get_content().lower()
    for tag in ("<script", "<svg", "<img", "<style", "<link", "url("):
        assert tag not in content


def test_hostile_name_is_escaped_in_html(db: Store, templates: Templates) -> None:
    """A person's name that is markup reaches the HTML part as text only."""
    hostile = '<script>alert(1)</script><img src=x onerror="y">'
    add(db, name=hostile)
    hold(db, "connection_invitation", PolicyRule.NO_ADDRESS, "no address", name=hostile)
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
    add(db, action="hold", rule=PolicyRule.NO_ADDRESS, status=None,
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
