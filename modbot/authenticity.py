"""Decide whether a notification that looks like LinkedIn's really comes from LinkedIn.

Spoofers copy LinkedIn's headers verbatim, so no header means anything until the message is
shown to come from LinkedIn, and then only the header fields LinkedIn's signature covers (and
the signed body) speak for LinkedIn. Evidence is read in this order:

1. The header block as the DKIM verifier reads it (``modbot.trace``). A block the verifier
   would refuse, or one where a field modbot relies on appears twice or reads differently to the
   standard library, proves nothing: that is how a message says one thing to the verifier and
   another to the reader.
2. ``Authentication-Results`` written by a server the counselor trusts, where that server
   writes them (``modbot.verdicts``): a DKIM pass for linkedin.com, no failed DMARC, a From of
   linkedin.com, and the signature the server reported found in the message, whose ``h=`` names
   the fields that count.
3. With no trusted verdict, the message's own DKIM signatures verified here through the injected
   DNS lookup (``modbot.dkimcheck``), reading the domain and signed fields from dkimpy itself. A
   LinkedIn key that DNS says does not exist is a failed proof.
4. Otherwise strong negative evidence (a foreign Return-Path, a look-alike domain, a DKIM
   signature of another domain) makes a spoof; no evidence either way is ``UNKNOWN``.

``vouched`` gives the view of an authentic notification that later stages may read: signed
fields only, plus the few unsigned ones that can only stop a reply or name LinkedIn's own relay.
``own_domain_verdict`` asks the same questions of the counselor's answers to review emails.

Domains are compared by registrable domain (``modbot.brand``), never by substring. Pure apart
from the injected DNS lookup: no network, database, clock or environment. Every reason is one
short sentence naming the evidence, never text from the body; this module must never log
message content.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from modbot import stacks, trace, verdicts
from modbot.brand import (
    claims_linkedin_name,
    is_linkedin,
    is_lookalike,
    looks_like_linkedin_domain,
    registrable_domain,
)
from modbot.dkimcheck import DnsLookup, Outcome, signature_tags, verify, verify_arc
from modbot.model import Authenticity, Notification, Verdict
from modbot.parse import domains_in

__all__ = ["NOT_LINKEDIN", "DnsLookup", "Trust", "check", "own_domain_verdict", "vouched"]

NOT_LINKEDIN = Authenticity(False, Verdict.UNKNOWN, ("does not claim to be LinkedIn mail",))
# The fields modbot reads to classify a notification and find its person: each must appear at
# most once and read the same to the verifier and to the parser, signed or not.
RELIED_ON = frozenset({"from", "sender", "reply-to", "to", "subject", "date", "message-id",
                       "mime-version", "content-type", "content-transfer-encoding",
                       "feedback-id", "list-unsubscribe", "auto-submitted", "in-reply-to"})
# Unsigned fields an authentic notification keeps: each can only stop a reply (a loop guard, a
# reply to our own mail) or de-duplicate; Reply-To is kept for LinkedIn's relay only.
KEPT_UNSIGNED = frozenset({"message-id", "in-reply-to", "references", "auto-submitted",
                           "precedence", "list-id", "reply-to"})
RELAY_DOMAIN = "reply.linkedin.com"

_Found = tuple[Verdict, str, frozenset[str]]
# Which evidence decided (``Authenticity.evidence``).
EXCHANGE, GATEWAY, SERVER, DKIM, ARC = "exchange", "gateway", "trusted-server", "dkim", "arc"
# Whose ARC seal vouches for the verdict it carries: Google's, sealed as Gmail takes mail in.
ARC_SEALERS = ("google.com",)


def _domain(address: str | None) -> str:
    return address.rpartition("@")[2].strip().strip(".>").lower() if address else ""


def _first_domain(value: str | None) -> str:
    found = domains_in(value or "")
    return found[0] if found else ""


def _claims(n: Notification) -> list[str]:
    """Why the message presents itself as LinkedIn's, one phrase per piece of evidence."""
    claims: list[str] = []
    hosts = [("From", _domain(n.from_.email if n.from_ else None)),
             ("Sender", _domain(n.sender)),
             ("Return-Path", _first_domain(n.header("return-path"))),
             ("Message-ID", _first_domain(n.message_id))]
    hosts += [("Reply-To", _domain(a.email)) for a in n.reply_to]
    claims += [f"{label} domain {host}" for label, host in hosts
               if host and looks_like_linkedin_domain(host)]
    if n.from_ and claims_linkedin_name(n.from_.name):
        claims.append("From display name names LinkedIn")
    claims += [f"{name} header" for name in n.headers if name.startswith("x-linkedin-")]
    if (n.header("feedback-id") or "").lower().endswith(":linkedin"):
        claims.append("Feedback-ID ends in :linkedin")
    return claims


