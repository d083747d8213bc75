"""The account's earlier replies as the policy sees them, from rows and the poll's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modbot.history import Answered, Past
from modbot.model import Classification, History, Kind, Person, Recipient
from modbot.store import Replied

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=180)
PROFILE = "https://www.linkedin.com/in/jordan-rivera-12345"


def invitation(profile: str | None = None, invitation_id: str | None = None) -> Classification:
    person = Person(name="Jordan Rivera", profile_url=profile, invitation_id=invitation_id)
    return Classification(Kind.CONNECTION_INVITATION, "test", person, None, ())


def to(email: str) -> Recipient:
    return Recipient("Jordan Rivera", email, "directory-csv")


def facts(answered: Answered, c: Classification, recipient: Recipient | None = None
          ) -> tuple[bool, bool, int, int]:
    h = answered.history(c, recipient, is_reply_to_our_mail=False)
    return h.replied_to_person, h.replied_to_invitation, h.replies_last_hour, h.replies_last_day


def test_nothing_answered() -> None:
    assert facts(Answered([], NOW, WINDOW), invitation(PROFILE, "7"), to("a@b.edu")) == \
        (False, False, 0, 0)


def test_address_matches_in_any_case() -> None:
    answered = Answered([Replied("JRivera@Students.example.edu", None, None, NOW)], NOW, WINDOW)
    assert facts(answered, invitation(), to("jrivera@students.example.edu"))[0]


def test_profile_matches_however_written() -> None:
    """A new relay address each message, but the same profile, is the same person."""
    answered = Answered([Replied("x@reply.linkedin.com", PROFILE + "?trk=abc", None,
                                 NOW - timedelta(days=3))], NOW, WINDOW)
    other_spelling = "http://linkedin.com/in/jordan-rivera-12345/"
    assert facts(answered, invitation(other_spelling), to("y@reply.linkedin.com"))[0]
    assert not facts(answered, invitation("https://www.linkedin.com/in/someone-else"))[0]


def test_person_window_ends() -> None:
    old = Replied("jrivera@students.example.edu", PROFILE, None, NOW - WINDOW - timedelta(1))
    answered = Answered([old], NOW, WINDOW)
    assert facts(answered, invitation(PROFILE), to("jrivera@students.example.edu")) == \
        (False, False, 0, 0)


def test_invitation_is_answered_once_however_long_ago() -> None:
    old = Replied("", None, "701", NOW - timedelta(days=900))  # address purged since
    assert facts(Answered([old], NOW, WINDOW), invitation(invitation_id="701"))[1]
    assert not facts(Answered([old], NOW, WINDOW), invitation(invitation_id="702"))[1]


def test_counts_in_the_last_hour_and_day() -> None:
    times = [NOW - timedelta(minutes=10), NOW - timedelta(hours=2), NOW - timedelta(days=2)]
    answered = Answered([Replied(f"p{i}@b.edu", None, None, t) for i, t in enumerate(times)],
                        NOW, WINDOW)
    assert facts(answered, invitation())[2:] == (1, 2)


def test_a_reply_added_during_the_poll_counts_at_once() -> None:
    answered = Answered([], NOW, WINDOW)
    answered.add(Replied("jrivera@students.example.edu", PROFILE, "701", NOW))
    assert facts(answered, invitation(PROFILE, "701"), to("JRIVERA@students.example.edu")) == \
        (True, True, 1, 1)


def test_shadow_reply_counts_only_for_shadow_decisions() -> None:
    """A reply decided in shadow mode answers the invitation for shadow mode, not for auto."""
    answered = Answered([Replied("jrivera@students.example.edu", PROFILE, "701",
                                 NOW - timedelta(minutes=5), shadow=True)], NOW, WINDOW)
    c, to_jordan = invitation(PROFILE, "701"), to("jrivera@students.example.edu")
    shadow = answered.history(c, to_jordan, is_reply_to_our_mail=False, shadow=True)
    assert (shadow.replied_to_person, shadow.replied_to_invitation) == (True, True)
    assert (shadow.replies_last_hour, shadow.replies_last_day) == (1, 1)
    assert facts(answered, c, to_jordan) == (False, False, 0, 0)


def test_real_reply_counts_for_shadow_decisions_too() -> None:
    """A reply sent before the switch to shadow mode still answers the person in shadow mode."""
    answered = Answered([Replied("jrivera@students.example.edu", None, "701", NOW)], NOW, WINDOW)
    h = answered.history(invitation(invitation_id="701"), None, is_reply_to_our_mail=False,
                         shadow=True)
    assert h.replied_to_invitation and h.replies_last_hour == 1


def message(kind: Kind = Kind.CONNECTION_INVITATION) -> Classification:
    return Classification(kind, "test", Person(name="Jordan Rivera", invitation_id="701"),
                          None, ())


def test_past_knows_nothing_by_default() -> None:
    """A message judged on its own has no history: the policy's facts are all empty."""
    assert Past().history(message(), to("a@b.edu"), ["<r1@counsel.example.edu>"]) == History()


def test_past_finds_answers_to_modbots_replies() -> None:
    """A message whose references name a reply modbot sent is an answer to modbot's mail,
    whatever its kind, and white space around an entry does not matter."""
    past = Past(our_message_ids=frozenset({"<r1@counsel.example.edu>"}))
    assert past.history(message(Kind.NOT_LINKEDIN), None,
                        ["<n1@linkedin.com>", " <r1@counsel.example.edu> "]).is_reply_to_our_mail
    assert not past.history(message(Kind.NOT_LINKEDIN), None,
                            ["<n1@linkedin.com>"]).is_reply_to_our_mail


def test_past_gives_replies_and_pause_only_to_kinds_with_a_reply() -> None:
    """The account's replies and its pause are facts for a kind that is answered, and left
    out for one that never is."""
    answered = Answered([Replied("jrivera@students.example.edu", None, "701", NOW)], NOW, WINDOW)
    past = Past(answered, paused_since=NOW)
    found = past.history(message(), to("jrivera@students.example.edu"), [])
    assert (found.replied_to_person, found.replied_to_invitation, found.replies_last_hour,
            found.paused_since) == (True, True, 1, NOW)
    assert past.history(message(Kind.OTHER_LINKEDIN), None, []) == History()


def test_past_pause_holds_without_replies_read() -> None:
    """Where no replies were read, the pause is still a fact of an answered kind."""
    assert Past(paused_since=NOW).history(message(), None, []).paused_since == NOW
