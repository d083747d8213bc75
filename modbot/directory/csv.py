"""The campus directory as a CSV export (``name,email,linkedin_url``), read once.

What it is for: turn the export a campus IT office hands over, messy as it comes (``;`` or tabs,
``E-mail`` headers, Windows-1252), into an ``Index``, skipping a bad row with a warning rather
than refusing the file. It reads one file when asked and nothing else; it must never log a
row's content (a warning names the line only), and never guess an address.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path

from modbot.directory.index import Directory, Entry, Index, is_plain_address
from modbot.errors import DirectoryError
from modbot.model import Resolution

log = logging.getLogger(__name__)


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