def _negative_evidence(n: Notification, signers: set[str]) -> list[str]:
    found: list[str] = []
    return_path = _first_domain(n.header("return-path"))
    hosts = [("From", _domain(n.from_.email if n.from_ else None)), ("Sender", _domain(n.sender)),
             ("Return-Path", return_path)]
    for label, host in hosts:
        if is_lookalike(host):
            found.append(f"{label} domain {host} imitates linkedin.com.")
        elif (host or label == "From") and not is_linkedin(host):
            found.append(f"{label} domain {host or '(none)'} is not linkedin.com.")
    others = [("Reply-To", _domain(a.email)) for a in n.reply_to]
    others.append(("Message-ID", _first_domain(n.message_id)))
    found += [f"{label} domain {host} imitates linkedin.com." for label, host in others
              if is_lookalike(host)]
    link_hosts = dict.fromkeys(_link_host(url) for url in n.links)
    found += [f"A link points to {host}, which imitates linkedin.com."
              for host in link_hosts if host and is_lookalike(host)][:3]
    if signers and not any(is_linkedin(d) for d in signers):
        found.append(f"DKIM-Signature is by {', '.join(sorted(signers)[:3])}, not linkedin.com.")
    return found


def _link_host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    return host.split(":")[0].lower()


# --- 1. Verdicts of a trusted server ---------------------------------------------------------

@dataclass(frozen=True)
class Trust:
    """Whose verdicts the counselor's mail system makes believable (``[policy]``)."""

    authserv_ids: Sequence[str] = ()
    microsoft365_tenant: str | None = None
    gateway_hosts: Sequence[str] = ()


def _from_trusted(block: Sequence[trace.Field], trust: Trust,
                  from_domain: str) -> tuple[_Found, str] | None:
    """The verdict of the college's own mail system, in the order its hops wrote them.

    Exchange Online's own verdict first; where it cannot prove LinkedIn and a configured
    gateway wrote one at the border (its body rewriting is what broke Exchange's check), the
    gateway's; then the servers named by authserv-id.
    """
    exchange = stacks.exchange_verdict(block, trust.microsoft365_tenant)
    found = _judge(exchange, block, from_domain, need_dmarc=True) if exchange else None
    if found is not None and found[0] is Verdict.AUTHENTIC:
        return found, EXCHANGE
    gateway = stacks.gateway_verdict(block, trust.gateway_hosts)
    if gateway is not None:
        return _judge(gateway, block, from_domain), GATEWAY
    if found is not None:
        hop = stacks.hop_hint(block)
        if hop:
            return (Verdict.UNKNOWN, (
                f"Exchange Online could not check LinkedIn's signature: {hop} changed the "
                f"message before it. Add {hop}'s hosts to gateway_hosts if it writes its "
                "verdict next to its ingress line; otherwise turn on Enhanced Filtering for "
                f"Connectors for {hop}, or trust its ARC seal in Exchange."), frozenset()), EXCHANGE
        return found, EXCHANGE
    verdict = verdicts.trusted_results(block, trust.authserv_ids)
    return (_judge(verdict, block, from_domain), SERVER) if verdict is not None else None


