"""Finding the person's address: relay, directory by profile URL, then by unique name."""

from __future__ import annotations

from pathlib import Path

import pytest

from modbot.classify import classify
from modbot.config import DirectorySettings
from modbot.directory.combined import CombinedDirectory, open_directory
from modbot.directory.csv import CsvDirectory
from modbot.directory.index import NOT_FOUND, Directory, Entry, normalize_name, profile_key
from modbot.errors import DirectoryError
from modbot.model import (
    Authenticity,
    Classification,
    Kind,
    Person,
    Recipient,
    Resolution,
    Unresolved,
    Verdict,
)
from modbot.parse import parse
from modbot.recipients import find_address

DATA = Path(__file__).parents[1] / "data"

AUTHENTIC = Authenticity(True, Verdict.AUTHENTIC, ())
CSV = """name,email,linkedin_url
Jordan Rivera,jrivera@students.example.edu,https://www.linkedin.com/in/jordan-rivera-42/
José María Núñez,jnunez@students.example.edu,
Alex Chen,achen1@students.example.edu,
Alex Chen,achen2@students.example.edu,
"""


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    path = tmp_path / "directory.csv"
    path.write_text(CSV, encoding="utf-8")
    return CsvDirectory.from_csv(path)


def invitation(name: str | None, url: str | None = None) -> Classification:
    return Classification(Kind.CONNECTION_INVITATION, "t", Person(name=name, profile_url=url),
                          None, ())


def test_profile_url_match_wins(directory: Directory) -> None:
    """A profile URL in /comm/ form with tracking matches the directory's plain URL."""
    url = "https://www.linkedin.com/comm/in/jordan-rivera-42?midToken=AQ&trk=eml-x"
    found = find_address(invitation("Jordan Rivera", url), AUTHENTIC, directory)
    assert isinstance(found, Recipient)
    assert found.email == "jrivera@students.example.edu"
    assert found.source == "directory-csv:profile-url"


def test_profile_url_of_someone_else_is_held(directory: Directory) -> None:
    """A profile link whose owner goes by another name than the notification's is never used."""
    url = "https://www.linkedin.com/in/jordan-rivera-42?trk=hero"
    found = find_address(invitation("Mallory Stone", url), AUTHENTIC, directory)
    assert isinstance(found, Unresolved)
    assert "belongs to Jordan Rivera" in found.reason


def test_profile_url_without_a_name_is_held(directory: Directory) -> None:
    """A link alone, with no name to agree with it, reaches nobody."""
    found = find_address(invitation(None, "https://www.linkedin.com/in/jordan-rivera-42"),
                         AUTHENTIC, directory)
    assert isinstance(found, Unresolved)


def test_name_match_ignores_case_accents_and_spaces(directory: Directory) -> None:
    """A name differing in case, accents and spacing still matches."""
    found = find_address(invitation("  jose  maria NUNEZ "), AUTHENTIC, directory)
    assert isinstance(found, Recipient)
    assert found.email == "jnunez@students.example.edu"


@pytest.mark.parametrize("name", ["Jordan Alexis Rivera", "Jose Nunez"])
def test_partial_name_is_held_with_the_candidate(directory: Directory, name: str) -> None:
    """A name matching only by first and last words may be two people: held, candidate named."""
    found = find_address(invitation(name), AUTHENTIC, directory)
    assert isinstance(found, Unresolved)
    assert "may be this person" in found.reason


def test_ambiguous_name_is_unresolved(directory: Directory) -> None:
    """Two people with the same name are never guessed between."""
    found = find_address(invitation("Alex Chen"), AUTHENTIC, directory)
    assert isinstance(found, Unresolved)
    assert "2 directory entries" in found.reason


def test_unknown_person_is_unresolved(directory: Directory) -> None:
    """A person missing from the directory is unresolved with that reason."""
    found = find_address(invitation("Priya Natarajan"), AUTHENTIC, directory)
    assert found == Unresolved("the person is not in the directory")


