"""The header block as a DKIM verifier reads it, and where each receiving server wrote in it.

What it is for: the authenticity gate must read exactly the bytes the tools that vouch for a
message checked. ``fields`` splits the header block with dkimpy's own splitter (the one that
verifies the signatures), keeping every value raw: unfolded, never RFC 2047-decoded. A
receiving server writes its trace fields at the top of the block, above (Postfix milters,
Exchange Online) or right under (Google) the ``Received`` line it adds when it takes the
message in, its *ingress*; whatever lies further down was written by someone before it,
the sender included. ``ingress`` finds that line for a server, and ``agrees`` checks that the
standard library's reading of the fields modbot relies on is the verifier's.

Pure: no network, database, clock or environment; never raises for bad mail. This module must
never log header values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import NamedTuple

MAX_FIELDS = 1000  # header fields the gate reads at all; mail that has more proves nothing

_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_BY = re.compile(r"(?:^|\s)by\s+([^\s;()]+)", re.IGNORECASE)
_FROM = re.compile(r"^\s*from\s", re.IGNORECASE)
_IP_LITERAL = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]{2,45})\]")
_BY_WORD = re.compile(r"\sby\s", re.IGNORECASE)


class Field(NamedTuple):
    """One header field as the verifier split it: lower-cased name, raw unfolded value."""

    name: str
    value: str


def fields(raw: bytes) -> tuple[Field, ...] | None:
    """The header fields of ``raw`` in order, split exactly as dkimpy splits them.

    None when dkimpy would refuse the header block (a line that is neither a field nor a
    continuation) or when it holds more than ``MAX_FIELDS`` fields: such a block proves nothing.
    """
    from dkim import rfc822_parse  # the verifier's own splitter, loaded with the verifier

    end = _header_end(raw)
    if raw.count(b"\n", 0, end) > 4 * MAX_FIELDS:  # cheap bound before splitting anything
        return None
    try:
        parsed, _ = rfc822_parse(raw[:end] + b"\r\n\r\n")
    except Exception:  # dkimpy refuses the block: nothing in it can be verified
        return None
    if len(parsed) > MAX_FIELDS:
        return None
    return tuple([Field(bytes(name).decode("ascii", "replace").lower(), _text(value))
                  for name, value in parsed])


def _header_end(raw: bytes) -> int:
    """Where the first blank line starts, a CR before its LF included; ``len(raw)`` if none.

    The start of the first match of ``rb"\\r?\\n\\r?\\n"``, found without a regular expression.
    """
    lf = raw.find(b"\n\n")
    crlf = raw.find(b"\n\r\n", 0, len(raw) if lf < 0 else lf + 2)
    at = crlf if crlf >= 0 else lf
    if at < 0:
        return len(raw)
    return at - 1 if at and raw[at - 1] == 0x0D else at


def _text(value: bytes) -> str:
    """A raw field value as text: unfolded, undecoded; 8-bit bytes kept as surrogate escapes.

    ASCII with surrogate escapes is how the standard library holds raw header bytes too, so the
    two readings can be compared character for character.
    """
    if b"\n" in value:  # each LF and a CR right before it removed: re.sub(rb"\r?\n", b"", v)
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return value.decode("ascii", "surrogateescape").strip()


def without_comments(value: str) -> str:
    """``value`` with RFC 5322 comments, nested ones included, replaced by a space."""
    for _ in range(8):  # each pass removes the innermost level
        stripped = _COMMENT.sub(" ", value)
        if stripped == value:
            break
        value = stripped
    return value


def received_by(value: str) -> str:
    """The host a ``Received`` field says took the message in (its ``by`` clause), lower-cased."""
    match = _BY.search(without_comments(value.split(";")[0]))
    return match.group(1).lower().rstrip(".") if match else ""


def from_loopback(value: str) -> bool:
    """Whether a ``Received`` field records a hop from this very machine (127.0.0.0/8, ::1).

    The IP literals a server writes from the connection are what count, never a HELO name,
    which the client chooses; a field with no IP literal or any other address is not loopback.
    """
    head = value.split(";")[0]
    if not _FROM.match(head):
        return False
    before_by = _BY_WORD.split(head, maxsplit=1)[0]
    ips = _IP_LITERAL.findall(before_by)
    try:
        return bool(ips) and all(ipaddress.ip_address(ip).is_loopback for ip in ips)
    except ValueError:
        return False


def from_public(value: str) -> bool:
    """Whether a ``Received`` field records a hop from a public internet address.

    Only the bracketed address a server writes from the connection counts ("from helo (rdns
    [192.0.2.1])"); a line without one, or with a loopback, private or reserved one, does not.
    """
    head = value.split(";")[0]
    if not _FROM.match(head):
        return False
    before_by = _BY_WORD.split(head, maxsplit=1)[0]
    try:
        return any(ipaddress.ip_address(ip).is_global for ip in _IP_LITERAL.findall(before_by))
    except ValueError:
        return False


def host_matches(host: str, pattern: str) -> bool:
    """``host`` is ``pattern``, a subdomain of it, or matches its ``*.`` wildcard."""
    host, pattern = host.lower().rstrip("."), pattern.strip().lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return bool(pattern) and (host == pattern or host.endswith("." + pattern))


NO_RECEIVED = -1  # ``ingress``: the message never crossed SMTP


def ingress(block: Sequence[Field], hosts: Sequence[str]) -> int | None:
    """Index of the topmost ``Received`` written by one of ``hosts``, the server's ingress.

    Everything above that line was written on the receiving side. The search stops at a hop
    from a public address written by another server (the college's border, where mail came in
    from the internet): a line naming ``hosts`` below it was written by the sender, so there
    is no ingress (None). Where no line names ``hosts`` and no border is seen, the topmost
    ``Received`` is taken. With no ``Received`` at all the message never crossed SMTP (a
    fixture, a message filed by hand): ``NO_RECEIVED``.
    """
    topmost = None
    for index, field in enumerate(block):
        if field.name != "received":
            continue
        if topmost is None:
            topmost = index
        if any(host_matches(received_by(field.value), host) for host in hosts):
            return index
        if from_public(field.value):
            return None
    return NO_RECEIVED if topmost is None else topmost


def agrees(block: Sequence[Field], parsed: Sequence[tuple[str, str]],
           names: set[str]) -> str | None:
    """Why the standard library's fields ``parsed`` differ from the verifier's, or None.

    For each of ``names`` (and each ``x-linkedin-*`` field) both readings must find at most one
    instance, and the same value. A second ``From`` on top of a signed one, or a bare CR that
    makes one parser see a field the other does not, is how a message says one thing to the
    verifier and another to the reader.
    """
    mine: dict[str, list[str]] = {}
    for field in block:
        if field.name in names or field.name.startswith("x-linkedin-"):
            mine.setdefault(field.name, []).append(field.value)
    theirs: dict[str, list[str]] = {}
    for name, value in parsed:
        if name in names or name.startswith("x-linkedin-"):
            theirs.setdefault(name, []).append(value)
    for name in sorted(set(mine) | set(theirs)):
        a, b = mine.get(name, []), theirs.get(name, [])
        if len(a) > 1 or len(b) > 1:
            return f"it has {max(len(a), len(b))} {_label(name)} fields, and LinkedIn writes one"
        # Values equal as they are are equal squeezed; only a difference needs a second look.
        if a != b and list(map(_squeeze, a)) != list(map(_squeeze, b)):
            return f"its {_label(name)} field reads differently to the DKIM verifier and to modbot"
    return None


def _squeeze(value: str) -> str:
    return " ".join(value.split())


def _label(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))[:60]
