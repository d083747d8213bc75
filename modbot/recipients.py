"""Find how to reach the person a notification is about.

Sources, in order: the LinkedIn message relay (``…@reply.linkedin.com``) for LinkedIn messages;
otherwise the counselor's directory alone (a ``Reply-To`` is never an address by itself: no
LinkedIn signature covers it): a CSV export of the campus directory
(``name,email,linkedin_url``), the campus LDAP server (``modbot.ldap_directory``), or both
asked together. Every directory matches the same way
(``Index``): by a profile URL whose entry goes by the notification's name, then by a unique,
exactly matching normalized name. Ambiguous, partial or missing matches are ``Unresolved``
with the reason, and so is a directory that cannot be reached.

The directory is everyone's, never a client list. Matching is pure; only ``CsvDirectory.from_csv``
reads a file, and only ``modbot.ldap_directory`` talks to a server. This module must never guess
an address.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from modbot.errors import DirectoryError
from modbot.model import Authenticity, Classification, Kind, Recipient, Resolution, Unresolved

if TYPE_CHECKING:
    from modbot.config import DirectorySettings

# One plain ASCII address: anything else (lists, UTF-8, quoted local parts) is refused at load.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
_RELAY_DOMAIN = "reply.linkedin.com"
log = logging.getLogger(__name__)


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


def normalize_profile_url(url: str) -> str | None:
    """A comparable key for a LinkedIn profile URL: ``in/<vanity>`` or ``id/<member id>``.

    Both sides of a match come here. A notification gives ``/comm/in/<vanity>`` on any LinkedIn
    host (``se.linkedin.com`` since 2025) or an accept link naming the inviter; a directory entry
    is typed by people, so its scheme may be missing and its vanity name in capitals or
    percent-encoded. Links to hosts other than linkedin.com give None.
    """
    from urllib.parse import unquote

    # One reading of LinkedIn's links for the message and the directory alike.
    from modbot.person import normalise_profile_url

    text = url.strip()
    if text and "://" not in text:
        text = "https://" + text.lstrip("/")
    canonical = normalise_profile_url(text)
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

    ``CsvDirectory`` reads a file once; ``modbot.ldap_directory.LdapDirectory`` asks the campus
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

    @staticmethod
    def from_csv(path: Path) -> CsvDirectory:
        """Same as ``CsvDirectory.from_csv``; ``open_directory`` builds any configured kind."""
        return CsvDirectory.from_csv(path)


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
            key = normalize_profile_url(url)
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
            key = normalize_profile_url(profile_url)
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


class CsvDirectory(Directory):
    """A ``name,email,linkedin_url`` CSV export of the campus directory, read once.

    Campus exports are messy, and one bad row must not make everyone else unreachable: a row
    without a name or without one plain address is skipped and told in ``warnings`` (by line
    number, never by its content). Columns may be separated by ``,``, ``;`` (Excel in many
    locales) or tabs; header names are read without regard to case, spaces or hyphens
    (``E-mail`` is ``email``); a file that is not UTF-8 is read as Windows-1252, Excel's
    default, with a warning.
    """

    source = "directory-csv"

    def __init__(self) -> None:
        self.index = Index(self.source)
        self.people = 0
        self.skipped = 0
        self.warnings: tuple[str, ...] = ()

    def add(self, entry: Entry) -> None:
        self.index.add(entry)
        self.people += 1

    @classmethod
    def from_csv(cls, path: Path) -> CsvDirectory:
        """Read a ``name,email,linkedin_url`` CSV; raise ``DirectoryError`` when the file as a
        whole cannot be used (missing, unreadable, no header with name and email)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DirectoryError(f"cannot read the directory {path}: {exc.strerror}") from None
        notes: list[str] = []
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
            notes.append(f"{path} is not UTF-8; it was read as Windows-1252, so accented names "
                         "may be wrong: export it as \"CSV UTF-8\"")
        directory = cls()
        problems: list[str] = []
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""),
                                    delimiter=_delimiter(text))
            reader.fieldnames = [_column(name) for name in reader.fieldnames or ()]
            missing = {"name", "email"} - set(reader.fieldnames)
            if missing:
                raise DirectoryError(
                    f"{path}: the header row lacks {', '.join(sorted(missing))} "
                    "(expected name,email,linkedin_url)"
                )
            for row in reader:
                line = reader.line_num
                name = (row.get("name") or "").strip()
                email = (row.get("email") or "").strip()
                why = ("has no name" if not name else "has no email" if not email
                       else None if is_plain_address(email) else "has no plain email address")
                if why is not None:
                    problems.append(f"line {line} {why}")
                    continue
                url = (row.get("linkedin_url") or "").strip()
                directory.add(Entry((name,), email, (url,) if url else ()))
        except csv.Error as exc:
            raise DirectoryError(f"{path}: not a readable CSV file ({exc})") from None
        directory.skipped = len(problems)
        if problems:
            shown = "; ".join(problems[:_SHOWN_ROWS])
            more = f"; and {len(problems) - _SHOWN_ROWS} more" if len(problems) > _SHOWN_ROWS \
                else ""
            row_s = "row" if len(problems) == 1 else "rows"
            notes.append(f"{path}: {len(problems)} {row_s} skipped ({shown}{more}); "
                         f"correct {'it' if len(problems) == 1 else 'them'} in the export")
        if directory.people == 0:
            notes.append(f"{path} lists nobody: every invitation will be held")
        directory.warnings = tuple(notes)
        for note in notes:
            log.warning("directory: %s", note)
        return directory

    def lookup(self, name: str | None, profile_url: str | None) -> Resolution:
        return self.index.lookup(name, profile_url)