def _judge(verdict: verdicts.Verdict, block: Sequence[trace.Field], from_domain: str, *,
           need_dmarc: bool = False) -> _Found:
    """What one trusted verdict proves about LinkedIn, and which fields it vouches for."""
    server, results = verdict.server, verdict.results
    dmarc = [r for r in results if r.method == "dmarc"]
    for r in dmarc:
        if r.result in ("fail", "permerror"):
            return Verdict.SPOOF, (f"{server} reports dmarc={r.result} for header.from="
                                   f"{r.props.get('header.from', '?')}."), frozenset()
    dkim_results = [r for r in results if r.method == "dkim"]
    failed = [r for r in dkim_results if r.result != "pass" and is_linkedin(r.dkim_domain)]
    passed = verdicts.linkedin_pass(verdict)
    if passed is not None and not failed:
        domain = passed.dkim_domain
        if not is_linkedin(from_domain):
            why = f"but the From domain is {from_domain or 'missing'}"
            return Verdict.SPOOF, f"{server} reports dkim=pass for {domain} {why}.", frozenset()
        aligned = [r for r in dmarc if r.result == "pass"]
        if need_dmarc and not aligned:
            return Verdict.UNKNOWN, (f"{server} reports dkim=pass for {domain} but no "
                                     "dmarc=pass for linkedin.com."), frozenset()
        if dmarc and not aligned:
            return Verdict.UNKNOWN, (f"{server} reports dkim=pass for {domain} "
                                     f"but dmarc={dmarc[0].result}."), frozenset()
        if any(r.props.get("header.from", "" if need_dmarc else from_domain).lower()
               != from_domain for r in aligned):
            return Verdict.UNKNOWN, (f"{server} reports dmarc=pass for another From domain "
                                     f"than {from_domain}."), frozenset()
        signed = verdicts.signed_names(block, passed)
        if not signed or "from" not in signed:
            return Verdict.UNKNOWN, (f"{server} reports dkim=pass for {domain}, but the message "
                                     "carries no such signature of From."), frozenset()
        tail = " and dmarc=pass" if aligned else ""
        return Verdict.AUTHENTIC, f"{server} reports dkim=pass for {domain}{tail}.", signed
    if not dkim_results:
        return (Verdict.SPOOF, f"{server} reports no DKIM result, and LinkedIn signs all its mail.",
                frozenset())
    seen = ", ".join(f"dkim={r.result}" + (f" for {r.dkim_domain}" if r.dkim_domain else "")
                     for r in (failed or dkim_results)[:3])
    return Verdict.SPOOF, f"{server} reports no dkim=pass for linkedin.com ({seen}).", frozenset()


# --- 2. DKIM verified here -----------------------------------------------------------------------

def _from_dkim(n: Notification, block: Sequence[trace.Field], lookup: DnsLookup | None,
               from_domain: str) -> _Found | None:
    if lookup is None or not any(f.name == "dkim-signature" for f in block):
        return None
    outcomes: list[str] = []
    unchecked = False
    for sig in verify(n.raw, block, lookup, lambda d: True):
        domain = sig.domain or "?"
        if sig.outcome is Outcome.VALID:
            if is_linkedin(sig.domain) and not sig.partial and is_linkedin(from_domain) \
                    and "from" in sig.signed:
                return Verdict.AUTHENTIC, f"DKIM signature of {domain} verified.", sig.signed
            why = ("not LinkedIn's" if not is_linkedin(sig.domain) else
                   "covers only part of the body" if sig.partial else "is not aligned with From")
            outcomes.append(f"{domain} is valid but {why}")
        elif sig.outcome is Outcome.NO_KEY:
            outcomes.append(f"{domain} has no key in DNS")
        elif sig.outcome is Outcome.DNS_FAILED:
            unchecked = unchecked or is_linkedin(sig.domain)
            outcomes.append(f"DNS gave no answer for the key of {domain}")
        elif sig.outcome is Outcome.TOO_LARGE:
            outcomes.append(f"{domain} was not checked: it asks for more work than any mail needs")
        else:
            outcomes.append(f"{domain} did not verify")
    if not outcomes:
        return None
    if unchecked:
        return Verdict.UNKNOWN, f"DKIM could not be checked: {'; '.join(outcomes)}.", frozenset()
    return (Verdict.SPOOF, f"No DKIM signature of linkedin.com verified: {'; '.join(outcomes)}.",
            frozenset())


