"""Whom a LinkedIn notification is about: name, headline, profile, invitation, relay, group.

What it is for: once the classifier has decided the kind, read from the message the person to
answer (their name, the headline under it, their profile URL, the invitation id, LinkedIn's
relay address and a personal Reply-To) or, for group mail, the group. It reads the text part,
the HTML as text and the links, in the languages LinkedIn writes to our counselors.

Pure: no network, database, clock or environment, and it never raises for bad mail. It must
never take the counselor (named in the "This email was intended for" footer, or linked from the
header and footer) or "LinkedIn" itself for the person, never guess a name from an address, and
never log message content.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from modbot.brand import claims_linkedin_name, is_linkedin, is_linkedin_link
from modbot.kinds import PERSON_KINDS
from modbot.model import Kind, Notification, Person, Verdict
from modbot.parse import MAX_SCAN_CHARS, clean_line, extract_links

__all__ = ["APOSTROPHE", "PERSON_KINDS", "canonical_profile_url", "find_person"]

APOSTROPHE = "['\u2019]"  # the typewriter and the typographic apostrophe, in a pattern
_Q = APOSTROPHE
_VIA = re.compile(r"\s+(?:via|v[ií]a|[üu]ber|par|atrav[ée]s d[eo]|tramite|melalui)\s+LinkedIn$",
                  re.IGNORECASE)
_NAME_IN_TEXT = tuple(re.compile(p, re.IGNORECASE | re.MULTILINE) for p in (
    rf"View (?P<name>[^\n]{{1,80}}?){_Q}s profile",
    rf"^(?P<name>[^\n]{{1,80}}?){_Q}s invitation is awaiting",
    r"^(?P<name>[^\n]{1,80}?) (?:wants|has requested|requested|asked) to join",
    r"^(?P<name>[^\n]{1,80}?) (?:has asked|asked|is asking) you for a recommendation",
    r"^(?P<name>[^\n]{1,80}?) (?:has sent|sent) you a (?:new )?message",
))
_COUNSELOR_WORDS = (
    r"(?:This email was intended for|Este (?:correo electr[oó]nico|email|mensaje) iba dirigido a"
    r"|Cet e-mail [ée]tait destin[ée] [àa]|Diese E-Mail war f[üu]r|Este e-mail foi enviado para"
    r"|Questa email [èe] stata inviata a|Email ini ditujukan untuk)")
_COUNSELOR_NAME = r"\s+(?P<name>[^(\n.]{1,100})"
_COUNSELOR = re.compile(_COUNSELOR_WORDS + _COUNSELOR_NAME, re.IGNORECASE)
# The same phrases searched in lower-cased text, several times faster than IGNORECASE; not
# where IGNORECASE would match a letter that lower() leaves apart (long s, dotless i, ...).
_COUNSELOR_LOWER = re.compile(_COUNSELOR_WORDS.lower() + _COUNSELOR_NAME)
_CASE_TWINS = re.compile("[\u017f\u0131\u1e9e\u1e9b\u03d0\u03d1\u03d5\u03d6\u03f0\u03f1"
                         "\u03f5\u1fbe\u0345\u0390\u03b0]")
_GROUP = tuple(re.compile(p, re.IGNORECASE | re.MULTILINE) for p in (
    r"(?:to join|unirse a|rejoindre|participar do|unirsi a|bergabung dengan) (?:your |the )?"
    r"(?:group |grupo |groupe |gruppo |grup )?[\"\u201c\u00ab]?"
    r"(?P<group>[^\"\u201d\u00bb\n]{2,100}?)[\"\u201d\u00bb]?(?: group)?[.!]?$",
    r"(?:conversations?|discussions?|posts?|posted|activity) in (?:the |your )?(?:group )?"
    r"[\"\u201c\u00ab]?(?P<group>[^\"\u201d\u00bb\n]{2,100}?)[\"\u201d\u00bb]?[.!]?$",
))
_ANCHOR = re.compile(r"(<a\b[^>]{0,4096}>)(.{0,2000}?)</a\s*>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]{0,4096}>")
# "View <Name>'s profile: <url>", "Lihat profil <Name>: <url>", "Profil von <Name> anzeigen: …"
_LABELLED_LINK = re.compile(r"^([^\n:]{1,160}):[ \t]*(https?://\S+)", re.MULTILINE)
_PROFILE_PATH = re.compile(r"(?:/comm)?/(?:profile/view|in/[^/?#\s]+)", re.IGNORECASE)
_INVITATION_ID = re.compile(
    r"[?&]invitationId=([A-Za-z0-9_-]{1,64})|/invitationId/([A-Za-z0-9_-]{1,64})", re.IGNORECASE)


def canonical_profile_url(url: str) -> str | None:
    """``https://www.linkedin.com/<path>`` of a LinkedIn profile link, tracking removed, or None.

    Any linkedin.com host counts (``se.linkedin.com`` since 2025). An accept link that names
    the inviter (``…/invite-accept/invitationId/<id>/sharedKey/<k>/?inviterVanityName=<v>``)
    gives the inviter's profile, ``https://www.linkedin.com/in/<v>``. A link a mail gateway
    wrapped (Safe Links, URL Defense, …) is read as the link inside.
    """
    from modbot.links import original_link

    try:
        parts = urlsplit(original_link(url.strip()))
    except ValueError:
        return None
    path = parts.path.rstrip("/")
    if parts.scheme.lower() not in ("http", "https") or not is_linkedin(parts.hostname or ""):
        return None
    if re.fullmatch(r"(?:/comm)?/(?:mynetwork|people)/invite-accept(?:/[^?#]*)?", path,
                    re.IGNORECASE):
        names = [value for key, _, value in (p.partition("=") for p in parts.query.split("&"))
                 if key == "inviterVanityName" and re.fullmatch(r"[A-Za-z0-9_%-]{1,200}", value)]
        return f"https://www.linkedin.com/in/{names[0]}" if names else None
    if not _PROFILE_PATH.fullmatch(path):
        return None
    if path.lower().endswith("/profile/view"):
        ids = [value for key, _, value in (p.partition("=") for p in parts.query.split("&"))
               if key == "id" and re.fullmatch(r"[A-Za-z0-9_%-]{1,200}", value)]
        return f"https://www.linkedin.com{path}?id={ids[0]}" if ids else None
    return f"https://www.linkedin.com{path}"


def _profile_rank(url: str) -> int:
    """0: the person's (hero, inviter, sender); 1: other; 2: the counselor's (header, footer)."""
    lower = url.lower()
    if "-header-" in lower or "-footer-" in lower:
        return 2
    return 0 if any(h in lower for h in ("hero", "invacpt", "inviter", "sender")) else 1


def _anchors(markup: str) -> Iterator[tuple[str, str]]:
    """(link, inner markup) of each HTML anchor, the link read as ``extract_links`` reads it."""
    for match in _ANCHOR.finditer(markup[:MAX_SCAN_CHARS]):
        for url in extract_links("", match.group(1)):
            yield url, match.group(2)


def _visible(inner: str) -> str:
    """An anchor's visible text, on one line."""
    return clean_line(html.unescape(_TAGS.sub(" ", inner)))


