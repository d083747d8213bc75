"""Read the verdicts a trusted receiving server wrote, exactly as it wrote them and where.

What it is for: ``Authentication-Results`` (RFC 8601) is only evidence when the counselor's own
receiving server wrote it. ``trusted_results`` finds those headers by authserv-id *and by
position*: above the server's ingress ``Received`` line (Postfix milters, one header each), or
the one right under it where that is the server's habit (Google). A header lower down is the
sender's, whatever name it carries. Every value is read raw (never RFC 2047-decoded) with
authres's strict grammar; a header authres cannot read is no evidence at all.

``signed_names`` tells which header fields a passing DKIM result vouches for, read from the
``h=`` tag of the very signature the server reported, with dkimpy's own tag parser.

Pure: no network, database, clock or environment; never raises for bad mail. This module must
never log header values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modbot.brand import is_linkedin
from modbot.trace import NO_RECEIVED, Field, from_loopback, host_matches, ingress, received_by

MAX_VALUE = 8192  # characters of one Authentication-Results value read at all
MAX_RESULTS = 20  # results read from one server's headers

# Servers that write their verdict right under their ingress Received rather than above it.
BELOW_INGRESS = ("mx.google.com",)
# What may sit between such an ingress line and the verdict under it.
_BETWEEN = frozenset({"received-spf"})

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


@dataclass(frozen=True)
class Result:
    """One result of a verdict: ``dkim=pass`` with its properties, names lower-cased."""

    method: str
    result: str
    props: dict[str, str]

    @property
    def dkim_domain(self) -> str:
        """The signing domain a DKIM result names: ``header.d``, else ``header.i``'s domain."""
        value = self.props.get("header.d") or self.props.get("header.i", "").rpartition("@")[2]
        return value.lower()


@dataclass(frozen=True)
class Verdict:
    """Everything one trusted server said about the message, from all the headers it wrote."""

    server: str
    results: tuple[Result, ...]


_AUTHRES_INTERNALS = ("_parse_pattern", "_parse_rfc5322_cfws", "_parse_rfc5322_comment",
                      "_parse_methodspec", "_parse_propspec", "parse_value")


def _overridable(header_class: type) -> bool:
    """Whether ``header_class`` still has every authres internal the quicker reading replaces."""
    return all(callable(getattr(header_class, name, None)) for name in _AUTHRES_INTERNALS)


@functools.cache
def _authres_parser() -> Callable[[str], Any]:
    """authres's parser of one header value, built on first use so authres loads only then.

    It is authres's own grammar and gives authres's own result; only the reading is cheaper.
    authres matches every token with ``re.compile(...).sub`` on the rest of the text (its own
    TODO says so); here each pattern is compiled once and matched with ``search``, which finds
    the first match ``sub`` replaces. White space is looked for only where it can start, and a
    comment, a method or a property in its plain form is read in one match that ends where
    authres's token-by-token reading would; every other form is left to authres. A test compares
    the two readings on generated values.
    """
    import authres
    import authres.core

    features = authres.core_features()
    stock = authres.core.AuthenticationResultsHeader
    # The quicker reading overrides these internals of authres 1.2 (constraints.txt pins the
    # version CI tests); a release that renamed one gets authres's own reading instead.
    if not _overridable(stock):
        return lambda value: stock.parse_value(features, value)
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

    return lambda value: Header.parse_value(features, value)


def read(value: str) -> tuple[str, tuple[Result, ...]] | None:
    """(authserv-id, results) of one raw header value read strictly, or None if it cannot be.

    No RFC 2047 decoding and no tolerant second reading: a token copied from the sender (an
    envelope address, a HELO name, a quoted local part) stays inside the property or comment
    the writing server put it in.
    """
    if len(value) > MAX_VALUE or not value.isascii():
        return None  # RFC 8601 values are ASCII; anything else was not written by a server
    try:
        header = _authres_parser()(value)
        authserv_id = str(header.authserv_id).lower()
        results = tuple(
            Result(str(r.method).lower(), str(r.result).lower(),
                   {f"{p.type}.{p.name}".lower(): str(p.value) for p in r.properties})
            for r in header.results)
    except Exception:  # authres rejects it: no evidence
        return None
    return (authserv_id, results) if authserv_id else None


def trusted_results(block: Sequence[Field], trusted: Sequence[str]) -> Verdict | None:
    """All results a server in ``trusted`` wrote where it writes them, or None if none did.

    The verdict of one server may be spread over several headers (one per milter): every one
    of them in the server's own part of the block counts, and nothing below it.
    """
    patterns = [p.strip().lower() for p in trusted if p.strip()]
    if not patterns:
        return None
    top = ingress(block, patterns)
    if top is None:
        return None  # the border was crossed by another server: nothing here is the server's
    candidates = list(block) if top == NO_RECEIVED else list(block[:top])
    if top != NO_RECEIVED and _writes_below(block[top].value):
        for field in block[top + 1:]:
            if field.name in _BETWEEN:
                continue
            if field.name == "authentication-results":
                candidates.append(field)
            break
    server = ""
    results: list[Result] = []
    for field in candidates:
        if field.name != "authentication-results":
            continue
        parsed = read(field.value)
        if parsed is None or not any(_trusted(parsed[0], p) for p in patterns):
            continue
        server = server or parsed[0]
        results += parsed[1]
    return Verdict(server, tuple(results[:MAX_RESULTS])) if server else None


def _trusted(authserv_id: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host_matches(authserv_id, pattern)
    return authserv_id == pattern


def _writes_below(received: str) -> bool:
    by = received_by(received)
    return not from_loopback(received) and any(host_matches(by, h) for h in BELOW_INGRESS)


def strict_domain(value: str) -> str:
    """A domain exactly as a verifier would use it: ASCII, lower-cased; '' if it is not one.

    A trailing dot, white space or a letter beyond ASCII makes a different name than the one
    the signature's key was published under, so it matches nothing.
    """
    if not value or not value.isascii() or value != value.strip() or value.endswith("."):
        return ""
    if not re.fullmatch(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", value):
        return ""
    return value.lower()


def signed_names(block: Sequence[Field], result: Result) -> frozenset[str] | None:
    """The header fields the signature behind a ``dkim=pass`` result signs; None if not found.

    The signature is the ``DKIM-Signature`` whose ``d=`` is the result's domain and whose
    ``b=`` starts with its ``header.b`` when the server gave one; where several match, only the
    names all of them sign count, so a copy added by the sender can only take names away.
    """
    from dkim.util import parse_tag_value

    domain = result.dkim_domain
    prefix = result.props.get("header.b", "")
    found: frozenset[str] | None = None
    for field in block:
        if field.name != "dkim-signature":
            continue
        try:
            tags = parse_tag_value(field.value.encode("ascii", "surrogateescape"))
            d = strict_domain(tags[b"d"].decode("ascii"))
            b = re.sub(rb"\s+", b"", tags.get(b"b", b"")).decode("ascii")
            names = frozenset(n.strip().lower() for n in
                              tags[b"h"].decode("ascii").split(":") if n.strip())
        except Exception:  # noqa: S112 - a signature dkimpy cannot read is no signature
            continue
        if not d or not (domain == d or domain.endswith("." + d)) \
                or (prefix and not b.startswith(prefix)):
            continue
        found = names if found is None else found & names
    return found


def linkedin_pass(verdict: Verdict) -> Result | None:
    """The first ``dkim=pass`` for a linkedin.com domain in ``verdict``, read strictly."""
    return next((r for r in verdict.results if r.method == "dkim" and r.result == "pass"
                 and is_linkedin(strict_domain(r.dkim_domain))), None)
