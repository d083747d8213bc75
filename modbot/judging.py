"""The pure stages wired together for one message: parse → authenticity → classify → recipients
→ policy, giving a ``Judgement``.

No network, database or clock: what the store knew comes in as a value (``history.Past``, read
once per batch by the poll) and the DKIM key lookup through ``dkim_lookup``. A message that
breaks a stage becomes a held judgement with a one-sentence reason, never an exception.
``modbot.poll`` imports this module only when there is mail to judge, so a poll with nothing
new never loads the parsing and checking libraries. This module must never log message content.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modbot import authenticity, classify, parse
from modbot.config import PolicySettings
from modbot.directory.index import Directory
from modbot.history import Past
from modbot.kinds import REPLY_KINDS
from modbot.model import (
    HEADER_LIMIT,
    Action,
    Authenticity,
    Classification,
    ClassifierRule,
    Decision,
    Kind,
    Mode,
    Person,
    PolicyRule,
    Recipient,
    Summary,
    Unresolved,
    Verdict,
)
from modbot.policy import Facts, decide, mode_for
from modbot.recipients import find_address
from modbot.triage import references

DnsLookup = Callable[[bytes], bytes | None]
NOTHING_KNOWN = Past()


@dataclass(frozen=True)
class Judgement:
    """What the pure stages made of one message."""

    message_id: str | None
    authenticity: Authenticity
    classification: Classification
    decision: Decision
    address_source: str | None
    error: str | None = None


def held(rule: str, reason: str, *, classified_by: str | None = None) -> Judgement:
    """A judgement that holds a message for the counselor without having read it through."""
    unknown = Authenticity(False, Verdict.UNKNOWN, ())
    classification = Classification(Kind.UNKNOWN_LINKEDIN, classified_by or rule, Person(),
                                    None, ())
    return Judgement(None, unknown, classification, Decision(Action.HOLD, rule, (reason,)),
                     None, error=reason)


def judge(raw: bytes, policy: PolicySettings, directory: Directory | None,
          dkim_lookup: DnsLookup | None, rules: Sequence[classify.Rule] = (), *,
          past: Past = NOTHING_KNOWN) -> Judgement:
    """Run the pure stages on one message; a failure becomes a held judgement, never a crash.

    ``past`` is what the store knew when the batch was read; the default knows nothing, as
    for a message judged on its own.
    """
    try:
        notification = parse.parse(raw)
        found = authenticity.check(
            notification,
            trusted_authserv_ids=policy.trusted_authserv_ids,
            dkim_lookup=dkim_lookup,
            microsoft365_tenant=policy.microsoft365_tenant,
            gateway_hosts=policy.gateway_hosts,
        )
        # Only what LinkedIn signed may decide the kind, the person and where a reply goes.
        classification = classify.classify(authenticity.vouched(notification, found), found,
                                           rules)
        if classification.kind in REPLY_KINDS:
            resolution = find_address(classification, found, directory)
        else:
            resolution = Unresolved("no reply is needed for this kind")
        refs = references(notification.headers.get("in-reply-to", ()),
                          notification.headers.get("references", ()))
        recipient = resolution if isinstance(resolution, Recipient) else None
        history = past.history(classification, recipient, refs,
                               shadow=mode_for(policy, classification.kind) is Mode.SHADOW)
        decision = decide(Facts(classification, found, resolution, history,
                                notification.header("auto-submitted"), policy))
        source = resolution.source if isinstance(resolution, Recipient) else None
        return Judgement(notification.message_id, found, classification, decision, source)
    except Exception as exc:  # one bad message must never stop the loop
        return held(PolicyRule.PROCESSING_ERROR, f"could not be processed ({type(exc).__name__}); "
                    "held for the counselor", classified_by=ClassifierRule.ERROR)


def too_large(summary: Summary, limit: int) -> Judgement:
    """The held judgement of a candidate whose body is never fetched because of its size."""
    if summary.header_truncated:
        reason = (f"its header block is longer than {HEADER_LIMIT // 1024} KB, which no "
                  "LinkedIn notification has; held for the counselor without reading it")
    else:
        reason = (f"it is {summary.size / 1e6:.1f} MB, over the {limit / 1e6:g} MB limit "
                  "(imap.max_message_bytes); held for the counselor without reading it")
    return held(PolicyRule.TOO_LARGE, reason)