def _profile_url(n: Notification, name: str | None) -> str | None:
    """The person's profile link, read from LinkedIn's own structure only.

    The invitation's note is the inviter's own text and sits above LinkedIn's lines, so a
    labelled link ("View <Name>'s profile: <url>", in any language) counts only when its label
    names the person, and only the last such line, which is LinkedIn's. In the HTML part, where
    a note is text and never a link, an anchor counts when its text is the person's name or
    LinkedIn marked it as the sender's. The directory still checks that the link's owner goes
    by the name.
    """
    wanted = (name or "").casefold()
    if not wanted:
        return None
    named = [m.group(2) for m in _LABELLED_LINK.finditer(n.text[:MAX_SCAN_CHARS])
             if wanted in clean_line(m.group(1)).casefold()]
    labelled = canonical_profile_url(named[-1]) if named else None
    if labelled:
        return labelled  # the HTML part is read only when the text part has no such line
    anchors = [(url, profile, _visible(inner)) for url, inner in _anchors(n.html)
               for profile in [canonical_profile_url(url)] if profile]
    return next(itertools.chain((p for _, p, text in anchors if text.casefold() == wanted),
                                (p for url, p, _ in anchors if _profile_rank(url) == 0)), None)


class _Counselors:
    """The names the footer says the message was intended for, casefolded; read on first use."""

    def __init__(self, words: str) -> None:
        self._words = words
        self._names: frozenset[str] | None = None

    def __contains__(self, name: str) -> bool:
        if self._names is None:
            words = self._words
            lower = words.lower()
            if len(lower) == len(words) and not _CASE_TWINS.search(words):  # same offsets
                found = (words[m.start("name"):m.end("name")]
                         for m in _COUNSELOR_LOWER.finditer(lower))
            else:
                found = (m.group("name") for m in _COUNSELOR.finditer(words))
            self._names = frozenset(clean_line(n).casefold() for n in found)
        return name in self._names


