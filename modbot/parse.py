"""Turn the raw bytes of one email into a ``Notification`` value.

Pure: no network, database, clock or environment. ``parse`` never raises for bad mail: what
mail-parser or the standard library cannot read becomes a one-sentence entry in
``Notification.defects`` and the rest of the message is still returned. Work is capped on
pathological input (thousands of addresses, repeated address headers, huge bodies), so one
message costs milliseconds, not seconds. Display names and subjects come back free of CR, LF and
other control characters, because later stages put them into reply headers.

``linkedin_candidate`` is the cheap test run on the header block alone, before the whole
message is fetched; it asks ``modbot.brand`` whether a domain or a name imitates LinkedIn. This
module must never log or store message content, and it keeps mail-parser, which logs header
values, quiet.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import functools
import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from modbot import logs
from modbot.brand import claims_linkedin_name, looks_like_linkedin_domain
from modbot.model import Address, Notification

MAX_ADDRESSES = 100  # per address header; the 100th comma is where we stop reading
MAX_HEADER_REPEATS = 10  # occurrences of one address header that are read at all
MAX_SCAN_CHARS = 2_000_000  # characters of each body part searched for links
MAX_LINKS = 1000
MAX_FIELDS = 2000  # header fields read at all
MAX_FIELD_BYTES = 32768  # bytes of one header field; RFC 5322 lines are at most 998
MAX_REMEMBERED_ADDRESS_CHARS = 512  # address headers this short are parsed once per process

_ADDRESS_HEADERS = frozenset(
    {b"from", b"to", b"cc", b"bcc", b"reply-to", b"sender", b"delivered-to",
     b"resent-from", b"resent-to", b"resent-cc", b"resent-bcc", b"resent-sender"}
)
_ADDRESS_FIELDS = ("from", "sender", "reply-to", "to")  # the ones a Notification keeps
_FIELD_START = re.compile(rb"\r?\n(?![ \t])")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
# Bounded repeats: an unclosed quote must not make every later href rescan the document.
# "href" in any case, at a word boundary; spelled out rather than re.IGNORECASE and \b so that
# the search can skip to the next h, which is the same match (no other letter folds to these).
_HREF = re.compile(
    r"""[Hh](?<!\w[Hh])[Rr][Ee][Ff]\s*=\s*(?:"([^"]{0,8192})"|'([^']{0,8192})'|([^\s"'>]{1,8192}))""")
