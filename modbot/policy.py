"""Decide what to do with a classified notification: reply, hold, log or ignore.

The policy is an ordered table of named rules read top to bottom; the first rule that fires
decides, and the last rule always fires. Each rule returns the action and a one-sentence reason,
so every decision can be explained later. Pure: facts from the store arrive in ``History``
(earlier replies, the caps' counts, whether a reached cap paused the replies), so a pause holds
a reply here like any other rule; this module must never touch the network, the database, the
environment or the clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modbot import words
from modbot.kinds import BY_KIND, DEFAULT_ACTIONS, REPLY_KINDS
from modbot.model import (
    CAP_RULES,
    Action,
    Authenticity,
    Classification,
    Decision,
    History,
    Kind,
    Mode,
    PolicyRule,
    Recipient,
    Resolution,
    Unresolved,
)

if TYPE_CHECKING:
    from modbot.config import PolicySettings  # pydantic only for whoever builds the settings

# How a configured action other than reply reads in a reason.
_CONFIGURED = {Action.HOLD: "held for you", Action.LOG: "only noted: it needs no answer",
               Action.IGNORE: "left alone"}


def mode_for(settings: PolicySettings, kind: Kind) -> Mode:
    """The mode replies of ``kind`` are made in: the kind's own, else the global one."""
    return Mode(settings.modes.get(kind, settings.mode))


@dataclass(frozen=True)
class Facts:
    """Everything the policy may look at for one notification."""

    classification: Classification
    authenticity: Authenticity
    resolution: Resolution
    history: History
    auto_submitted: str | None
    settings: PolicySettings

    @property
    def kind(self) -> Kind:
        return self.classification.kind

    @property
    def shadow(self) -> bool:
        """Whether a reply would only be recorded: then the history counts shadow replies too,
        so the shadow week decides exactly as automatic mode would."""
        return mode_for(self.settings, self.kind) is Mode.SHADOW

    def configured_action(self) -> Action:
        action = self.settings.actions.get(self.kind, DEFAULT_ACTIONS[self.kind])
        if action is Action.REPLY and self.kind not in REPLY_KINDS:
            return Action.HOLD  # only a kind with a reply template can be answered
        return action


Outcome = tuple[Action, str]
RuleTest = Callable[[Facts], Outcome | None]


def _already_handled(f: Facts) -> Outcome | None:
    if f.history.message_handled:
        return Action.IGNORE, "this message was handled before"
    return None


def _answer_to_modbot(f: Facts) -> Outcome | None:
    if not f.history.is_reply_to_our_mail or f.kind is not Kind.NOT_LINKEDIN:
        return None
    if f.auto_submitted and f.auto_submitted.strip().lower() != "no":
        return Action.LOG, "an automatic answer to modbot's mail is never answered (RFC 3834)"
    return Action.HOLD, "a person answered modbot's mail; only the counselor answers it"


def _not_linkedin(f: Facts) -> Outcome | None:
    if f.kind is Kind.NOT_LINKEDIN:
        return f.configured_action(), "not LinkedIn mail"
    return None


def _spoof(f: Facts) -> Outcome | None:
    if f.kind is Kind.SPOOFED_LINKEDIN:
        return f.configured_action(), ("pretends to come from LinkedIn but is shown not to; "
                                       "it is never answered")
    return None


def _configured(f: Facts) -> Outcome | None:
    action = f.configured_action()
    if action is Action.REPLY:
        return None
    # The classifying rule's words where it knows more than the kind: staff mail, not news.
    what = words.kind_phrase(f.kind.value, f.classification.rule)
    return action, f"as configured, {what} is {_CONFIGURED[action]}"


def _unverified(f: Facts) -> Outcome | None:
    if f.authenticity.authentic is not True:
        return Action.HOLD, "not proven to come from LinkedIn, so it is not answered"
    return None


def _no_address(f: Facts) -> Outcome | None:
    if isinstance(f.resolution, Unresolved):
        return Action.HOLD, f"no address to reply to: {f.resolution.reason}"
    return None


