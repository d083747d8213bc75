"""Find how to reach the person a notification is about.

Sources, in order: the LinkedIn message relay (``…@reply.linkedin.com``) for LinkedIn messages;
a legacy personal ``Reply-To`` only on a message proven authentic; the counselor's directory (a
CSV export of the campus directory: ``name,email,linkedin_url``), matched by profile URL first,
then by a unique normalized name. Ambiguous or missing matches are ``Unresolved`` with the reason.

The directory is everyone's, never a client list. Matching is pure; only
:meth:`Directory.from_csv` reads a file. This module must never guess an address.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from modbot.errors import DirectoryError
from modbot.model import Authenticity, Classification, Kind, Recipient, Resolution, Unresolved

# One plain ASCII address: anything else (lists, UTF-8, quoted local parts) is refused at load.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
_RELAY_DOMAIN = "reply.linkedin.com"


def normalize_name(name: str) -> str:
    """Case, accents, punctuation and extra spaces removed: "  José  O'Neil " → "jose oneil"."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    plain = re.sub(r"[^\w\s-]", "", plain.casefold()).replace("-", " ")
    return " ".join(plain.split())


def _first_last(normalized: str) -> str:
    """"maria del carmen lopez" → "maria lopez", so middle names do not block a match."""
    parts = normalized.split()
    return f"{parts[0]} {parts[-1]}" if len(parts) > 1 else normalized


def normalize_profile_url(url: str) -> str | None:
    """A comparable key for a LinkedIn profile URL: ``in/<vanity>`` or ``id/<member id>``."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/").lower()
    path = path.removeprefix("/comm")
    match = re.match(r"^/in/([^/]+)", path)
    if match:
        return f"in/{match.group(1)}"
    if path == "/profile/view":
        ids = parse_qs(parts.query).get("id")
        if ids:
            return f"id/{ids[0]}"
    return None


@dataclass(frozen=True)
class Entry:
    name: str
    email: str
    profile_url: str | None


@dataclass
class Directory:
    """An in-memory index of directory entries by profile URL and by normalized name."""

    by_url: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    by_name: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))
    source: str = "directory-csv"

    def add(self, entry: Entry) -> None:
        if entry.profile_url:
            key = normalize_profile_url(entry.profile_url)
            if key:
                self.by_url[key].append(entry)
        name = normalize_name(entry.name)
        if name:
            self.by_name[name].append(entry)
            first_last = _first_last(name)
            if first_last != name:
                self.by_name[first_last].append(entry)

    @classmethod
    def from_csv(cls, path: Path) -> Directory:
        """Read a ``name,email,linkedin_url`` CSV; raise ``DirectoryError`` on a bad file."""
        directory = cls()
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                missing = {"name", "email"} - set(reader.fieldnames or ())
                if missing:
                    raise DirectoryError(
                        f"{path}: the header row lacks {', '.join(sorted(missing))} "
                        "(expected name,email,linkedin_url)"
                    )
                for line, row in enumerate(reader, start=2):
                    name = (row.get("name") or "").strip()
                    email = (row.get("email") or "").strip()
                    if not name or not _EMAIL.match(email):
                        raise DirectoryError(f"{path}, line {line}: needs a name and an email")
                    url = (row.get("linkedin_url") or "").strip() or None
                    directory.add(Entry(name, email, url))
        except OSError as exc:
            raise DirectoryError(f"cannot read the directory {path}: {exc.strerror}") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DirectoryError(f"{path}: not a readable CSV file ({exc})") from None
        return directory

    def lookup(self, name: str | None, profile_url: str | None) -> Resolution:
        if profile_url:
            key = normalize_profile_url(profile_url)
            matches = _unique(self.by_url.get(key, [])) if key else []
            if len(matches) == 1:
                return Recipient(matches[0].name, matches[0].email, f"{self.source}:profile-url")
            if len(matches) > 1:
                return Unresolved("the profile URL matches several directory entries")
        if not name:
            return Unresolved("the notification names no person to look up")
        normalized = normalize_name(name)
        matches = _unique(self.by_name.get(normalized, []))
        if not matches:
            matches = _unique(self.by_name.get(_first_last(normalized), []))
        if len(matches) == 1:
            return Recipient(matches[0].name, matches[0].email, f"{self.source}:name")
        if len(matches) > 1:
            return Unresolved(f"{len(matches)} directory entries share this name")
        return Unresolved("the person is not in the directory")


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
    if person.reply_to_address and authenticity.authentic is True:
        return Recipient(display, person.reply_to_address, "reply-to")
    if directory is None:
        return Unresolved("no directory is configured to find the person's address")
    return directory.lookup(person.name, person.profile_url)
