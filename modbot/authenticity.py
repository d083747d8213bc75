"""Decide whether a notification that looks like LinkedIn's really comes from LinkedIn.

Spoofers copy LinkedIn's headers verbatim, so no header means anything until the message is
shown to come from LinkedIn. Evidence is read in this order:

1. ``Authentication-Results`` written by a server the counselor trusts (``trusted_authserv_ids``,
   ``*.`` wildcards allowed). The topmost trusted header decides: a receiving server adds its own
   above everything the sender wrote, so a forged copy further down cannot outvote it.
2. With no trusted results, the message's DKIM signatures, verified with dkimpy through the
   injected ``dkim_lookup`` (``None`` means offline: not verified here).
3. Otherwise strong negative evidence (a foreign Return-Path, a look-alike domain, a DKIM
   signature of another domain) makes a spoof; no evidence either way is ``UNKNOWN``.

``own_domain_verdict`` asks the same of the counselor's answers to review emails: is this
message shown to come from the counselor's own domain, by the same trusted headers or a DKIM
signature verified here?

Domains are compared by registrable domain (``modbot.brand``), never by substring. Pure apart
from the injected DNS lookup: no network, database, clock or environment. Every reason is one
short sentence naming the evidence, never text from the body; this module must never log
message content.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from modbot.brand import (
    claims_linkedin_name,
    is_linkedin,
    is_lookalike,
    looks_like_linkedin_domain,
    registrable_domain,
)
from modbot.model import Authenticity, Notification, Verdict
from modbot.parse import domains_in

DnsLookup = Callable[[bytes], bytes | None]
"""dkimpy's ``dnsfunc``: a DNS name such as ``b"sel._domainkey.linkedin.com."`` → TXT record."""

MAX_SIGNATURES = 8  # DKIM signatures verified per message; more is an attack, not mail
NOT_LINKEDIN = Authenticity(False, Verdict.UNKNOWN, ("does not claim to be LinkedIn mail",))

_TAG = re.compile(r"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)", re.IGNORECASE)
_COMMENT = re.compile(r"\([^()]*\)")
# Shapes authres reads token by token, matched whole where nothing can come between tokens:
# an RFC 5322 comment of ctext and blanks only; "method=result" and "type.name=value" written
# without white space, comments, quotes or an "@" domain. Atomic groups take each token exactly
# as authres's own pattern for it would, and re.IGNORECASE is the flag authres compiles with.
_PLAIN_COMMENT = re.compile(r"\([\t \x21-\x27\x2a-\x5b\x5d-\x7e]*\)")
_KTEXT = r"[A-Za-z0-9!#$%&'*+?^_`{|}~-]"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_METHODSPEC = re.compile(
    rf"(?>(?P<method>{_KTEXT}+(?:\.{_KTEXT}+)*))=(?>(?P<result>{_ATEXT}+(?:\.{_ATEXT}+)*))",
    re.IGNORECASE)
_PLAIN_PROPSPEC = re.compile(
    rf"(?>(?P<type>{_KTEXT}+))\.(?>(?P<name>{_KTEXT}+(?:\.{_KTEXT}+)*))="
    r"""(?![\t \r\n("@])(?>(?P<value>[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]*))""",
    re.IGNORECASE)


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


# --- 1. Authentication-Results from a trusted server -----------------------------------------

@dataclass(frozen=True)
class _Result:
    method: str
    result: str
    props: dict[str, str]


