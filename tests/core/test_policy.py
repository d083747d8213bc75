"""The policy rule table: each rule decides the case it names, with its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modbot.config import PolicySettings
from modbot.model import (
    Action,
    Authenticity,
    Classification,
    History,
    Kind,
    Mode,
    Person,
    PolicyRule,
    Recipient,
    Resolution,
    Unresolved,
    Verdict,
)
from modbot.policy import Facts, decide

AUTHENTIC = Authenticity(True, Verdict.AUTHENTIC, ("dkim=pass for linkedin.com",))
UNKNOWN = Authenticity(True, Verdict.UNKNOWN, ("no trusted evidence",))
JORDAN = Recipient("Jordan Rivera", "jrivera@students.example.edu", "directory-csv:name")


def facts(kind: Kind = Kind.CONNECTION_INVITATION, *, auth: Authenticity = AUTHENTIC,
          resolution: Resolution = JORDAN, history: History | None = None,
          settings: PolicySettings | None = None, auto_submitted: str | None = None) -> Facts:
    classification = Classification(kind, "test-rule", Person(name="Jordan Rivera"), None,
                                    ("classified for the test",))
    return Facts(classification, auth, resolution, history or History(), auto_submitted,
                 settings or PolicySettings(mode=Mode.AUTO))


def test_authentic_invitation_with_address_is_answered() -> None:
    """An authentic invitation whose inviter has an address gets the invitation template."""
    decision = decide(facts())
    assert decision.action is Action.REPLY
    assert decision.template == "connection_invitation"
    assert decision.recipient == JORDAN
    assert decision.mode is Mode.AUTO


@pytest.mark.parametrize(("kind", "action"), [
    (Kind.NOT_LINKEDIN, Action.IGNORE),
    (Kind.SPOOFED_LINKEDIN, Action.HOLD),
    (Kind.UNKNOWN_LINKEDIN, Action.HOLD),
    (Kind.OTHER_LINKEDIN, Action.LOG),
    (Kind.GROUP_ACTIVITY, Action.LOG),
    (Kind.LINKEDIN_MESSAGE, Action.REPLY),
    (Kind.GROUP_JOIN_REQUEST, Action.REPLY),
    (Kind.RECOMMENDATION_REQUEST, Action.REPLY),
])
def test_default_action_per_kind(kind: Kind, action: Action) -> None:
    """Each kind gets its documented default action."""
    assert decide(facts(kind)).action is action


def test_unverified_invitation_is_held() -> None:
    """An invitation whose origin cannot be confirmed is held, never answered."""
    decision = decide(facts(auth=UNKNOWN))
    assert decision.action is Action.HOLD
    assert decision.rule == PolicyRule.UNVERIFIED


def test_unresolved_person_is_held_with_reason() -> None:
    """An inviter with no address is held, and the reason says why."""
    decision = decide(facts(resolution=Unresolved("the person is not in the directory")))
    assert decision.action is Action.HOLD
    assert "not in the directory" in decision.reasons[0]


def test_reminder_of_answered_invitation_is_only_logged() -> None:
    """A reminder of an invitation already answered is logged, not answered again."""
    decision = decide(facts(history=History(replied_to_invitation=True)))
    assert decision.action is Action.LOG
    assert decision.rule == PolicyRule.INVITATION_ALREADY_ANSWERED


def test_person_answered_recently_is_only_logged() -> None:
    """A person answered within the window is not answered again."""
    assert decide(facts(history=History(replied_to_person=True))).action is Action.LOG


def test_hourly_cap_holds() -> None:
    """Once the hourly cap is reached, further replies are held."""
    settings = PolicySettings(mode=Mode.AUTO, max_replies_per_hour=3)
    decision = decide(facts(history=History(replies_last_hour=3), settings=settings))
    assert (decision.action, decision.rule) == (Action.HOLD, PolicyRule.HOURLY_CAP)


def test_daily_cap_holds() -> None:
    """Once the daily cap is reached, further replies are held."""
    settings = PolicySettings(mode=Mode.AUTO, max_replies_per_day=5)
    decision = decide(facts(history=History(replies_last_day=5), settings=settings))
    assert (decision.action, decision.rule) == (Action.HOLD, PolicyRule.DAILY_CAP)


def test_handled_message_is_ignored() -> None:
    """A message handled before is ignored whatever it is."""
    assert decide(facts(history=History(message_handled=True))).action is Action.IGNORE


def test_answer_to_modbot_is_held() -> None:
    """A person's answer to modbot's own mail is held for the counselor."""
    decision = decide(facts(Kind.NOT_LINKEDIN, history=History(is_reply_to_our_mail=True)))
    assert (decision.action, decision.rule) == (Action.HOLD, PolicyRule.ANSWER_TO_MODBOT)


def test_automatic_answer_to_modbot_is_only_logged() -> None:
    """An auto-reply to modbot's mail is never answered (RFC 3834) and needs no human."""
    decision = decide(facts(Kind.NOT_LINKEDIN, history=History(is_reply_to_our_mail=True),
                            auto_submitted="auto-replied"))
    assert decision.action is Action.LOG