def _invitation_answered(f: Facts) -> Outcome | None:
    if f.history.replied_to_invitation:
        return Action.LOG, "this invitation was already answered (a reminder of the same one)"
    return None


def _person_answered(f: Facts) -> Outcome | None:
    if f.history.replied_to_person:
        days = f.settings.person_window_days
        return Action.LOG, f"this person was already answered in the last {days} days"
    return None


def _cap(f: Facts, period: str, cap: int) -> Outcome:
    if f.shadow:  # shadow mode starts no pause: it tells when automatic mode would
        return Action.HOLD, (f"in automatic mode the {period} cap of {cap} replies would be "
                             "reached here, and replies would pause")
    return Action.HOLD, f"the {period} cap of {cap} replies is reached; replies are paused"


def _hourly_cap(f: Facts) -> Outcome | None:
    cap = f.settings.max_replies_per_hour
    return _cap(f, "hourly", cap) if f.history.replies_last_hour >= cap else None


def _daily_cap(f: Facts) -> Outcome | None:
    cap = f.settings.max_replies_per_day
    return _cap(f, "daily", cap) if f.history.replies_last_day >= cap else None


def _paused(f: Facts) -> Outcome | None:
    if f.history.paused_since is None or f.shadow:  # shadow mode decides as if never paused
        return None
    return Action.HOLD, (f"replies are paused since {f.history.paused_since:%Y-%m-%d %H:%M} UTC "
                         "because a cap was reached; `modbot resume` starts them again")


def _reply(f: Facts) -> Outcome | None:
    return Action.REPLY, f"{words.kind_phrase(f.kind.value)} gets the standard reply"


P = PolicyRule
RULES: tuple[tuple[PolicyRule, RuleTest], ...] = (
    (P.ALREADY_HANDLED, _already_handled),
    (P.ANSWER_TO_MODBOT, _answer_to_modbot),
    (P.NOT_LINKEDIN, _not_linkedin),
    (P.SPOOFED_LINKEDIN, _spoof),
    (P.CONFIGURED_ACTION, _configured),
    (P.UNVERIFIED, _unverified),
    (P.NO_ADDRESS, _no_address),
    (P.INVITATION_ALREADY_ANSWERED, _invitation_answered),
    (P.PERSON_ALREADY_ANSWERED, _person_answered),
    (P.HOURLY_CAP, _hourly_cap),
    (P.DAILY_CAP, _daily_cap),
    (P.REPLIES_PAUSED, _paused),
    (P.REPLY, _reply),
)


def _reply_reasons(f: Facts) -> tuple[str, str]:
    """Why a reply is made, and where its address came from."""
    outcome = _reply(f)
    assert outcome is not None and isinstance(f.resolution, Recipient)
    return outcome[1], f"address from {f.resolution.source}"


def decide(facts: Facts) -> Decision:
    """Run the rule table and return the first rule's decision, with every reason behind it."""
    evidence = (*facts.classification.reasons, *facts.authenticity.reasons)
    for name, test in RULES:
        outcome = test(facts)
        if outcome is None:
            continue
        action, reason = outcome
        mode = mode_for(facts.settings, facts.kind)
        if name is P.REPLIES_PAUSED:  # the reply it holds back follows the pause's reason
            return Decision(action, name, (reason, *_reply_reasons(facts), *evidence))
        if action is not Action.REPLY:
            # A cap's hold carries the mode, so that a shadow-mode one starts no pause.
            return Decision(action, name, (reason, *evidence),
                            mode=mode if name in CAP_RULES else Mode.AUTO)
        assert isinstance(facts.resolution, Recipient)
        return Decision(action, name, (*_reply_reasons(facts), *evidence),
                        template=BY_KIND[facts.kind].reply_template,
                        recipient=facts.resolution, mode=mode)
    raise AssertionError("the last policy rule always decides")