@functools.cache
def _authres_parser() -> Callable[[str], Any]:
    """authres's parser of one header value, built on first use so authres loads only then.

    It is authres's own grammar and gives authres's own result; only the reading is cheaper.
    authres matches every token with ``re.compile(...).sub`` on the rest of the text (its own
    TODO says so); here each pattern is compiled once and matched with ``search``, which finds
    the first match ``sub`` replaces. White space is looked for only where it can start, and a
    comment, a method or a property in its plain form is read in one match that ends where
    authres's token-by-token reading would; every other form is left to authres.
    """
    import authres
    import authres.core

    anchored = functools.cache(lambda pattern: re.compile("^" + pattern, re.IGNORECASE))

    class Header(authres.core.AuthenticationResultsHeader):  # type: ignore[misc]
        _parse_text: str

        def _parse_pattern(self, pattern: str | re.Pattern[str]) -> re.Match[str] | None:
            rx = pattern if isinstance(pattern, re.Pattern) else anchored(pattern)
            text = self._parse_text
            match = rx.search(text)
            if match is not None:
                self._parse_text = text[:match.start()] + text[match.end():]
            return match

        def _parse_rfc5322_cfws(self) -> Any:
            if self._parse_text[:1] not in (" ", "\t", "\r", "\n", "("):
                return None  # neither folding white space nor a comment starts here
            return super()._parse_rfc5322_cfws()

        def _parse_rfc5322_comment(self) -> Any:
            plain = _PLAIN_COMMENT.match(self._parse_text)
            if plain is None:
                return super()._parse_rfc5322_comment()
            self._parse_text = self._parse_text[plain.end():]
            return True

        def _parse_methodspec(self) -> Any:
            plain = _PLAIN_METHODSPEC.match(self._parse_text)
            if plain is None:
                return super()._parse_methodspec()
            self._parse_text = self._parse_text[plain.end():]
            self._parse_rfc5322_cfws()
            return plain["method"], None, plain["result"]

        def _parse_propspec(self) -> Any:
            plain = _PLAIN_PROPSPEC.match(self._parse_text)
            if plain is None or plain["type"].lower() not in ("smtp", "header", "body", "policy"):
                return super()._parse_propspec()
            self._parse_text = self._parse_text[plain.end():]
            self._parse_rfc5322_cfws()
            return authres.core.AuthenticationResultProperty(
                plain["type"], plain["name"], plain["value"])

    features = authres.core_features()
    return lambda value: Header.parse_value(features, value)


def _parse_results(value: str) -> tuple[str, list[_Result]] | None:
    """(authserv-id, results) of one header value; authres first, a tolerant reading second."""
    try:
        header = _authres_parser()(value)
        return str(header.authserv_id).lower(), [
            _Result(str(r.method).lower(), str(r.result).lower(),
                    {f"{p.type}.{p.name}".lower(): str(p.value) for p in r.properties})
            for r in header.results]
    except Exception:  # noqa: S110 - real servers write what authres rejects; read it below
        pass
    parts = _COMMENT.sub(" ", value).split(";")
    authserv_id = parts[0].split()[0].lower() if parts[0].split() else ""
    if not authserv_id or "=" in authserv_id:
        return None  # no authserv-id: nothing ties the header to a server
    results = []
    for part in parts[1:]:
        words = part.split()
        if not words or "=" not in words[0]:
            continue
        method, _, result = words[0].partition("=")
        props = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        results.append(_Result(method.lower(), result.lower(),
                               {k.lower(): v for k, v in props.items()}))
    return authserv_id, results


def _trusted(authserv_id: str, trusted: Sequence[str]) -> bool:
    for pattern in (p.strip().lower() for p in trusted):
        if pattern.startswith("*."):
            if authserv_id.endswith(pattern[1:]) and len(authserv_id) > len(pattern) - 1:
                return True
        elif pattern and authserv_id == pattern:
            return True
    return False


def _dkim_domain(r: _Result) -> str:
    return (r.props.get("header.d") or _domain(r.props.get("header.i"))).lower()


def _judge_results(server: str, results: list[_Result], from_domain: str) -> tuple[Verdict, str]:
    dkim_results = [r for r in results if r.method == "dkim"]
    dmarc = [r for r in results if r.method == "dmarc"]
    passed = [r for r in dkim_results if r.result == "pass" and is_linkedin(_dkim_domain(r))]
    for r in dmarc:
        if r.result in ("fail", "permerror"):
            return Verdict.SPOOF, (f"{server} reports dmarc={r.result} for header.from="
                                   f"{r.props.get('header.from', '?')}.")
    if passed:
        if not is_linkedin(from_domain):
            return Verdict.SPOOF, (f"{server} reports dkim=pass for {_dkim_domain(passed[0])} "
                                   f"but the From domain is {from_domain or 'missing'}.")
        if dmarc and not any(r.result == "pass" for r in dmarc):
            return Verdict.UNKNOWN, (f"{server} reports dkim=pass for {_dkim_domain(passed[0])} "
                                     f"but dmarc={dmarc[0].result}.")
        tail = " and dmarc=pass" if dmarc else ""
        return Verdict.AUTHENTIC, f"{server} reports dkim=pass for {_dkim_domain(passed[0])}{tail}."
    if not dkim_results:
        return Verdict.SPOOF, f"{server} reports no DKIM result, and LinkedIn signs all its mail."
    seen = ", ".join(f"dkim={r.result}" + (f" for {_dkim_domain(r)}" if _dkim_domain(r) else "")
                     for r in dkim_results[:3])
    return Verdict.SPOOF, f"{server} reports no dkim=pass for linkedin.com ({seen})."


