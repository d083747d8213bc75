"""Verify a message's DKIM signatures here, with dkimpy, within a fixed amount of work.

What it is for: where no trusted server's verdict decides, modbot verifies the signatures
itself through an injected DNS lookup. Everything about a signature that counts is read from
dkimpy's own state after it verified that very signature: the signing domain, the fields it
signs, whether it signs only part of the body. Nothing is read from a second copy of the header,
so a case-changed tag (``D=``), an unknown tag or an encoded word cannot make modbot see another
domain than the verifier checked.

The work per message is bounded before dkimpy starts: at most ``MAX_FIELDS`` header fields (see
``modbot.trace``), ``MAX_SIGNATURES`` signatures looked at, ``MAX_VERIFIED`` of the wanted ones
verified, ``MAX_SIGNED_NAMES`` names in one ``h=``, one DNS question per key name and none after
DNS has failed once. Pure apart from the injected lookup; never raises for bad mail; must never
log header values (dkimpy's logger is replaced by a silent one).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from modbot.trace import Field
from modbot.verdicts import strict_domain

DnsLookup = Callable[[bytes], bytes | None]
"""dkimpy's ``dnsfunc``: ``b"sel._domainkey.linkedin.com."`` → the TXT record, or None when DNS
says there is none. A lookup that cannot get an answer (a timeout, no server) raises."""

MAX_SIGNATURES = 8  # DKIM-Signature fields looked at; more is an attack, not mail
MAX_VERIFIED = 3  # of those, the ones of a wanted domain that are verified
MAX_SIGNED_NAMES = 64  # names in one h= tag; LinkedIn signs nine


class Outcome(enum.StrEnum):
    """What verifying one signature found."""

    VALID = "valid"
    INVALID = "invalid"  # the key was found and the signature does not match
    NO_KEY = "no-key"  # DNS says the key does not exist: nobody could have made it
    DNS_FAILED = "dns-failed"  # DNS gave no answer: it cannot be told now
    TOO_LARGE = "too-large"  # more work than any real signature needs; not verified


@dataclass(frozen=True)
class Signature:
    """One signature of a wanted domain and what verifying it found."""

    domain: str
    outcome: Outcome
    signed: frozenset[str] = frozenset()  # the header fields it signs, lower-cased
    partial: bool = False  # it has l=: text could be added below the part it signs


def _silent_logger() -> logging.Logger:
    # dkimpy logs signature fields and header text; none of it may reach our logs.
    logger = logging.Logger("modbot.dkimcheck", logging.CRITICAL + 1)
    logger.propagate = False
    return logger


def signature_tags(value: str) -> dict[bytes, bytes]:
    """The tags of a signature as dkimpy's own parser reads them; empty if it cannot."""
    from dkim.util import parse_tag_value

    try:
        return dict(parse_tag_value(value.encode("ascii", "surrogateescape")))
    except Exception:  # an unreadable signature has no tags
        return {}