def test_message_relay_is_used_for_linkedin_messages(directory: Directory) -> None:
    """A LinkedIn message is answered through its reply.linkedin.com relay."""
    person = Person(name="Sam Okafor", relay_address="abc-123@reply.linkedin.com")
    classification = Classification(Kind.LINKEDIN_MESSAGE, "t", person, None, ())
    found = find_address(classification, AUTHENTIC, directory)
    assert found == Recipient("Sam Okafor", "abc-123@reply.linkedin.com", "linkedin-relay")


def test_an_invitation_is_answered_only_through_the_directory(directory: Directory) -> None:
    """Whatever the message carried, an inviter's address comes from the directory alone."""
    found = find_address(invitation("Someone Unlisted"), AUTHENTIC, directory)
    assert isinstance(found, Unresolved)


def test_no_directory_is_unresolved() -> None:
    """Without a directory an inviter is unresolved, with that reason."""
    found = find_address(invitation("Jordan Rivera"), AUTHENTIC, None)
    assert isinstance(found, Unresolved)
    assert "no directory" in found.reason


def test_bad_directory_file_is_one_sentence(tmp_path: Path) -> None:
    """A CSV without the expected columns is refused with a clear message."""
    path = tmp_path / "d.csv"
    path.write_text("who,where\nx,y\n", encoding="utf-8")
    with pytest.raises(DirectoryError, match="lacks email, name"):
        CsvDirectory.from_csv(path)


@pytest.mark.parametrize(("url", "key"), [
    ("https://www.linkedin.com/in/Jordan-Rivera-42/", "in/jordan-rivera-42"),
    ("https://www.linkedin.com/comm/in/jordan-rivera-42?trk=x", "in/jordan-rivera-42"),
    ("https://www.linkedin.com/comm/profile/view?id=AAsAAA&authType=name", "id/AAsAAA"),
    ("https://example.com/whatever", None),
    # 2025 notifications: a country subdomain, and an accept link that names the inviter.
    ("https://se.linkedin.com/comm/in/astrid-lindqvist-4b2a17?otpToken=x&trk=eml-y",
     "in/astrid-lindqvist-4b2a17"),
    ("https://www.linkedin.com/comm/mynetwork/invite-accept/invitationId/7301234567890123456/"
     "sharedKey/Xq7_Lm2Vb9/?inviterVanityName=astrid-lindqvist-4b2a17&otpToken=x",
     "in/astrid-lindqvist-4b2a17"),
    ("https://www.linkedin.com/comm/mynetwork/invite-accept/invitationId/7301234567890123456/",
     None),
    # Directory entries as people type them.
    ("linkedin.com/in/Astrid-Lindqvist-4b2a17", "in/astrid-lindqvist-4b2a17"),
    ("www.linkedin.com/in/astrid-lindqvist-4b2a17/?originalSubdomain=se",
     "in/astrid-lindqvist-4b2a17"),
    ("https://www.linkedin.com/in/luc%C3%ADa-fern%C3%A1ndez", "in/lucía-fernández"),
    ("https://www.linkedin.com/in/Lucía-Fernández", "in/lucía-fernández"),
    # Only linkedin.com's own hosts hold profiles.
    ("https://example.com/in/jordan-rivera-42", None),
    ("https://linkedin.com.evil.example/in/jordan-rivera-42", None),
])
def test_profile_url_normalization(url: str, key: str | None) -> None:
    """Profile URLs of every shape reduce to a comparable key."""
    assert profile_key(url) == key


def test_normalize_name() -> None:
    """Names lose case, accents, punctuation and extra spaces."""
    assert normalize_name("  José  O'Neil-Smith ") == "jose oneil smith"


def test_open_directory_reads_the_csv(tmp_path: Path) -> None:
    """open_directory builds the CSV directory the settings name, and None without one."""
    path = tmp_path / "directory.csv"
    path.write_text(CSV, encoding="utf-8")
    assert isinstance(open_directory(DirectorySettings(csv=path)), CsvDirectory)
    assert open_directory(DirectorySettings()) is None


