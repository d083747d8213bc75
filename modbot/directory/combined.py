"""Several directories asked together, and the directory the configuration names.

What it is for: ``open_directory`` builds the CSV directory, the LDAP directory, or both as a
``CombinedDirectory`` that holds the item unless they agree. It reads the CSV file when called
and imports ldap3 only when LDAP is configured; it must never pick one of two disagreeing
answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modbot.directory.csv import CsvDirectory
from modbot.directory.index import NO_NAME, NOT_FOUND, Directory
from modbot.model import Recipient, Resolution, Unresolved

if TYPE_CHECKING:
    from modbot.config import DirectorySettings


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


def open_directory(settings: DirectorySettings) -> Directory | None:
    """The directory the configuration names, or None; ``DirectoryError`` if it cannot be used.

    The CSV file is read now. The LDAP server is not contacted: it is asked at each lookup, so
    a server that is down when modbot starts only holds the items that need it.
    """
    parts: list[Directory] = []
    if settings.csv is not None:
        parts.append(CsvDirectory.from_csv(settings.csv))
    if settings.ldap_url is not None:
        from modbot.directory.ldap import LdapDirectory  # ldap3 only where LDAP is configured

        parts.append(LdapDirectory.from_settings(settings))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else CombinedDirectory(*parts)
