"""Links as the person wrote them, out of the wrappers campus mail gateways put around them.

What it is for: Microsoft 365 Safe Links, Proofpoint URL Defense (v1, v2, v3), Barracuda
LinkProtect and Cisco Secure Email rewrite every link in the copy a college stores, so that the
link points at the gateway and carries the original inside. ``unwrap`` takes the original back
out, layer by layer (wrappers nest: a real college link was v3 around Safe Links around v3
around Safe Links), up to ``MAX_DEPTH`` layers. Mimecast keeps the original on its own servers:
such a link is marked unrecoverable (``original`` None), never guessed from its ``domain=``
hint. ``wrappers_in`` says which wrappers a message's links went through.

The caller undoes quoted-printable and HTML escaping of the message first (``modbot.parse``
does); escaping found *inside* a wrapped link (a gateway that wrapped ``&amp;`` as it stood) is
undone here, one layer at a time.

Pure: no network, database, clock or environment, and it never raises, whatever the input. It
must only unwrap links whose host really is the wrapper's (compared by whole labels, never by
substring): ``urldefense.com.evil.net`` is an ordinary link to evil.net, so that a look-alike
check downstream sees where a link really leads.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

__all__ = ["MAX_DEPTH", "WRAPPERS", "Unwrapped", "original_link", "unwrap", "wrappers_in"]

MAX_DEPTH = 5  # layers undone; the deepest real nesting seen is four
MAX_URL_CHARS = 16_384  # longer links are left as they are
WRAPPERS = ("safelinks", "proofpoint", "barracuda", "cisco", "mimecast")

# Every host that serves one of these wrappers contains one of these words: a link without any
# of them is returned at once, without being parsed (most links in most messages).
_QUICK = ("safelinks", "urldefense", "cudasvc", "secure-web", "mimecast")
_SAFELINKS_HOSTS = (".safelinks.protection.outlook.com", ".safelinks.protection.office365.us")
_PROOFPOINT_HOSTS = frozenset({"urldefense.proofpoint.com", "urldefense.com", "urldefense.us"})
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}:")
_ONE_SLASH = re.compile(r"(https?):/(?=[^/])", re.IGNORECASE)  # v3 writes "https:/host"
_V3 = re.compile(r"/v3/__(?P<url>.*?)__;(?P<bytes>[A-Za-z0-9_=-]*)!", re.DOTALL)
_V3_TOKEN = re.compile(r"\*(?:\*.)?", re.DOTALL)
# "**X" stands for a run of index(X) + 2 replaced characters.
_V3_RUNS = {c: i + 2 for i, c in
            enumerate(string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_")}
_CISCO_ORIGINAL = re.compile(r"https?%3a", re.IGNORECASE)
# What a decoded layer may not keep raw: white space and control characters would split or
# hide the link downstream; lone surrogates are bytes that were not UTF-8.
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class Unwrapped:
    """A link as found, and the link as the person wrote it.

    ``wrappers`` names the wrappers removed, outermost first, including the one that could not
    be undone. ``original`` is None when a wrapper hides the original (Mimecast, a broken or too
    deeply nested wrapper) or the link could not be read at all; ``hint`` then carries what the
    wrapper says about it (Mimecast's ``domain=``), which nobody controls and nothing may trust.
    """

    found: str
    original: str | None
    wrappers: tuple[str, ...] = ()
    hint: str | None = None

    @property
    def wrapper(self) -> str | None:
        """The innermost wrapper met (the one that hides the original, if any), or None."""
        return self.wrappers[-1] if self.wrappers else None

    @property
    def link(self) -> str:
        """The original where it is known, else the link as found."""
        return self.found if self.original is None else self.original


class _Hidden(Exception):
    """A wrapper whose original cannot be taken out of the link."""

    def __init__(self, hint: str | None = None) -> None:
        super().__init__(hint)
        self.hint = hint


def _param(parts: SplitResult, name: str) -> str | None:
    """The raw (still percent-encoded) value of query parameter ``name``, or None.

    Split by hand: ``parse_qsl`` would turn "+" into a space, and a wrapper that stood in HTML
    may separate its parameters with "&amp;".
    """
    for pair in parts.query.replace("&amp;", "&").split("&"):
        key, equals, value = pair.partition("=")
        if equals and key.lower() == name:
            return value
    return None


def _decoded(value: str) -> str:
    """A percent-encoded value as text, undecodable bytes kept as surrogates, entities undone."""
    text = unquote(value, errors="surrogateescape")
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text) if "&" in text else text


def _required(value: str | None) -> str:
    if not value:
        raise _Hidden
    return value


def _safelinks(url: str, parts: SplitResult) -> str:
    return _decoded(_required(_param(parts, "url")))


def _barracuda(url: str, parts: SplitResult) -> str:
    return _decoded(_required(_param(parts, "a")))


def _cisco(url: str, parts: SplitResult) -> str:
    # secure-web.cisco.com/<opaque token>/<percent-encoded original>
    _, _, rest = url.partition("//")[2].partition("/")
    _, slash, encoded = rest.partition("/")
    if not slash or not _CISCO_ORIGINAL.match(encoded):
        raise _Hidden
    cut = min((i for i in (encoded.find("?"), encoded.find("#")) if i >= 0), default=len(encoded))
    return _decoded(encoded[:cut]) + encoded[cut:]


def _proofpoint(url: str, parts: SplitResult) -> str:
    path = parts.path.lower()
    if path.startswith("/v3/"):
        return _proofpoint_v3(url)
    if path == "/v2/url":
        return _decoded(_required(_param(parts, "u")).translate(str.maketrans("-_", "%/")))
    if path == "/v1/url":
        return _decoded(_required(_param(parts, "u")))
    raise _Hidden


def _proofpoint_v3(url: str) -> str:
    """``/v3/__<url with specials as *>__;<url-safe base64 of those specials>!!…``."""
    match = _V3.search(url)
    if not match:
        raise _Hidden
    text = unquote(match.group("url"), errors="surrogateescape")
    encoded = match.group("bytes").rstrip("=")
    try:
        replaced = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise _Hidden from None
    specials = replaced.decode("utf-8", "surrogateescape")
    pieces: list[str] = []
    used = pos = 0
    for token in _V3_TOKEN.finditer(text):
        count = 1 if token.group(0) == "*" else _V3_RUNS.get(token.group(0)[-1], 0)
        if not count or used + count > len(specials):
            raise _Hidden
        pieces += (text[pos:token.start()], specials[used:used + count])
        used, pos = used + count, token.end()
    pieces.append(text[pos:])
    return _ONE_SLASH.sub(r"\1://", "".join(pieces), count=1)


def _mimecast(url: str, parts: SplitResult) -> str:
    hint = _param(parts, "domain")
    raise _Hidden(_tidy(_decoded(hint)) if hint else None)


def _wrapper(host: str) -> tuple[str, Callable[[str, SplitResult], str]] | None:
    """The wrapper served at ``host`` and its decoder, or None for an ordinary host."""
    if host.endswith(_SAFELINKS_HOSTS):
        return "safelinks", _safelinks
    if host in _PROOFPOINT_HOSTS:
        return "proofpoint", _proofpoint
    if host == "linkprotect.cudasvc.com":
        return "barracuda", _barracuda
    if host == "secure-web.cisco.com":
        return "cisco", _cisco
    labels = host.split(".")
    # protect-<region>.mimecast.com (legacy), url.<region>.m.mimecastprotect.com (current)
    legacy = len(labels) == 3 and labels[1:] == ["mimecast", "com"]
    if (legacy and labels[0].startswith("protect")) or labels[-2:] == ["mimecastprotect", "com"]:
        return "mimecast", _mimecast
    return None


def _tidy(url: str) -> str:
    """``url`` with white space, control characters and non-UTF-8 bytes percent-encoded."""
    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        if "\ud800" <= char <= "\udfff":
            return f"%{ord(char) - 0xDC00:02X}" if 0xDC80 <= ord(char) <= 0xDCFF else "%EF%BF%BD"
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return _UNSAFE.sub(escape, url)


def _maybe_wrapped(url: str) -> bool:
    if len(url) > MAX_URL_CHARS:
        return False
    lower = url.lower()
    return any(word in lower for word in _QUICK)


def unwrap(url: str) -> Unwrapped:
    """The link ``url`` with every gateway wrapper around it undone; never raises.

    An ordinary link comes back as its own original. A wrapper whose original cannot be
    recovered (Mimecast, a malformed or over-deep wrapper, a result that is not a URL) gives
    ``original=None`` and the wrappers met, so the caller keeps the link as found.
    """
    try:
        return _unwrap(url)
    except Exception:  # a decoder bug must not lose the message: keep the link as found
        return Unwrapped(url, None)


def _unwrap(url: str) -> Unwrapped:
    current, met = url, []
    while _maybe_wrapped(current):
        try:
            parts = urlsplit(current)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            break
        found = _wrapper(host) if parts.scheme.lower() in ("http", "https") else None
        if found is None:
            break
        name, decode = found
        met.append(name)
        if len(met) > MAX_DEPTH:
            return Unwrapped(url, None, tuple(met))
        try:
            inner = _tidy(decode(current, parts))
        except _Hidden as hidden:
            return Unwrapped(url, None, tuple(met), hidden.hint)
        if not _SCHEME.match(inner):
            return Unwrapped(url, None, tuple(met))
        current = inner
    return Unwrapped(url, current, tuple(met))


def original_link(url: str) -> str:
    """The link as the person wrote it where a wrapper lets that be known, else ``url``."""
    return unwrap(url).link if _maybe_wrapped(url) else url


def wrappers_in(urls: Iterable[str]) -> set[str]:
    """The names of the wrappers (see ``WRAPPERS``) the links ``urls`` went through."""
    return {name for url in urls for name in unwrap(url).wrappers}