def test_configured_action_overrides_default() -> None:
    """A per-kind action in the configuration replaces the default."""
    settings = PolicySettings(mode=Mode.AUTO, actions={Kind.GROUP_JOIN_REQUEST: Action.HOLD})
    assert decide(facts(Kind.GROUP_JOIN_REQUEST, settings=settings)).action is Action.HOLD


def test_per_kind_mode() -> None:
    """A per-kind mode decides how far that kind's replies go."""
    settings = PolicySettings(mode=Mode.AUTO, modes={Kind.CONNECTION_INVITATION: Mode.REVIEW})
    assert decide(facts(settings=settings)).mode is Mode.REVIEW


def test_reply_cannot_be_configured_for_kinds_without_template() -> None:
    """Asking to reply to spoofs or other mail holds them instead."""
    settings = PolicySettings(mode=Mode.AUTO, actions={Kind.OTHER_LINKEDIN: Action.REPLY})
    assert decide(facts(Kind.OTHER_LINKEDIN, settings=settings)).action is Action.HOLD


def test_default_mode_is_shadow() -> None:
    """A configuration that says nothing about mode decides in shadow mode."""
    assert PolicySettings().mode is Mode.SHADOW
    assert decide(facts(settings=PolicySettings())).mode is Mode.SHADOW


def test_shadow_cap_tells_what_auto_would_do_and_pauses_nothing() -> None:
    """In shadow mode a reached cap holds as automatic mode would, marked shadow, so no pause
    starts and the reason says it is a prediction."""
    settings = PolicySettings(mode=Mode.SHADOW, max_replies_per_hour=3)
    decision = decide(facts(history=History(replies_last_hour=3), settings=settings))
    assert (decision.action, decision.rule, decision.mode) == (Action.HOLD, PolicyRule.HOURLY_CAP,
                                                               Mode.SHADOW)
    assert decision.reasons[0].startswith("in automatic mode the hourly cap of 3 replies would")


@pytest.mark.parametrize(("kind", "reason"), [
    (Kind.OTHER_LINKEDIN, "as configured, a LinkedIn job alert or news is only noted: it needs "
                          "no answer"),
    (Kind.CONNECTION_INVITATION, "a connection invitation gets the standard reply"),
])
def test_reasons_speak_a_counselors_words(kind: Kind, reason: str) -> None:
    """The policy's own reason names the kind in words, never by its identifier."""
    assert decide(facts(kind)).reasons[0] == reason


PAUSED = History(paused_since=datetime(2026, 11, 23, 9, 30, tzinfo=UTC))


def test_pause_holds_a_reply_with_the_reply_behind_it() -> None:
    """While a cap's pause holds, a reply becomes a hold whose first reason names the pause and
    whose next ones say what reply it holds back and where its address came from."""
    decision = decide(facts(history=PAUSED))
    assert decision.action is Action.HOLD
    assert decision.rule == PolicyRule.REPLIES_PAUSED
    assert decision.recipient is None
    assert decision.reasons[:3] == (
        "replies are paused since 2026-11-23 09:30 UTC because a cap was reached; "
        "`modbot resume` starts them again",
        "a connection invitation gets the standard reply",
        "address from directory-csv:name",
    )


def test_pause_leaves_shadow_mode_deciding_as_before() -> None:
    """Shadow mode starts no pause and is held by none: it still predicts the reply."""
    decision = decide(facts(history=PAUSED, settings=PolicySettings(mode=Mode.SHADOW)))
    assert decision.action is Action.REPLY
    assert decision.mode is Mode.SHADOW


def test_pause_changes_nothing_that_is_not_a_reply() -> None:
    """A message that would not be answered anyway keeps its own rule under a pause."""
    history = History(paused_since=PAUSED.paused_since, replied_to_person=True)
    assert decide(facts(history=history)).rule == PolicyRule.PERSON_ALREADY_ANSWERED
    assert decide(facts(Kind.OTHER_LINKEDIN, history=PAUSED)).rule == \
        PolicyRule.CONFIGURED_ACTION


def test_cap_reached_while_paused_is_the_cap() -> None:
    """A reached cap still decides as the cap, before the pause it has already started."""
    history = History(paused_since=PAUSED.paused_since, replies_last_hour=10_000)
    assert decide(facts(history=history)).rule == PolicyRule.HOURLY_CAP