def _from_arc(n: Notification, block: Sequence[trace.Field], lookup: DnsLookup,
              from_domain: str) -> _Found | None:
    """Google's verdict, carried in an ARC chain verified here whose newest seal is Google's.

    Only a proof: a chain that does not verify, or whose verdict proves nothing, leaves the
    finding of DKIM verified here as it was.
    """
    chain = verify_arc(n.raw, block, lookup)
    if chain is None or chain.sealer not in ARC_SEALERS:
        return None
    parsed = verdicts.read(chain.verdict)
    if parsed is None:
        return None
    sealed = verdicts.Verdict(f"{parsed[0]} (ARC sealed by {chain.sealer})", parsed[1])
    found, reason, signed = _judge(sealed, block, from_domain, need_dmarc=True)
    if found is not Verdict.AUTHENTIC:
        return None
    return found, reason, signed & chain.signed


# --- The gate ----------------------------------------------------------------------------------

def _signers(block: Sequence[trace.Field]) -> set[str]:
    domains = (signature_tags(f.value).get(b"d", b"") for f in block
               if f.name == "dkim-signature")
    return {verdicts.strict_domain(d.decode("ascii", "replace")) or "?" for d in domains}


def check(n: Notification, *, trusted_authserv_ids: Sequence[str],
          dkim_lookup: DnsLookup | None = None, microsoft365_tenant: str | None = None,
          gateway_hosts: Sequence[str] = ()) -> Authenticity:
    """Whether ``n`` claims to be LinkedIn mail, and whether that claim is proven or disproven.

    Never raises for bad mail. ``dkim_lookup`` is consulted only when no trusted server's
    verdict is present. An authentic finding names the header fields the proof covers.
    """
    trust = Trust(trusted_authserv_ids, microsoft365_tenant, gateway_hosts)
    claims = _claims(n)
    if not claims:
        return NOT_LINKEDIN
    claim = f"Claims to be LinkedIn mail: {', '.join(claims[:3])}."
    block = trace.fields(n.raw)
    if block is None:
        return Authenticity(True, Verdict.SPOOF, (
            claim, "Its header block is malformed or too large for a DKIM verifier to read."))
    altered = trace.agrees(block, n.fields, set(RELIED_ON))
    if altered:
        return Authenticity(True, Verdict.SPOOF, (claim, f"Not proven: {altered}."))
    from_domain = _domain(n.from_.email if n.from_ else None)
    trusted = _from_trusted(block, trust, from_domain)
    dkim_found = None if trusted else _from_dkim(n, block, dkim_lookup, from_domain)
    if not trusted and dkim_lookup is not None and (
            dkim_found is None or dkim_found[0] is not Verdict.AUTHENTIC):
        arc = _from_arc(n, block, dkim_lookup, from_domain)
        if arc is not None:
            trusted = arc, ARC
    found, evidence = trusted or ((dkim_found, DKIM) if dkim_found else (None, ""))
    if found:
        verdict, reason, signed = found
        if verdict is Verdict.AUTHENTIC:
            altered = trace.agrees(block, n.fields, set(signed))
            if altered:
                return Authenticity(True, Verdict.SPOOF, (claim, f"Not proven: {altered}."))
        return Authenticity(True, verdict, (claim, reason), signed, evidence)
    negative = _negative_evidence(n, _signers(block))
    if negative:
        return Authenticity(True, Verdict.SPOOF, (claim, *negative))
    unverified = ("No trusted Authentication-Results, and DKIM was not verified offline."
                  if any(f.name == "dkim-signature" for f in block)
                  else "No trusted Authentication-Results and no DKIM signature.")
    return Authenticity(True, Verdict.UNKNOWN, (claim, unverified))


