"""What a counselor reads names kinds, states and proofs in words, never by identifier."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modbot import classify, words
from modbot.cli import _print_report, app
from modbot.model import Action, Kind, PolicyRule
from modbot.poll import Handled, PollReport
from modbot.store import OutboxStatus

DATA = Path(__file__).parents[1] / "data"
IDENTIFIER = re.compile(r"\b[a-z]+_[a-z_]+\b")
PYTHON = ("None", "True", "False", "\\Seen", "[authentic", "Traceback", "<class")


def readable(text: str) -> None:
    """Fail if ``text`` shows an identifier, a Python value or an IMAP flag."""
    assert not IDENTIFIER.findall(text), IDENTIFIER.findall(text)
    for word in PYTHON:
        assert word not in text


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_has_a_label_and_a_phrase(kind: Kind) -> None:
    """Each kind is worded once, as a heading and inside a sentence."""
    label, phrase = words.KINDS[kind.value]
    assert words.kind_label(kind.value) == label and words.kind_phrase(kind.value) == phrase
    readable(f"{label} {phrase}")


def test_every_classifier_rule_has_words() -> None:
    """Each rule of the classifier says in words what it found, so no new rule falls back to its
    kind's wider words ("a LinkedIn job alert or news" for a LinkedIn employee's mail)."""
    rules = {rule.name: rule.kind.value for rule in (*classify.GUARDS, *classify.RULES)}
    missing = sorted(set(rules) - set(words.DETAILS))
    assert not missing, (
        f"classifier rules without words in modbot/words.py DETAILS: {', '.join(missing)}; "
        "add what each one means, in the words a counselor uses")
    for name in rules:
        readable(words.kind_phrase(rules[name], name))


@pytest.mark.parametrize(("rule", "phrase"), [
    ("linkedin_staff_mail", "a LinkedIn employee's own mail (not a notification)"),
    ("template_sign_up_nudge", "a LinkedIn sign-up reminder"),
    ("template_notification_digest", "a LinkedIn summary of new notifications"),
    ("template_unknown", "LinkedIn mail of a new kind modbot does not know yet"),
])
def test_newer_rules_say_what_the_mail_is(rule: str, phrase: str) -> None:
    """The rules for staff mail, sign-up reminders, notification summaries and unknown template
    keys name the mail as it is, not by its kind's wider words."""
    kind = next(r.kind.value for r in (*classify.GUARDS, *classify.RULES) if r.name == rule)
    assert words.kind_phrase(kind, rule) == phrase != words.kind_phrase(kind)


@pytest.mark.parametrize(("sample", "phrase"), [
    ("linkedin_staff_mail_m365.eml", "a LinkedIn employee's own mail (not a notification)"),
    ("signup_nudge_dropoffs.eml", "a LinkedIn sign-up reminder"),
    ("notification_digest_new_message.eml", "a LinkedIn summary of new notifications"),
])
def test_classify_gives_the_policy_the_rules_words(sample: str, phrase: str) -> None:
    """`modbot classify` on real-shaped mail gives the reason in the classifying rule's words."""
    result = CliRunner().invoke(app, ["classify", "--json", str(DATA / sample)])
    assert result.exit_code == 0, result.output
    assert f"as configured, {phrase} is" in result.output


@pytest.mark.parametrize("status", list(OutboxStatus))
def test_every_reply_state_is_worded(status: str) -> None:
    """Each outbox state a reply can be in reads as words."""
    assert status in words.STATUSES
    readable(words.action("reply", status))


def test_actions_and_proofs_are_worded() -> None:
    """Actions and the three outcomes of the proof of origin read as a counselor says them."""
    for action in Action:
        readable(words.action(action.value))
    assert words.authenticity(True) == "proven to come from LinkedIn"
    assert words.authenticity(None) == "not proven to come from LinkedIn"
    assert words.kind_phrase("other_linkedin", "phrase_jobs") == "a LinkedIn job alert"


def test_run_once_report_speaks_words(capsys: pytest.CaptureFixture[str]) -> None:
    """What `run-once` prints names each notification and its fate in words."""
    report = PollReport(new_messages=3, candidates=3)
    report.handled += [
        Handled(1, "other_linkedin", "log", PolicyRule.CONFIGURED_ACTION,
                ("as configured, ...",), None, None, None),
        Handled(2, "connection_invitation", "reply", "reply", ("a reason",), "Jordan Rivera",
                "jrivera@students.example.edu", OutboxStatus.SHADOW),
        Handled(3, "spoofed_linkedin", "hold", PolicyRule.SPOOFED_LINKEDIN, ("a reason",), None,
                None, None),
    ]
    _print_report(report)
    out = capsys.readouterr().out
    readable(out)
    assert "from Jordan Rivera: would be sent (shadow mode sends nothing)" in out
    assert f"{words.kind_phrase('other_linkedin')}: noted, no answer needed" in out
    assert f"{words.kind_phrase('spoofed_linkedin')}: held for you" in out


def test_classify_speaks_words() -> None:
    """`modbot classify` says the kind, whether LinkedIn sent it, and the action in words."""
    result = CliRunner().invoke(app, ["classify", str(DATA / "job_alert.eml")])
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[0].split(": ", 1)[1]
    readable(line)
    assert "LinkedIn job alerts and news" in line and "noted, no answer needed" in line


async def test_demo_output_speaks_words(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's account of its polls and its digest hold no identifier or Python value."""
    from modbot.demo import run_demo

    assert await run_demo() == 0
    out = capsys.readouterr().out
    readable(out.split("== What the SMTP server received ==")[0])
    readable(out.split("== Second poll")[1])
    assert "Fake LinkedIn mail: held for you" in out
    assert "Read and unread marks in the inbox left as they were: yes" in out