def verify(raw: bytes, block: Sequence[Field], lookup: DnsLookup,
           wanted: Callable[[str], bool]) -> Iterator[Signature]:
    """Verify, one at a time as the caller asks, the signatures whose domain ``wanted`` accepts.

    ``block`` is ``modbot.trace.fields(raw)``. A caller that stops at the first valid signature
    makes no further DNS lookups.
    """
    import dkim

    answers: dict[bytes, bytes | None] = {}
    dns_failed = False

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        nonlocal dns_failed
        if name in answers:
            return answers[name]
        if dns_failed:
            raise dkim.DnsTimeoutError("DNS failed earlier for this message")
        try:
            answers[name] = lookup(name)
        except Exception:
            dns_failed = True
            raise dkim.DnsTimeoutError("no DNS answer") from None
        return answers[name]

    signatures = [f for f in block if f.name == "dkim-signature"][:MAX_SIGNATURES]
    try:
        verifier = dkim.DKIM(raw, logger=_silent_logger())
    except Exception:  # dkimpy cannot read the message: nothing verifies
        verifier = None
    verified = 0
    for index, field in enumerate(signatures):
        tags = signature_tags(field.value)
        domain = strict_domain(tags.get(b"d", b"").decode("ascii", "replace"))
        if not domain or not wanted(domain):
            continue
        names = tags.get(b"h", b"").split(b":")
        if verified >= MAX_VERIFIED or len(names) > MAX_SIGNED_NAMES:
            yield Signature(domain, Outcome.TOO_LARGE)
            continue
        verified += 1
        key = tags.get(b"s", b"") + b"._domainkey." + tags.get(b"d", b"") + b"."
        try:
            valid = bool(verifier is not None and verifier.verify(idx=index, dnsfunc=dnsfunc))
        except Exception:  # a malformed signature or key does not verify
            valid = False
        if valid and verifier is not None:
            yield Signature(
                strict_domain(bytes(verifier.domain).decode("ascii", "replace")), Outcome.VALID,
                frozenset(bytes(n).decode("ascii", "replace").strip().lower()
                          for n in verifier.include_headers),
                b"l" in verifier.signature_fields)
        elif key in answers and answers[key] is None:
            yield Signature(domain, Outcome.NO_KEY)
        elif dns_failed and key not in answers:
            yield Signature(domain, Outcome.DNS_FAILED)
        else:
            yield Signature(domain, Outcome.INVALID)


MAX_ARC_SETS = 4  # ARC sets a message may carry for modbot to verify the chain at all


@dataclass(frozen=True)
class ArcChain:
    """What the newest ARC set says, once the whole chain verified (RFC 8617)."""

    sealer: str  # the newest ARC-Seal's d=
    verdict: str  # its ARC-Authentication-Results, without "i=N;", raw
    signed: frozenset[str]  # the fields its ARC-Message-Signature signs


def verify_arc(raw: bytes, block: Sequence[Field], lookup: DnsLookup) -> ArcChain | None:
    """The newest ARC set of a chain dkimpy verifies whole, or None.

    The chain must pass, its newest message signature must verify (a seal alone can be
    replayed on another body), and it may have at most ``MAX_ARC_SETS`` sets whose message
    signatures name at most ``MAX_SIGNED_NAMES`` fields. What it says is read from the same
    fields dkimpy verified: the newest instance's seal, message signature and results.
    """
    import dkim

    seals = [f for f in block if f.name == "arc-seal"]
    signatures = [f for f in block if f.name == "arc-message-signature"]
    if not seals or len(seals) > MAX_ARC_SETS or any(
            len(signature_tags(f.value).get(b"h", b"").split(b":")) > MAX_SIGNED_NAMES
            for f in signatures):
        return None
    failed = False

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        nonlocal failed
        if failed:
            raise dkim.DnsTimeoutError("DNS failed earlier for this message")
        try:
            return lookup(name)
        except Exception:
            failed = True
            raise dkim.DnsTimeoutError("no DNS answer") from None

    try:
        cv, results, _ = dkim.ARC(raw, logger=_silent_logger()).verify(dnsfunc=dnsfunc)
    except Exception:  # a chain dkimpy cannot read proves nothing
        return None
    if cv != dkim.CV_Pass or not results or not results[0].get("ams-valid"):
        return None
    newest = results[0]["instance"]

    def of_newest(fields: list[Field]) -> dict[bytes, bytes]:
        tagged = [signature_tags(f.value) for f in fields]
        mine = [t for t in tagged if t.get(b"i", b"").strip() == str(newest).encode()]
        return mine[0] if len(mine) == 1 else {}

    seal, signature = of_newest(seals), of_newest(signatures)
    verdicts = [f.value for f in block if f.name == "arc-authentication-results"
                and re.match(rf"\s*i\s*=\s*{newest}\s*;", f.value)]
    if not seal or not signature or len(verdicts) != 1:
        return None
    return ArcChain(strict_domain(seal.get(b"d", b"").decode("ascii", "replace")),
                    re.sub(r"^\s*i\s*=\s*\d+\s*;", "", verdicts[0]).strip(),
                    frozenset(n.strip().lower() for n in
                              signature.get(b"h", b"").decode("ascii", "replace").split(":")
                              if n.strip()))
