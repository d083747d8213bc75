"""Reading a campus directory export as campus IT really produces it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from modbot.directory.csv import CsvDirectory
from modbot.errors import DirectoryError
from modbot.model import Recipient, Unresolved


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "directory.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_a_bad_row_is_skipped_and_the_rest_is_used(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Rows with a blank or invalid email are skipped with their line numbers; others load."""
    path = write(tmp_path, "name,email,linkedin_url\n"
                           "Jordan Rivera,jrivera@students.example.edu,\n"
                           "Priya Natarajan,,\n"
                           "Sam Lee,sam at example,\n"
                           ",nobody@students.example.edu,\n"
                           "Ana Núñez,anunez@students.example.edu,\n")
    with caplog.at_level(logging.WARNING):
        directory = CsvDirectory.from_csv(path)
    assert directory.people == 2
    assert directory.skipped == 3
    (warning,) = directory.warnings
    assert "3 rows skipped" in warning
    assert "line 3 has no email" in warning
    assert "line 4 has no plain email address" in warning
    assert "line 5 has no name" in warning
    assert "sam at example" not in warning  # the row's content is never repeated
    assert isinstance(directory.lookup("Ana Nunez", None), Recipient)
    assert isinstance(directory.lookup("Priya Natarajan", None), Unresolved)
    assert "3 rows skipped" in caplog.text


def test_semicolon_export_with_excel_headers_is_read(tmp_path: Path) -> None:
    """A ;-separated export with headers like "Name;E-mail;LinkedIn URL" is read."""
    path = write(tmp_path, "\ufeffName;E-mail;LinkedIn URL\r\n"
                           "Rivera, Jordan;jrivera@students.example.edu;"
                           "https://www.linkedin.com/in/jordan-rivera\r\n")
    directory = CsvDirectory.from_csv(path)
    found = directory.lookup("Jordan Rivera", "https://www.linkedin.com/in/jordan-rivera/")
    assert isinstance(found, Recipient)
    assert found.email == "jrivera@students.example.edu"
    assert directory.warnings == ()


def test_windows_1252_export_is_read_with_a_warning(tmp_path: Path) -> None:
    """A file Excel saved as Windows-1252 is read, and the admin is told to save it as UTF-8."""
    path = write(tmp_path, "name,email\nJosé Núñez,jnunez@students.example.edu\n", "cp1252")
    directory = CsvDirectory.from_csv(path)
    found = directory.lookup("José Núñez", None)
    assert isinstance(found, Recipient)
    assert any("Windows-1252" in w for w in directory.warnings)


def test_a_directory_of_nobody_is_a_warning(tmp_path: Path) -> None:
    """A header with no usable row loads, with a warning that every invitation will be held."""
    directory = CsvDirectory.from_csv(write(tmp_path, "name,email\n"))
    assert directory.people == 0
    assert any("lists nobody" in w for w in directory.warnings)


def test_missing_columns_still_refuse_the_file(tmp_path: Path) -> None:
    """A file without name and email columns cannot be used at all, and says which lack."""
    with pytest.raises(DirectoryError, match="lacks email"):
        CsvDirectory.from_csv(write(tmp_path, "name;phone\nJordan;555\n"))