@functools.lru_cache(maxsize=64)
def _needles(trusted: tuple[str, ...]) -> tuple[str, ...] | None:
    """Text every header written by one of ``trusted`` contains, lower-cased; None if unknown.

    An authserv-id is read from the header's own text, so a trusted one appears in the
    lower-cased value: the whole id, or the ``.suffix`` of a ``*.suffix`` pattern. Only ASCII
    patterns are used; lower-casing other letters can depend on their neighbours.
    """
    needles = []
    for pattern in (p.strip().lower() for p in trusted):
        needle = pattern[1:] if pattern.startswith("*.") else pattern
        if not needle.isascii():
            return None
        if needle:
            needles.append(needle)
    return tuple(needles)


def _topmost_trusted(n: Notification,
                     trusted: Sequence[str]) -> tuple[str, list[_Result]] | None:
    """(authserv-id, results) of the topmost Authentication-Results a trusted server wrote.

    A header that does not even mention a trusted server is passed over without parsing it.
    """
    needles = _needles(tuple(trusted))
    for value in n.headers.get("authentication-results", ())[:50]:
        value = value[:8192]
        lowered = value.lower()
        if needles is not None and not any(needle in lowered for needle in needles):
            continue
        parsed = _parse_results(value)
        if parsed and _trusted(parsed[0], trusted):
            return parsed
    return None


def _from_trusted_results(n: Notification, trusted: Sequence[str]) -> tuple[Verdict, str] | None:
    found = _topmost_trusted(n, trusted)
    if found is None:
        return None
    return _judge_results(found[0], found[1], _domain(n.from_.email if n.from_ else None))


# --- 2. DKIM verified here --------------------------------------------------------------------

def _tags(signature: str) -> dict[str, str]:
    return {m.group(1).lower(): "".join(m.group(2).split()) for m in _TAG.finditer(signature)}


def _quiet_logger() -> logging.Logger:
    # dkimpy logs signature fields and header text; none of it may reach our logs.
    logger = logging.Logger("modbot.authenticity.dkim", logging.CRITICAL + 1)
    logger.propagate = False
    return logger


def _verify_each(n: Notification, lookup: DnsLookup, missing: set[str],
                 wanted: Callable[[dict[str, str]], bool] = lambda tags: True,
                 ) -> Iterator[tuple[dict[str, str], bool]]:
    """(tags, verified) of each of the first signatures that ``wanted`` accepts, one at a time.

    A signature is verified only when the caller asks for the next one, so a caller that stops
    at the first good one makes no further DNS lookups. Names whose key DNS did not give are
    added to ``missing``.
    """

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = lookup(name)
        except Exception:  # a failed lookup is a missing key
            answer = None
        if not answer:
            missing.add(name.decode("ascii", "replace").rstrip("."))
        return answer

    import dkim  # only where no trusted Authentication-Results decided

    try:
        verifier = dkim.DKIM(n.raw, logger=_quiet_logger())
    except Exception:  # dkimpy cannot read the message: nothing verifies
        verifier = None
    for index, signature in enumerate(n.headers.get("dkim-signature", ())[:MAX_SIGNATURES]):
        tags = _tags(signature)
        if not wanted(tags):
            continue
        try:
            valid = bool(verifier and verifier.verify(idx=index, dnsfunc=dnsfunc))
        except Exception:  # a malformed signature does not verify
            valid = False
        yield tags, valid