class Fixed(Directory):
    """A directory that gives the same answer to every lookup."""

    source = "fixed"

    def __init__(self, answer: Resolution) -> None:
        self.answer = answer

    def lookup(self, name: str | None, profile_url: str | None) -> Resolution:
        return self.answer


A_BY_NAME = Recipient("Alex Chen", "achen1@students.example.edu", "directory-csv:name")
A_BY_URL = Recipient("Alex Chen", "achen1@students.example.edu", "directory-csv:profile-url")
B_BY_NAME = Recipient("Alex Chen", "achen2@students.example.edu", "directory-ldap:name")
B_BY_URL = Recipient("Alex Chen", "achen2@students.example.edu", "directory-ldap:profile-url")
DOWN = Unresolved("the directory could not be reached: ldaps://ldap:636 refused the connection")
AMBIGUOUS = Unresolved("2 directory entries share this name")


@pytest.mark.parametrize(("csv", "ldap", "expected"), [
    (A_BY_NAME, NOT_FOUND, A_BY_NAME),  # only one directory knows the person
    (NOT_FOUND, B_BY_NAME, B_BY_NAME),
    (NOT_FOUND, NOT_FOUND, NOT_FOUND),
    (A_BY_NAME, A_BY_NAME, A_BY_NAME),  # both agree
    (A_BY_NAME, B_BY_NAME, Unresolved("the directories give different addresses for this person")),
    (A_BY_URL, B_BY_NAME, A_BY_URL),  # a profile link outranks a name, as in one directory
    (A_BY_URL, B_BY_URL, Unresolved("the directories give different addresses for this person")),
    (A_BY_NAME, DOWN, DOWN),  # a namesake may hide in the directory that did not answer
    (A_BY_URL, DOWN, DOWN),
    (AMBIGUOUS, B_BY_NAME, AMBIGUOUS),
])
def test_combined_directories_must_agree(csv: Resolution, ldap: Resolution,
                                         expected: Resolution) -> None:
    """CSV and LDAP together: one that knows the person suffices; conflicts and gaps hold."""
    assert CombinedDirectory(Fixed(csv), Fixed(ldap)).lookup("Alex Chen", None) == expected


def test_combined_check_checks_every_part() -> None:
    """check() of several directories fails when any of them fails."""

    class Broken(Fixed):
        def check(self) -> None:
            raise DirectoryError("ldaps://ldap:636 refused the connection")

    CombinedDirectory(Fixed(NOT_FOUND), Fixed(NOT_FOUND)).check()
    with pytest.raises(DirectoryError, match="refused"):
        CombinedDirectory(Fixed(NOT_FOUND), Broken(NOT_FOUND)).check()


def test_directory_entry_with_several_names() -> None:
    """An entry is found by any of its names, and addressed by the first."""
    directory = CsvDirectory()
    directory.add(Entry(("Robert Smith", "Bob Smith"), "rsmith@students.example.edu"))
    found = directory.lookup("bob smith", None)
    assert found == Recipient("Robert Smith", "rsmith@students.example.edu", "directory-csv:name")


def test_the_2025_invitation_reaches_the_directory_entry(tmp_path: Path) -> None:
    """Its country-subdomain profile link and its accept link match the directory's own URL."""
    n = parse((DATA / "invitation_2025_connection_request.eml").read_bytes())
    classification = classify(n, AUTHENTIC)
    path = tmp_path / "directory.csv"
    path.write_text("name,email,linkedin_url\nAstrid Lindqvist,alindqvist@students.example.edu,"
                    "linkedin.com/in/Astrid-Lindqvist-4b2a17\n", encoding="utf-8")
    found = find_address(classification, AUTHENTIC, CsvDirectory.from_csv(path))
    assert found == Recipient("Astrid Lindqvist", "alindqvist@students.example.edu",
                              "directory-csv:profile-url")
    accept = next(url for url in n.links if "/invite-accept/" in url)
    assert profile_key(accept) == "in/astrid-lindqvist-4b2a17"