def vouched(n: Notification, found: Authenticity) -> Notification:
    """What LinkedIn vouches for in an authentic ``n``: its signed fields and its signed body.

    Unsigned fields are dropped, except those that can only stop a reply or de-duplicate it
    (``KEPT_UNSIGNED``); an unsigned Reply-To keeps only addresses at LinkedIn's message relay,
    so a re-sent genuine notification cannot choose where a reply goes. A message that is not
    authentic is returned as it is: nothing is ever sent for it.
    """
    if found.verdict is not Verdict.AUTHENTIC:
        return n
    signed = found.signed
    headers = {name: values for name, values in n.headers.items()
               if name in signed or name in KEPT_UNSIGNED}
    reply_to = n.reply_to if "reply-to" in signed else tuple(
        a for a in n.reply_to if a.email.rpartition("@")[2].lower() == RELAY_DOMAIN)
    return dataclasses.replace(
        n, headers=headers, reply_to=reply_to,
        sender=n.sender if "sender" in signed else None,
        to=n.to if "to" in signed else (),
        subject=n.subject if "subject" in signed else "",
        date=n.date if "date" in signed else None)


# --- The counselor's own domain ----------------------------------------------------------------

def _own(signer: str, domain: str) -> bool:
    """``domain`` or a parent of it within the same registrable domain."""
    signer = verdicts.strict_domain(signer)
    return bool(signer) and (signer == domain or (
        domain.endswith("." + signer) and len(signer) >= len(registrable_domain(domain))))


def own_domain_verdict(n: Notification, domain: str, *, trusted_authserv_ids: Sequence[str],
                       dkim_lookup: DnsLookup | None = None) -> str | None:
    """Why ``n`` is not shown to come from ``domain`` (the counselor's own), or None if it is.

    The same evidence as for LinkedIn, read the same way: the trusted server's verdict where it
    wrote it (a DMARC failure, or no DKIM pass for ``domain`` or a parent of it, is a reason);
    without one, a DKIM signature of ``domain`` that signs From must verify here through
    ``dkim_lookup``. A signature with ``l=`` never counts: text could be added below the part it
    signs. A From that appears twice or reads differently to the verifier is a reason. The
    reason is one sentence without a leading capital or a full stop. Never raises for bad mail.
    """
    domain = domain.lower()
    block = trace.fields(n.raw)
    if block is None:
        return "its header block is malformed or too large to verify"
    altered = trace.agrees(block, n.fields, {"from", "in-reply-to", "references"})
    if altered:
        return altered
    verdict = verdicts.trusted_results(block, trusted_authserv_ids)
    if verdict is not None:
        if any(r.method == "dmarc" and r.result in ("fail", "permerror") for r in verdict.results):
            return f"{verdict.server} reports that it failed DMARC"
        for r in verdict.results:
            if r.method == "dkim" and r.result == "pass" and _own(r.dkim_domain, domain):
                signed = verdicts.signed_names(block, r)
                if signed and "from" in signed:
                    return None
        return f"{verdict.server} reports no DKIM pass for {domain}"
    if dkim_lookup is not None and any(
            sig.outcome is Outcome.VALID and not sig.partial and "from" in sig.signed
            and _own(sig.domain, domain)
            for sig in verify(n.raw, block, dkim_lookup, lambda d: _own(d, domain))):
        return None
    return f"it has no trusted Authentication-Results and no verified DKIM signature of {domain}"