_SHOWN_ROWS = 5
# What campus exports call the three columns, once lower-cased and with spaces and hyphens as _.
_COLUMNS = {"e_mail": "email", "email_address": "email", "mail": "email",
            "linkedin": "linkedin_url", "linkedin_profile": "linkedin_url",
            "profile_url": "linkedin_url"}


def _column(header: str) -> str:
    """A header cell as the column it names: ``" E-mail "`` → ``email``."""
    key = re.sub(r"[\s-]+", "_", header.strip().lower())
    return _COLUMNS.get(key, key)


def _delimiter(text: str) -> str:
    """The separator the header row uses most: ``,``, ``;`` (Excel in many locales) or tab."""
    header = text.split("\n", 1)[0]
    return max(",;\t", key=header.count)


class CombinedDirectory(Directory):
    """Several directories asked together (the CSV file and the LDAP server): they must agree.

    Every directory must answer: one that is ambiguous or cannot be read holds the item. Among
    the matches, profile-URL matches outrank name matches, as within one directory, and the
    address is used only when all the matches of that rank give the same one. Asking the CSV
    first and stopping there would pick one of two namesakes when each directory holds one.
    """

    source = "directory"

    def __init__(self, *parts: Directory) -> None:
        self.parts = parts
        self.warnings = tuple(warning for part in parts for warning in part.warnings)

    def check(self) -> None:
        for part in self.parts:
            part.check()

    def lookup(self, name: str | None, profile_url: str | None) -> Resolution:
        found = [part.lookup(name, profile_url) for part in self.parts]
        problems = [r for r in found if isinstance(r, Unresolved) and r not in (NOT_FOUND, NO_NAME)]
        if problems:
            return problems[0]
        recipients = [r for r in found if isinstance(r, Recipient)]
        chosen = [r for r in recipients if r.source.endswith(":profile-url")] or recipients
        if not chosen:
            return found[0]
        if len({r.email.lower() for r in chosen}) > 1:
            return Unresolved("the directories give different addresses for this person")
        return chosen[0]


def is_plain_address(value: str) -> bool:
    """One plain ASCII address: lists, UTF-8 and quoted local parts are refused."""
    return bool(_EMAIL.match(value))


def open_directory(settings: DirectorySettings) -> Directory | None:
    """The directory the configuration names, or None; ``DirectoryError`` if it cannot be used.

    The CSV file is read now. The LDAP server is not contacted: it is asked at each lookup, so
    a server that is down when modbot starts only holds the items that need it.
    """
    parts: list[Directory] = []
    if settings.csv is not None:
        parts.append(CsvDirectory.from_csv(settings.csv))
    if settings.ldap_url is not None:
        from modbot.ldap_directory import LdapDirectory  # ldap3 only where LDAP is configured

        parts.append(LdapDirectory.from_settings(settings))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else CombinedDirectory(*parts)


def _unique(entries: list[Entry]) -> list[Entry]:
    seen: dict[str, Entry] = {}
    for entry in entries:
        seen.setdefault(entry.email.lower(), entry)
    return list(seen.values())


def resolve(classification: Classification, authenticity: Authenticity,
            directory: Directory | None) -> Resolution:
    """Where to send the reply for this notification, or why there is nowhere."""
    person = classification.person
    display = person.name or ""
    if classification.kind is Kind.LINKEDIN_MESSAGE:
        relay = person.relay_address
        if relay and relay.lower().endswith("@" + _RELAY_DOMAIN):
            return Recipient(display, relay, "linkedin-relay")
        return Unresolved("the LinkedIn message carries no reply relay address")
    if directory is None:
        return Unresolved("no directory is configured to find the person's address")
    return directory.lookup(person.name, person.profile_url)
