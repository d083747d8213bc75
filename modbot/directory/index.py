"""How a person is found in a directory: entries, the index, and the keys it compares.

What it is for: every kind of directory (the CSV export, the LDAP server, both together) answers
``Directory.lookup`` by the same rules, written once in ``Index``: a profile URL whose entry goes
by the notification's name, then a unique, exactly matching normalized name. Ambiguous, partial
or missing matches are ``Unresolved`` with the reason. ``profile_key`` and ``normalize_name`` are
the keys both sides of a match are compared by.

Pure: no file, network, clock or environment. It must never guess an address: the directory is
everyone's, never a client list.
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from modbot.model import Recipient, Resolution, Unresolved

# One plain ASCII address: anything else (lists, UTF-8, quoted local parts) is refused at load.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


def normalize_name(name: str) -> str:
    """Case, accents, punctuation and extra spaces removed: "  José  O'Neil " → "jose oneil"."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    plain = re.sub(r"[^\w\s-]", "", plain.casefold()).replace("-", " ")
    return " ".join(plain.split())


def _name_forms(names: tuple[str, ...]) -> list[str]:
    """The names as written, and "Rivera, Jordan" also as "Jordan Rivera" (exports write both)."""
    forms = list(names)
    for name in names:
        last, comma, first = name.partition(",")
        if comma and "," not in first and first.strip() and last.strip():
            forms.append(f"{first} {last}")
    return forms


def first_and_last(normalized: str) -> str:
    """"maria del carmen lopez" → "maria lopez": where two names may be one person's."""
    parts = normalized.split()
    return f"{parts[0]} {parts[-1]}" if len(parts) > 1 else normalized


def profile_key(url: str) -> str | None:
    """A comparison key for a LinkedIn profile URL: ``in/<vanity>`` or ``id/<member id>``.

    Both sides of a match come here. A notification gives ``/comm/in/<vanity>`` on any LinkedIn
    host (``se.linkedin.com`` since 2025) or an accept link naming the inviter; a directory entry
    is typed by people, so its scheme may be missing and its vanity name in capitals or
    percent-encoded. Links to hosts other than linkedin.com give None.
    """
    # One reading of LinkedIn's links for the message and the directory alike.
    from modbot.person import canonical_profile_url

    text = url.strip()
    if text and "://" not in text:
        text = "https://" + text.lstrip("/")
    canonical = canonical_profile_url(text)
    if canonical is None:
        return None
    parts = urlsplit(canonical)
    path = parts.path.removeprefix("/comm")
    if path.startswith("/in/"):
        vanity = unicodedata.normalize("NFC", unquote(path[len("/in/"):]))
        return f"in/{vanity.casefold()}"
    ids = parse_qs(parts.query).get("id")
    return f"id/{ids[0]}" if ids else None


@dataclass(frozen=True)
class Entry:
    """One person: the names they go by (the first is used to address them), one address, and
    the profile URLs the directory holds for them."""

    names: tuple[str, ...]
    email: str
    profile_urls: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.names[0]


NOT_FOUND = Unresolved("the person is not in the directory")
NO_NAME = Unresolved("the notification names no person to look up")


class Directory(ABC):
    """Where a person's address is looked up; ``lookup`` is the whole interface.

    ``CsvDirectory`` reads a file once; ``modbot.directory.ldap.LdapDirectory`` asks the campus
    LDAP server at every lookup; ``CombinedDirectory`` asks both. All match the same way: a
    profile URL first, then a unique normalized name (see ``Index``). A lookup never raises: a
    directory that cannot be read at that moment gives ``Unresolved`` with the reason, and the
    item is held for the counselor.
    """

    source: str
    # What a person should fix in the directory without it being unusable (skipped rows of a
    # CSV export): for `modbot check` and the digest's health.
    warnings: tuple[str, ...] = ()

    @abstractmethod
    def lookup(self, name: str | None, profile_url: str | None) -> Resolution:
        """The one directory entry for this person, or why there is none."""

    def check(self) -> None:
        """Raise ``DirectoryError`` if the directory cannot be used now (for ``modbot check``).

        A directory read at start (the CSV file) was checked then.
        """
        return


@dataclass
class Index:
    """Entries by profile URL key, by normalized name and by first-and-last name, in memory.

    The matching rules live here, once, for every kind of directory. A profile URL decides only
    when it matches exactly one address *and* that entry goes by the notification's name: the
    link may come from text the person wrote, the name from LinkedIn's signed From. Otherwise
    the full normalized name must match exactly one address. A name that matches only by its
    first and last words ("Maria Lopez" and "Maria Elena Lopez") may be two people: it is
    unresolved, naming the candidates for the counselor. Entries sharing an address count once.
    """

    source: str
    by_url: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    by_name: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    by_first_last: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))

    def add(self, entry: Entry) -> None:
        for url in entry.profile_urls:
            key = profile_key(url)
            if key:
                self.by_url[key].append(entry)
        names = {normalize_name(raw) for raw in _name_forms(entry.names)} - {""}
        for name in names:
            self.by_name[name].append(entry)
        for short in {first_and_last(name) for name in names}:
            self.by_first_last[short].append(entry)

    def lookup(self, name: str | None, profile_url: str | None) -> Resolution:
        normalized = normalize_name(name or "")
        if profile_url:
            key = profile_key(profile_url)
            matches = _unique(self.by_url.get(key, [])) if key else []
            if len(matches) > 1:
                return Unresolved("the profile URL matches several directory entries")
            if len(matches) == 1:
                entry = matches[0]
                if normalized and normalized in {normalize_name(n)
                                                 for n in _name_forms(entry.names)}:
                    return Recipient(entry.name, entry.email, f"{self.source}:profile-url")
                return Unresolved(
                    f"the profile link belongs to {entry.name} in the directory, but the "
                    f"notification names {name or 'no one'}: two people, or a link the "
                    "person wrote; not answered automatically")
        if not (name or "").strip():
            return NO_NAME
        if not normalized:
            return NOT_FOUND
        matches = _unique(self.by_name.get(normalized, []))
        if len(matches) == 1:
            return Recipient(matches[0].name, matches[0].email, f"{self.source}:name")
        if len(matches) > 1:
            return Unresolved(f"{len(matches)} directory entries share this name")
        near = _unique(self.by_first_last.get(first_and_last(normalized), []))
        if near:
            who = ", ".join(e.name for e in near[:3]) + (" or others" if len(near) > 3 else "")
            return Unresolved(f"no one in the directory has exactly this name; {who} may be "
                              "this person: check before answering")
        return NOT_FOUND


def is_plain_address(value: str) -> bool:
    """One plain ASCII address: lists, UTF-8 and quoted local parts are refused."""
    return bool(_EMAIL.match(value))


def _unique(entries: list[Entry]) -> list[Entry]:
    seen: dict[str, Entry] = {}
    for entry in entries:
        seen.setdefault(entry.email.lower(), entry)
    return list(seen.values())