_BARE_URL = re.compile(r"""https?://[^\s<>"'`{}|\\^\[\]]+""", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_TRAILING = ".,;:!?)]}'\"*"


# --- text hygiene -----------------------------------------------------------------------------

def valid_unicode(value: str) -> str:
    """``value`` as valid Unicode: surrogates left by undecodable bytes become text or U+FFFD."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        # The stdlib keeps raw 8-bit header bytes as surrogate escapes; most are UTF-8 (RFC 6532).
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return value.encode("utf-8", "replace").decode("utf-8")


def clean_line(value: str) -> str:
    """``value`` on one line: control characters and runs of white space become one space."""
    value = valid_unicode(value)
    if not value.isprintable():  # only then can it hold a control character
        value = _CONTROL.sub(" ", value)
    return " ".join(value.split())


def decode_header_value(value: str) -> str:
    """Unfold a raw header value and decode its RFC 2047 encoded words, never raising."""
    value = _unfold(value)
    if "=?" in value:  # without one there is no encoded word, and decoding changes nothing
        with contextlib.suppress(Exception):  # bad charsets or syntax leave the raw text
            value = str(make_header(decode_header(value)))
    return clean_line(value)


# --- capping pathological headers before any parser sees them ---------------------------------

def _first_addresses(value: bytes, limit: int) -> bytes | None:
    """The prefix of an address list holding ``limit`` addresses, or None if it has fewer."""
    commas = depth = 0
    quoted = escaped = False
    angle = False
    for i, byte in enumerate(value):
        if escaped:
            escaped = False
        elif byte == 0x5C and (quoted or depth):  # backslash
            escaped = True
        elif quoted:
            quoted = byte != 0x22
        elif byte == 0x22:
            quoted = True
        elif byte == 0x28:  # (
            depth += 1
        elif byte == 0x29 and depth:
            depth -= 1
        elif depth:
            continue
        elif byte == 0x3C:
            angle = True
        elif byte == 0x3E:
            angle = False
        elif byte == 0x2C and not angle:
            commas += 1
            if commas >= limit:
                return value[:i]
    return None


def _header_end(data: bytes) -> int:
    """Where the header block ends: the first empty line, else the end of ``data``."""
    end = data.find(b"\n\n")
    end = len(data) if end < 0 else end
    crlf = data.find(b"\n\r\n", 0, end)
    return end if crlf < 0 else crlf


def _cap_headers(raw: bytes) -> tuple[bytes, list[str]]:
    """Shorten headers no parser should spend seconds on; say what was dropped."""
    end = _header_end(raw)
    block = raw[:end]
    if len(block) < 8192:
        return raw, []
    newline = b"\r\n" if b"\r\n" in block[:4096] else b"\n"
    kept: list[bytes] = []
    seen: dict[bytes, int] = {}
    defects: list[str] = []
    fields = _FIELD_START.split(block)
    if len(fields) > MAX_FIELDS:
        defects.append(f"The message has more than {MAX_FIELDS} header fields; "
                       "the rest were ignored.")
    for field in fields[:MAX_FIELDS]:
        name, colon, value = field.partition(b":")
        lname = name.strip().lower()
        label = lname.decode("ascii", "replace")[:40]
        if colon and lname in _ADDRESS_HEADERS:
            seen[lname] = seen.get(lname, 0) + 1
            if seen[lname] > MAX_HEADER_REPEATS:
                if seen[lname] == MAX_HEADER_REPEATS + 1:
                    defects.append(f"The {label} header repeats more than "
                                   f"{MAX_HEADER_REPEATS} times; the rest were ignored.")
                continue
            prefix = _first_addresses(value[:MAX_FIELD_BYTES], MAX_ADDRESSES)
            if prefix is not None:
                field = name + b":" + prefix
                defects.append(f"The {label} header lists more than {MAX_ADDRESSES} "
                               f"addresses; only the first {MAX_ADDRESSES} were read.")
        if len(field) > MAX_FIELD_BYTES:
            field = field[:MAX_FIELD_BYTES]
            defects.append(f"The {label} header is longer than {MAX_FIELD_BYTES} bytes; "
                           "the rest was ignored.")
        kept.append(field)
    return newline.join(kept) + raw[end:], defects


# --- reading the message ----------------------------------------------------------------------

def _header_only(raw: bytes) -> Message | None:
    try:
        return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    except Exception:  # the caller records that nothing could be read
        return None


def _unfold(value: str) -> str:
    return _FOLD.sub("", value) if "\n" in value else value


def _read_headers(message: Message | None) -> tuple[
        dict[str, tuple[str, ...]], dict[str, list[str]], tuple[tuple[str, str], ...]]:
    """Every header's decoded values by lower-cased name, the address headers' raw values, and
    every field raw in order.

    Addresses are read from the raw values (unfolded, at most ``MAX_HEADER_REPEATS`` of each),
    so an encoded word cannot add a comma or an angle bracket to an address list.
    """
    decoded: dict[str, list[str]] = {}
    raw: dict[str, list[str]] = {name: [] for name in _ADDRESS_FIELDS}
    fields: list[tuple[str, str]] = []
    if message is None:
        return {}, raw, ()
    for name, value in message.raw_items():
        name, value = str(name), str(value)
        key = clean_line(name).lower()
        unfolded = _unfold(value)
        fields.append((key, unfolded))
        if key:
            decoded.setdefault(key, []).append(decode_header_value(value))
        values = raw.get(name.lower())
        if values is not None and len(values) < MAX_HEADER_REPEATS:
            values.append(unfolded)
    return {key: tuple(values) for key, values in decoded.items()}, raw, tuple(fields)


def _read_addresses(values: tuple[str, ...]) -> tuple[Address, ...]:
    result: list[Address] = []
    try:
        pairs = getaddresses(list(values))
    except Exception:  # an unreadable address list yields no addresses
        return ()
    for name, addr in pairs:
        addr = clean_line(addr).replace(" ", "")
        if "@" not in addr:
            continue
        result.append(Address(name=decode_header_value(name), email=addr))
        if len(result) >= MAX_ADDRESSES:
            break
    return tuple(result)


# The counselor's To and LinkedIn's From come back in every message.
_remembered_addresses = functools.lru_cache(maxsize=1024)(_read_addresses)


def _addresses(values: Sequence[str]) -> tuple[Address, ...]:
    """Addresses of raw header values; display names decoded and put on one line."""
    if not values:
        return ()
    values = tuple(values)
    if sum(map(len, values)) <= MAX_REMEMBERED_ADDRESS_CHARS:
        return _remembered_addresses(values)
    return _read_addresses(values)


def _date(values: Sequence[str]) -> datetime | None:
    if not values:
        return None
    try:
        return parsedate_to_datetime(values[0])
    except Exception:  # a broken Date header is simply absent
        return None


_unescape_entity = functools.lru_cache(maxsize=256)(html.unescape)  # "&amp;" in every link


def _unescape_entities(value: str) -> str:
    # Only terminated references: html.unescape would turn "&para=1" in a URL into "¶=1".
    return _ENTITY.sub(lambda m: _unescape_entity(m.group(0)), value) if "&" in value else value


def extract_links(text: str, html_text: str, *, originals: bool = True) -> tuple[str, ...]:
    """http(s) URLs: bare ones in ``text``, then ``href`` values in ``html_text``, de-duplicated.

    Each link is given as the person wrote it: the wrappers of mail gateways (Safe Links, URL
    Defense, LinkProtect, Secure Email) are undone by ``modbot.links``, so that every later
    stage sees where a link really leads. A link whose original is hidden (Mimecast) stays as
    found. ``originals=False`` gives the links as stored, wrappers and all.
    """
    from modbot.links import original_link

    found: list[str] = []
    for match in _BARE_URL.finditer(text[:MAX_SCAN_CHARS]):
        found.append(match.group(0).rstrip(_TRAILING))
    for match in _HREF.finditer(html_text[:MAX_SCAN_CHARS]):
        value = _unescape_entities(match.group(match.lastindex or 0))  # the alternative matched
        value = "".join(value.split())
        if value[:7].lower() == "http://" or value[:8].lower() == "https://":
            found.append(value)
    links = tuple(dict.fromkeys(url for url in found if url))[:MAX_LINKS]
    if not originals:
        return links
    as_written = []
    for url in links:
        original = original_link(url)  # a wrapped "javascript:" or "ftp:" link stays wrapped
        as_written.append(original if original[:8].lower().startswith(("http://", "https://"))
                          else url)
    return tuple(dict.fromkeys(as_written))


@functools.cache
def _silence_mailparser() -> None:
    """Drop every record of mail-parser's logger: it logs header values and part names.

    Done on first use rather than at import; a filter, unlike a level, also stops records from
    reaching logging's last-resort handler.
    """
    logs.silence("mailparser")


def _overridable(parser_class: type) -> bool:
    """Whether ``parser_class`` still builds its summaries in ``_make_mail``."""
    return callable(getattr(parser_class, "_make_mail", None))


@functools.cache
def _mail_parser() -> Any:
    """mail-parser's ``MailParser``, less the two summaries of the message modbot never reads.

    ``MailParser.parse`` ends by building ``mail`` and ``mail_partial``, dictionaries of every
    header decoded once more for mail-parser's JSON output. The message, its text and HTML parts
    and its defects are complete before that; they are all this module reads. mail-parser is
    imported here, on first use, so the cheap pre-fetch test never loads it.
    """
    import mailparser

    # _make_mail is an internal of mail-parser 4.x (constraints.txt pins the version CI
    # tests); a release without it gets mail-parser's own class, summaries and all.
    if not _overridable(mailparser.MailParser):
        return mailparser.MailParser

    class MailParser(mailparser.MailParser):  # type: ignore[misc]
        def _make_mail(self, complete: bool = True) -> dict[str, Any]:
            return {}

    return MailParser


def parse(raw: bytes) -> Notification:
    """Parse raw message bytes into a ``Notification``; never raises for bad mail."""
    _silence_mailparser()
    prepared, defects = _cap_headers(raw)
    text = body_html = ""
    message: Message | None
    try:
        parsed = _mail_parser().from_bytes(prepared)
        message = parsed.message
        text = valid_unicode("\n".join(parsed.text_plain))
        body_html = valid_unicode("\n".join(parsed.text_html))
        categories = sorted(str(c) for c in parsed.defects_categories)
        if categories:
            defects.append(f"mail-parser reported defects: {', '.join(categories)}.")
    except Exception:  # the stdlib raises on tiny inputs (CPython gh-151857); read the headers
        message = _header_only(prepared)
        defects.append("The message could not be parsed as MIME; only its headers were read."
                       if message is not None else "The message could not be parsed at all.")
    headers, raw_addresses, fields = _read_headers(message)
    from_ = _addresses(raw_addresses["from"])
    sender = _addresses(raw_addresses["sender"])
    message_id = headers.get("message-id", ("",))[0]
    return Notification(
        message_id=message_id or None,
        subject=headers.get("subject", ("",))[0],
        from_=from_[0] if from_ else None,
        sender=sender[0].email if sender else None,
        reply_to=_addresses(raw_addresses["reply-to"]),
        to=_addresses(raw_addresses["to"]),
        date=_date(headers.get("date", ())),
        headers=headers,
        text=text,
        html=body_html,
        links=extract_links(text, body_html),
        defects=tuple(defects),
        raw=raw,
        fields=fields,
    )


# --- the cheap pre-fetch test -----------------------------------------------------------------

_DOMAIN_IN = re.compile(r"@\[?([^\s<>\"',;()\[\]@]+)")


def domains_in(value: str) -> list[str]:
    """The domains of the addresses written in ``value``, lower-cased."""
    return [match.group(1).lower().rstrip(".>") for match in _DOMAIN_IN.finditer(value)]


_CANDIDATE_FIELD = re.compile(
    rb"^(x-linkedin-[^:\r\n]*|in-reply-to|references|from|sender|reply-to|return-path"
    rb"|feedback-id|message-id)[ \t]*:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)",
    re.IGNORECASE | re.MULTILINE)


def _candidate_fields(header_bytes: bytes) -> Iterable[tuple[bytes, bytes]]:
    for field in _CANDIDATE_FIELD.finditer(header_bytes[: _header_end(header_bytes)]):
        yield field.group(1).lower(), field.group(2)[:4096]


def linkedin_candidate(header_bytes: bytes) -> bool:
    """Whether a message is worth fetching whole, judged from its header block alone.

    True for anything that claims or imitates LinkedIn (From, Sender, Reply-To or Return-Path
    domains, X-LinkedIn-* headers, a ``:linkedin`` Feedback-ID, a LinkedIn Message-ID) and for
    any reply (In-Reply-To or References), since a person answering our mail must be seen.
    When the header block cannot be read at all it answers True: fetching is the safe side.
    """
    try:
        for name, value in _candidate_fields(header_bytes):
            if name.startswith(b"x-linkedin-"):
                return True
            if name in (b"in-reply-to", b"references"):
                if value.strip():
                    return True
                continue
            text = decode_header_value(value.decode("utf-8", "replace"))
            if name == b"feedback-id":
                if text.lower().endswith(":linkedin"):
                    return True
                continue
            if any(looks_like_linkedin_domain(d) for d in domains_in(text)):
                return True
            if name == b"from" and claims_linkedin_name(text):
                return True
        return False
    except Exception:  # unreadable headers: fetch the message and let parse() judge
        return True
