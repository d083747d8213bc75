"""The campus LDAP directory, against a real OpenLDAP slapd on loopback (support/ldapserver.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import SecretStr
from support import configs, ldapserver, servers

from modbot import config
from modbot.config import DirectorySettings
from modbot.directory.combined import CombinedDirectory, open_directory
from modbot.directory.index import NOT_FOUND
from modbot.directory.ldap import RETRY_AFTER, LdapDirectory, name_filters, url_filters
from modbot.errors import ConfigError, DirectoryError
from modbot.model import Authenticity, Classification, Kind, Person, Recipient, Unresolved, Verdict
from modbot.recipients import find_address

ROOT = Path(__file__).resolve().parents[2]
AUTHENTIC = Authenticity(True, Verdict.AUTHENTIC, ())


@pytest.fixture(scope="session")
def slapd(server_cert: trustme.LeafCert,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ldapserver.Slapd]:
    """One private slapd for the whole run: skipped if unavailable, failed if ``$CI`` is set."""
    try:
        server = ldapserver.start_slapd(server_cert, tmp_path_factory.mktemp("ldap"))
    except servers.ServerUnavailable as exc:
        servers.unavailable(str(exc))
    yield server
    server.stop()


def settings_for(slapd: ldapserver.Slapd, ca_file: Path | None, *, tls: bool = False,
                 **changes: Any) -> DirectorySettings:
    """Directory settings reaching ``slapd`` by StartTLS (or ldaps:// with ``tls``)."""
    url = (f"ldaps://{slapd.host}:{slapd.ldaps_port}" if tls
           else f"ldap://{slapd.host}:{slapd.ldap_port}")
    values: dict[str, Any] = {
        "ldap_url": url,
        "ldap_base_dn": ldapserver.PEOPLE_DN,
        "ldap_bind_dn": ldapserver.BIND_DN,
        "ldap_password_env": "UNUSED",  # load() would read it; the tests hand the secret over
        "ldap_password": SecretStr(ldapserver.BIND_PASSWORD),
        "ldap_ca_file": ca_file,
        "ldap_timeout_seconds": 5,
    }
    values.update(changes)
    return DirectorySettings(**values)


@pytest.fixture(scope="module", params=["starttls", "ldaps"])
def ldap(request: pytest.FixtureRequest, slapd: ldapserver.Slapd,
         ca_file: Path) -> LdapDirectory:
    """The directory on the test slapd, once over StartTLS and once over ldaps://."""
    settings = settings_for(slapd, ca_file, tls=request.param == "ldaps")
    directory = open_directory(settings)
    assert isinstance(directory, LdapDirectory)
    return directory


def invitation(name: str | None, url: str | None = None) -> Classification:
    return Classification(Kind.CONNECTION_INVITATION, "t", Person(name=name, profile_url=url),
                          None, ())


# --- matching ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_profile_url_match_wins(ldap: LdapDirectory) -> None:
    """A /comm/ profile link with tracking finds the labeledURI entry that goes by the name."""
    url = "https://www.linkedin.com/comm/in/jordan-rivera-42?midToken=AQ&trk=eml-x"
    found = find_address(invitation("Jordan Rivera", url), AUTHENTIC, ldap)
    assert found == Recipient("Jordan Rivera", "jrivera@students.example.edu",
                              "directory-ldap:profile-url")


@pytest.mark.integration
def test_profile_url_of_someone_else_is_held(ldap: LdapDirectory) -> None:
    """A profile link whose entry goes by another name than the notification's is not used."""
    url = "https://www.linkedin.com/comm/in/jordan-rivera-42?midToken=AQ&trk=eml-x"
    found = find_address(invitation("Someone Else", url), AUTHENTIC, ldap)
    assert isinstance(found, Unresolved) and "belongs to Jordan Rivera" in found.reason


@pytest.mark.integration
def test_profile_view_id_match(ldap: LdapDirectory) -> None:
    """A profile/view?id= link matches the entry holding that member id."""
    found = ldap.lookup("Robert Smith",
                        "https://www.linkedin.com/comm/profile/view?id=AAsAAA42&trk=x")
    assert isinstance(found, Recipient)
    assert found.email == "rsmith@students.example.edu"


@pytest.mark.integration
@pytest.mark.parametrize(("name", "email"), [
    ("Jose Maria Nunez", "jnunez@students.example.edu"),  # accents the directory has
    ("  JOSÉ   maría  NÚÑEZ ", "jnunez@students.example.edu"),  # case and spacing
    ("Bob Smith", "rsmith@students.example.edu"),  # the entry's second cn
])
def test_name_match(ldap: LdapDirectory, name: str, email: str) -> None:
    """A name matches as in the CSV directory: case, accents and spacing aside."""
    found = ldap.lookup(name, None)
    assert isinstance(found, Recipient), found
    assert found.email == email
    assert found.source == "directory-ldap:name"


@pytest.mark.integration
@pytest.mark.parametrize("name", [
    "José Nuñez",  # a middle name the notification lacks
    "Jordan Alexis Rivera",  # one the directory lacks
    "Maria Lopez",  # "Maria del Carmen Lopez"
])
def test_partial_name_is_held(ldap: LdapDirectory, name: str) -> None:
    """A name matching only by its first and last words is held, with the candidate named."""
    found = ldap.lookup(name, None)
    assert isinstance(found, Unresolved) and "may be this person" in found.reason


@pytest.mark.integration
def test_ambiguous_name_is_unresolved(ldap: LdapDirectory) -> None:
    """Two entries with the same name are never guessed between."""
    assert ldap.lookup("alex chen", None) == Unresolved("2 directory entries share this name")


@pytest.mark.integration
def test_too_many_candidates_is_unresolved(ldap: LdapDirectory,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """When the server has more candidates than modbot reads, nobody is chosen."""
    monkeypatch.setattr("modbot.directory.ldap.MAX_CANDIDATES", 1)
    assert ldap.lookup("Alex Chen", None) == Unresolved(
        "more than 1 directory entries resemble this person; none is chosen")


@pytest.mark.integration
@pytest.mark.parametrize("name", ["Priya Natarajan", "Casey Nomail", "Jordan Rivers"])
def test_not_found(ldap: LdapDirectory, name: str) -> None:
    """A group, a person without mail and a near-miss name are all "not in the directory"."""
    assert ldap.lookup(name, None) == NOT_FOUND


@pytest.mark.integration
@pytest.mark.parametrize("name", [
    "*", "*)(mail=*", "Alex*", "*)(|(cn=*", "Alex Chen)(mail=*", "\\2a", "x)(uid=jrivera",
    "Jordan\x00Rivera", "(&)",
])
def test_hostile_name_finds_nothing(ldap: LdapDirectory, name: str) -> None:
    """Filter syntax in a name is searched for literally: no match, no error."""
    assert ldap.lookup(name, None) == NOT_FOUND


@pytest.mark.integration
def test_hostile_profile_url_finds_nothing(ldap: LdapDirectory) -> None:
    """Filter syntax in a profile link is searched for literally too."""
    found = ldap.lookup("Nobody Known", "https://www.linkedin.com/in/*)(mail=*")
    assert found == NOT_FOUND


@pytest.mark.parametrize("hostile", ["*)(mail=*", "a*b", "x\\y", "(cn=*)", "\x00"])
def test_filter_items_escape_every_special_character(hostile: str) -> None:
    """No filter item carries a raw (, ), backslash or NUL from the notification."""
    items = [*name_filters("cn", f"Ann {hostile}"),
             *url_filters("labeledURI", f"https://www.linkedin.com/in/{hostile}")]
    assert items
    for item in items:
        body = re.sub(r"\\[0-9a-f]{2}", "", item[1:-1].split("=", 1)[1])
        assert not set(body) & {"(", ")", "\\", "\x00"}, item
    if "*" in hostile:
        assert any("\\2a" in item for item in items)


@pytest.mark.integration
def test_bind_is_used(slapd: ldapserver.Slapd, ca_file: Path) -> None:
    """Anonymously the test server shows nothing: every lookup that finds someone was bound."""
    anonymous = open_directory(settings_for(slapd, ca_file, ldap_bind_dn=None,
                                            ldap_password_env=None, ldap_password=None))
    assert anonymous is not None
    found = anonymous.lookup("Bob Smith", None)
    assert isinstance(found, Unresolved)
    assert found.reason.endswith(f"has no entry {ldapserver.PEOPLE_DN} (ldap_base_dn)")


@pytest.mark.integration
def test_plain_ldap_allowed_on_loopback(slapd: ldapserver.Slapd) -> None:
    """ldap:// without StartTLS works to a loopback host when the configuration says so."""
    directory = open_directory(settings_for(slapd, None, ldap_starttls=False))
    assert directory is not None
    assert isinstance(directory.lookup("Bob Smith", None), Recipient)


@pytest.mark.integration
def test_check_reads_the_base_entry(ldap: LdapDirectory) -> None:
    """check() connects, binds and reads the base DN without complaint."""
    ldap.check()


@pytest.mark.integration
def test_check_names_a_missing_base_dn(slapd: ldapserver.Slapd, ca_file: Path) -> None:
    """check() says which base DN does not exist."""
    directory = LdapDirectory.from_settings(
        settings_for(slapd, ca_file, ldap_base_dn="ou=nobody,dc=example,dc=edu"))
    with pytest.raises(DirectoryError, match=r"has no entry ou=nobody,dc=example,dc=edu"):
        directory.check()


@pytest.mark.integration
def test_lookups_are_fast(ldap: LdapDirectory) -> None:
    """A lookup (connect, TLS, bind, search, unbind) takes milliseconds on loopback."""
    start = time.perf_counter()
    for _ in range(20):
        assert isinstance(ldap.lookup("Jordan Rivera", None), Recipient)
    # ~4 ms here; 40 ms would mean the Nagle delay after the TLS handshake is back.
    assert (time.perf_counter() - start) / 20 < 0.03


# --- failures hold the item, never stop the poll ----------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("tls", [False, True], ids=["starttls", "ldaps"])
def test_certificate_from_another_ca_is_refused(slapd: ldapserver.Slapd,
                                                untrusted_ca_file: Path, tls: bool) -> None:
    """A server whose certificate another CA signed is not trusted, by StartTLS or ldaps://."""
    directory = open_directory(settings_for(slapd, untrusted_ca_file, tls=tls))
    assert directory is not None
    found = directory.lookup("Bob Smith", None)
    assert isinstance(found, Unresolved)
    assert found.reason.startswith("the directory could not be reached: the TLS certificate")


@pytest.mark.integration
def test_wrong_password_is_unresolved(slapd: ldapserver.Slapd, ca_file: Path) -> None:
    """Refused credentials hold the item with a reason that names the setting, not the secret."""
    directory = open_directory(settings_for(slapd, ca_file, ldap_password=SecretStr("nope")))
    assert directory is not None
    found = directory.lookup("Bob Smith", None)
    assert isinstance(found, Unresolved)
    assert "refused the bind DN and password (ldap_bind_dn)" in found.reason
    assert "nope" not in found.reason


@pytest.mark.integration
def test_server_down_is_unresolved(slapd: ldapserver.Slapd, ca_file: Path) -> None:
    """A port where no server listens gives Unresolved, so the poll holds the item."""
    port = servers.free_port()
    directory = open_directory(settings_for(slapd, ca_file, ldap_url=f"ldap://127.0.0.1:{port}"))
    assert directory is not None
    found = find_address(invitation("Bob Smith"), AUTHENTIC, directory)
    assert found == Unresolved(
        f"the directory could not be reached: ldap://127.0.0.1:{port} refused the connection")


@pytest.mark.integration
@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_silent_server_times_out(silent_server: servers.SilentServer, ca_file: Path,
                                 slapd: ldapserver.Slapd, scheme: str) -> None:
    """A server that accepts and never answers is given up on after ldap_timeout_seconds."""
    url = f"{scheme}://{silent_server.host}:{silent_server.port}"
    directory = open_directory(settings_for(slapd, ca_file, ldap_url=url,
                                            ldap_timeout_seconds=1))
    assert directory is not None
    start = time.monotonic()
    found = directory.lookup("Bob Smith", None)
    assert time.monotonic() - start < 3
    assert isinstance(found, Unresolved)
    assert found.reason.endswith("did not answer within 1 s")


@pytest.mark.integration
def test_failure_is_remembered_for_a_minute(silent_server: servers.SilentServer,
                                            slapd: ldapserver.Slapd, ca_file: Path) -> None:
    """After a timeout, lookups answer at once for RETRY_AFTER seconds, then ask again."""
    now = [1000.0]
    url = f"ldap://{silent_server.host}:{silent_server.port}"
    directory = LdapDirectory.from_settings(
        settings_for(slapd, ca_file, ldap_url=url, ldap_timeout_seconds=1),
        clock=lambda: now[0])
    first = directory.lookup("Bob Smith", None)
    assert isinstance(first, Unresolved)
    now[0] += RETRY_AFTER - 1
    start = time.monotonic()
    assert directory.lookup("Alex Chen", None) == first
    assert time.monotonic() - start < 0.1
    now[0] += 2
    start = time.monotonic()
    assert directory.lookup("Alex Chen", None) == first
    assert time.monotonic() - start >= 0.9  # the server was asked again


@pytest.mark.integration
def test_csv_and_ldap_together(slapd: ldapserver.Slapd, ca_file: Path, tmp_path: Path) -> None:
    """With both configured, a person either one knows is found, and a namesake in each holds."""
    csv = tmp_path / "directory.csv"
    csv.write_text("name,email,linkedin_url\nPat Quinn,pquinn@alumni.example.edu,\n"
                   "Bob Smith,bob.smith@alumni.example.edu,\n", encoding="utf-8")
    directory = open_directory(settings_for(slapd, ca_file, csv=csv))
    assert isinstance(directory, CombinedDirectory)
    assert directory.lookup("Pat Quinn", None) == Recipient(
        "Pat Quinn", "pquinn@alumni.example.edu", "directory-csv:name")
    assert isinstance(directory.lookup("Jose Maria Nunez", None), Recipient)
    assert directory.lookup("Bob Smith", None) == Unresolved(
        "the directories give different addresses for this person")


# --- configuration ----------------------------------------------------------------------------

def load(tmp_path: Path, directory: str) -> config.Account:
    """A file whose [directory] table holds ``directory``, loaded."""
    return config.load(configs.write_config(tmp_path, extra="[directory]\n" + directory)).first


@pytest.fixture(autouse=True)
def _imap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "imap-secret")


def test_ldap_settings_load_with_secret_from_env(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The LDAP keys load, the password comes from the environment and never shows in repr."""
    monkeypatch.setenv("MODBOT_LDAP_PASSWORD", "bind-secret")
    settings = load(tmp_path, """
ldap_url = "ldaps://ldap.example.edu"
ldap_base_dn = "ou=people,dc=example,dc=edu"
ldap_bind_dn = "cn=modbot,ou=services,dc=example,dc=edu"
ldap_password_env = "MODBOT_LDAP_PASSWORD"
ldap_ca_file = "campus-ca.pem"
""")
    d = settings.directory
    assert (d.ldap_host, d.ldap_port, d.ldap_security) == ("ldap.example.edu", 636, "tls")
    assert d.ldap_password is not None and d.ldap_password.get_secret_value() == "bind-secret"
    assert d.ldap_ca_file == tmp_path / "campus-ca.pem"
    assert (d.name_attribute, d.email_attribute, d.url_attribute) == ("cn", "mail", "labeledURI")
    assert "bind-secret" not in repr(settings)


def test_ldap_password_file_is_read(tmp_path: Path) -> None:
    """ldap_password_file is read relative to the configuration file."""
    (tmp_path / "ldap.secret").write_text("from-a-file\n", encoding="utf-8")
    settings = load(tmp_path, """
ldap_url = "ldap://ldap.example.edu:1389"
ldap_base_dn = "dc=example,dc=edu"
ldap_bind_dn = "cn=modbot,dc=example,dc=edu"
ldap_password_file = "ldap.secret"
""")
    d = settings.directory
    assert d.ldap_password is not None and d.ldap_password.get_secret_value() == "from-a-file"
    assert (d.ldap_port, d.ldap_security) == (1389, "starttls")


def test_ldap_problems_are_reported_together(tmp_path: Path) -> None:
    """A password in the file, an unset variable, clear text off loopback, no base DN: all told."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, """
ldap_url = "ldap://ldap.example.edu"
ldap_starttls = false
ldap_bind_dn = "cn=modbot,dc=example,dc=edu"
ldap_password = "oops"
ldap_password_env = "MODBOT_LDAP_UNSET"
""")
    message = str(caught.value)
    assert "directory.ldap_password: secrets are never written in the file" in message
    assert "environment variable MODBOT_LDAP_UNSET is not set" in message
    assert "allowed only for a loopback host, not 'ldap.example.edu'" in message
    assert "ldap_base_dn is required" in message
    assert "oops" not in message


@pytest.mark.parametrize(("directory", "problem"), [
    ('ldap_url = "https://ldap.example.edu"\nldap_base_dn = "dc=x"', "must look like ldaps://"),
    ('ldap_url = "ldaps://ldap.example.edu/dc=x?cn"\nldap_base_dn = "dc=x"', "must look like"),
    ('ldap_url = "ldaps://ldap.example.edu:99999"\nldap_base_dn = "dc=x"', "must look like"),
    ('ldap_base_dn = "dc=x"', "ldap_base_dn given without ldap_url"),
    ('ldap_url = "ldaps://h"\nldap_base_dn = "dc=x"\nemail_attribute = "mail)(x"',
     'directory.email_attribute = "mail.*x": must be an LDAP attribute name'),
    ('ldap_url = "ldaps://h"\nldap_base_dn = "dc=x"\nldap_bind_dn = "cn=m"',
     "ldap_bind_dn needs ldap_password_env or ldap_password_file"),
    ('ldap_url = "ldaps://h"\nldap_base_dn = "dc=x"\nldap_password_file = "p"',
     "a directory password needs ldap_bind_dn"),
])
def test_bad_ldap_settings(tmp_path: Path, directory: str, problem: str) -> None:
    """Each incomplete or unsafe LDAP setting is refused with a sentence naming it."""
    (tmp_path / "p").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace("?", r"\?")):
        load(tmp_path, directory)


def test_bad_ldap_filter_refused_at_start() -> None:
    """A broken ldap_filter is refused when the directory is opened, not at a lookup."""
    settings = DirectorySettings(ldap_url="ldaps://ldap.example.edu", ldap_base_dn="dc=x",
                                 ldap_filter="(|(objectClass=person)")
    with pytest.raises(DirectoryError, match="is not a valid LDAP filter"):
        open_directory(settings)


def test_unreadable_ca_file_refused_at_start(tmp_path: Path) -> None:
    """An ldap_ca_file that cannot be read stops the start, as for IMAP and SMTP."""
    settings = DirectorySettings(ldap_url="ldaps://ldap.example.edu", ldap_base_dn="dc=x",
                                 ldap_ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="cannot use CA file"):
        open_directory(settings)


def test_example_ldap_block_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example configuration's LDAP keys, uncommented, are a valid [directory] section."""
    monkeypatch.setenv("MODBOT_LDAP_PASSWORD", "x")
    text = (ROOT / "config" / "modbot.example.toml").read_text(encoding="utf-8")
    section = text.split("\n[directory]\n", 1)[1].split("\n[", 1)[0]
    keys = [line.removeprefix("# ") for line in section.splitlines()
            if line.startswith(("# ldap_", "# name_attribute", "# email_attribute",
                                "# url_attribute"))
            and not line.startswith("# ldap_password_file")]  # the example shows both ways
    assert len(keys) >= 10
    settings = load(tmp_path, "\n".join(keys))
    assert settings.directory.ldap_url == "ldaps://ldap.example.edu"