def _from_dkim(n: Notification, lookup: DnsLookup | None) -> tuple[Verdict, str] | None:
    if lookup is None or not n.headers.get("dkim-signature"):
        return None
    missing: set[str] = set()
    outcomes: list[str] = []
    unchecked = False
    from_domain = _domain(n.from_.email if n.from_ else None)
    for tags, valid in _verify_each(n, lookup, missing):
        domain = tags.get("d", "").lower()
        key = f"{tags.get('s', '')}._domainkey.{domain}".lower()
        if valid and is_linkedin(domain) and "l" not in tags and is_linkedin(from_domain):
            return Verdict.AUTHENTIC, f"DKIM signature of {domain} verified."
        if valid:
            why = ("not LinkedIn's" if not is_linkedin(domain) else
                   "covers only part of the body" if "l" in tags else "is not aligned with From")
            outcomes.append(f"{domain or '?'} is valid but {why}")
        elif key in {m.lower() for m in missing}:
            unchecked = unchecked or is_linkedin(domain)
            outcomes.append(f"{domain or '?'} has no key in DNS")
        else:
            outcomes.append(f"{domain or '?'} did not verify")
    if unchecked:
        return Verdict.UNKNOWN, f"DKIM could not be checked: {'; '.join(outcomes)}."
    return Verdict.SPOOF, f"No DKIM signature of linkedin.com verified: {'; '.join(outcomes)}."


# --- 3. Evidence without proof ----------------------------------------------------------------

def _negative_evidence(n: Notification) -> list[str]:
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
    signers = {_tags(s).get("d", "").lower() for s in n.headers.get("dkim-signature", ())}
    if signers and not any(is_linkedin(d) for d in signers):
        found.append(f"DKIM-Signature is by {', '.join(sorted(signers)[:3])}, not linkedin.com.")
    return found


def _link_host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    return host.split(":")[0].lower()


def check(n: Notification, *, trusted_authserv_ids: Sequence[str],
          dkim_lookup: DnsLookup | None = None) -> Authenticity:
    """Whether ``n`` claims to be LinkedIn mail, and whether that claim is proven or disproven.

    Never raises for bad mail. ``dkim_lookup`` is consulted only when no trusted
    ``Authentication-Results`` header is present.
    """
    claims = _claims(n)
    if not claims:
        return NOT_LINKEDIN
    claim = f"Claims to be LinkedIn mail: {', '.join(claims[:3])}."
    found = _from_trusted_results(n, trusted_authserv_ids) or _from_dkim(n, dkim_lookup)
    if found:
        return Authenticity(True, found[0], (claim, found[1]))
    negative = _negative_evidence(n)
    if negative:
        return Authenticity(True, Verdict.SPOOF, (claim, *negative))
    unverified = ("No trusted Authentication-Results, and DKIM was not verified offline."
                  if n.headers.get("dkim-signature")
                  else "No trusted Authentication-Results and no DKIM signature.")
    return Authenticity(True, Verdict.UNKNOWN, (claim, unverified))


# --- The counselor's own domain ----------------------------------------------------------------

def _own(signer: str, domain: str) -> bool:
    """``domain`` or a parent of it within the same registrable domain."""
    signer = signer.lower().strip(".")
    return signer == domain or (domain.endswith("." + signer)
                                and len(signer) >= len(registrable_domain(domain)))


def own_domain_verdict(n: Notification, domain: str, *, trusted_authserv_ids: Sequence[str],
                       dkim_lookup: DnsLookup | None = None) -> str | None:
    """Why ``n`` is not shown to come from ``domain`` (the counselor's own), or None if it is.

    The same evidence as for LinkedIn, in the same order: the topmost trusted
    ``Authentication-Results`` decides (a DMARC failure, or no DKIM pass for ``domain`` or a
    parent of it, is a reason); without one, a DKIM signature of ``domain`` must verify here
    through ``dkim_lookup``. A signature with ``l=`` never counts: text could be added below
    the part it signs. The reason is one sentence without a leading capital or a full stop.
    Never raises for bad mail.
    """
    domain = domain.lower()
    found = _topmost_trusted(n, trusted_authserv_ids)
    if found is not None:
        server, results = found
        if any(r.method == "dmarc" and r.result in ("fail", "permerror") for r in results):
            return f"{server} reports that it failed DMARC"
        if any(r.method == "dkim" and r.result == "pass" and _own(_dkim_domain(r), domain)
               for r in results):
            return None
        return f"{server} reports no DKIM pass for {domain}"
    if dkim_lookup is not None and n.headers.get("dkim-signature") and any(
            valid for _, valid in _verify_each(
                n, dkim_lookup, set(),
                lambda tags: "l" not in tags and _own(tags.get("d", ""), domain))):
        return None
    return f"it has no trusted Authentication-Results and no verified DKIM signature of {domain}"