def _names_in_text(words: str) -> Iterator[str]:
    return (m.group("name") for rx in _NAME_IN_TEXT for m in [rx.search(words)] if m)


def _name(kind: Kind, n: Notification, words: str, counselors: _Counselors) -> str | None:
    from_name = _VIA.sub("", n.from_.name) if n.from_ else ""
    found = _names_in_text(words)  # searched only as far as the candidates are tried
    for candidate in (itertools.chain(found, [from_name]) if kind is Kind.GROUP_JOIN_REQUEST
                      else itertools.chain([from_name], found)):
        name = clean_line(candidate).strip("\"'\u201c\u201d")[:100]
        if name and "@" not in name and not claims_linkedin_name(name) \
                and name.casefold() not in counselors:
            return name
    return None


def _headline(lines: Sequence[str], name: str | None, counselors: _Counselors) -> str | None:
    for i, line in enumerate(lines[:-1]):
        if name and line.casefold() == name.casefold():
            after = lines[i + 1]
            if len(after) <= 200 and "://" not in after and not after.endswith(":") \
                    and not re.match(r"(?:Accept|View|Ver|Voir|Lihat|Hi|Hello)\b", after) \
                    and after.casefold() not in counselors and not claims_linkedin_name(after):
                return after
    return None


def _group(words: str) -> str | None:
    return next((clean_line(m.group("group")) for rx in _GROUP
                 for m in [rx.search(words)] if m), None)


def find_person(kind: Kind, n: Notification, verdict: Verdict, words: str,
                lines: Sequence[str]) -> Person:
    """The person (or, for group activity, the group) a notification of ``kind`` is about.

    ``words`` is the subject and body text the phrases are searched in, ``lines`` the body's
    non-empty lines (the text part, else the HTML as text), both as the classifier read them.
    Kinds about no one person give an empty ``Person``. A personal Reply-To address is kept only
    when ``verdict`` is authentic: a spoof could otherwise choose where replies go.
    """
    if kind is Kind.GROUP_ACTIVITY:
        return Person(group=_group(words))
    if kind not in PERSON_KINDS:
        return Person()
    counselors = _Counselors(words)
    name = _name(kind, n, words, counselors)
    invitation = None
    if kind is Kind.CONNECTION_INVITATION:
        ids = (m.group(1) or m.group(2) for u in n.links if is_linkedin_link(u)
               for m in [_INVITATION_ID.search(u)] if m)
        invitation = next(ids, None)
    relay = next((a.email for a in n.reply_to
                  if a.email.rpartition("@")[2].lower() == "reply.linkedin.com"), None)
    return Person(
        name=name,
        headline=_headline(lines, name, counselors) if kind is Kind.CONNECTION_INVITATION
        else None,
        profile_url=_profile_url(n, name),
        invitation_id=invitation,
        relay_address=relay,
        group=_group(words) if kind is Kind.GROUP_JOIN_REQUEST else None,
    )
