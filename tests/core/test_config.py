"""Configuration: the documented keys load, and every problem is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from modbot import config
from modbot.errors import ConfigError
from modbot.model import Mode

ROOT = Path(__file__).resolve().parents[2]

ISSUE_CONFIG = """
[counselor]
name = "Career Services Counselor"
email = "counselor@counsel.example.edu"
confidential_contact = "https://counsel.example.edu/secure or 555-0100"

[imap]
host = "127.0.0.1"
port = 993
username = "counselor"
password_env = "MODBOT_IMAP_PASSWORD"
security = "tls"
ca_file = "/etc/modbot/ca.pem"
folder = "INBOX"

[smtp]
host = "127.0.0.1"
port = 465
security = "tls"
ca_file = "/etc/modbot/ca.pem"

[database]
url = "sqlite:////var/lib/modbot/modbot.db"

[policy]
mode = "auto"
trusted_authserv_ids = ["mx.counsel.example.edu"]

[directory]
csv = "/etc/modbot/directory.csv"

[schedule]
poll_seconds = 300
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "modbot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_documented_keys_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The configuration keys the README documents load exactly as written."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "s3cret")
    settings = config.load(write(tmp_path, ISSUE_CONFIG)).first
    assert settings.policy.mode is Mode.AUTO
    assert settings.imap.password is not None
    assert settings.imap.password.get_secret_value() == "s3cret"
    assert settings.policy.trusted_authserv_ids == ("mx.counsel.example.edu",)


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/modbot.example.toml is a valid configuration."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "s3cret")
    settings = config.load(ROOT / "config" / "modbot.example.toml").first
    assert settings.counselor.confidential_contact


def test_config_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MODBOT_CONFIG names the file when no path is given."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    monkeypatch.setenv("MODBOT_CONFIG", str(write(tmp_path, ISSUE_CONFIG)))
    assert config.load().first.imap.username == "counselor"


def test_every_problem_reported_at_once(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown keys, bad values and a missing secret all appear in one error."""
    monkeypatch.delenv("MODBOT_IMAP_PASSWORD", raising=False)
    text = ISSUE_CONFIG.replace("poll_seconds = 300", "poll_seconds = 1\ncolour = 'blue'")
    text = text.replace('mode = "auto"', 'mode = "yolo"')
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, text))
    message = str(caught.value)
    assert "4 problems" in message
    assert "schedule.colour: unknown key" in message
    assert "schedule.poll_seconds" in message
    assert "policy.mode" in message
    assert "MODBOT_IMAP_PASSWORD is not set" in message


def test_password_in_file_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A password written into the configuration file is refused and never echoed."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    text = ISSUE_CONFIG.replace('username = "counselor"',
                                'username = "counselor"\npassword = "hunter2"')
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, text))
    assert "imap.password" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_plaintext_refused_off_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """security = "none" is allowed only for a loopback host."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    text = ISSUE_CONFIG.replace('host = "127.0.0.1"\nport = 993',
                                'host = "imap.example.edu"\nport = 993')
    text = text.replace('security = "tls"\nca_file = "/etc/modbot/ca.pem"\nfolder',
                        'security = "none"\nfolder', 1)
    with pytest.raises(ConfigError, match="clear text"):
        config.load(write(tmp_path, text))


def test_password_file_read(tmp_path: Path) -> None:
    """password_file is read relative to the configuration file, without its newline."""
    (tmp_path / "imap.secret").write_text("from-file\n", encoding="utf-8")
    text = ISSUE_CONFIG.replace('password_env = "MODBOT_IMAP_PASSWORD"',
                                'password_file = "imap.secret"')
    settings = config.load(write(tmp_path, text)).first
    assert settings.imap.password is not None
    assert settings.imap.password.get_secret_value() == "from-file"


def test_secret_never_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The password does not appear in the settings' repr."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "canary-password-123")
    settings = config.load(write(tmp_path, ISSUE_CONFIG)).first
    assert "canary-password-123" not in repr(settings)


def test_not_toml(tmp_path: Path) -> None:
    """A file that is not TOML gets a one-line error naming the file."""
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[counselor\n"))


def test_example_config_is_safe_to_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example runs in shadow mode, names no file that may not exist, and keeps its
    database beside itself."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "s3cret")
    example = ROOT / "config" / "modbot.example.toml"
    settings = config.load(example).first
    assert settings.policy.mode is Mode.SHADOW
    assert settings.imap.ca_file is None and settings.smtp.ca_file is None
    assert settings.directory.csv is None and settings.templates.dir is None
    assert settings.database.url == f"sqlite:///{example.parent.resolve() / 'modbot.db'}"


def test_relative_paths_are_relative_to_the_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The database, the directory and the templates are found beside the file, wherever
    modbot starts."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    monkeypatch.chdir("/")
    folder = tmp_path / "etc"
    folder.mkdir()
    text = ISSUE_CONFIG.replace("sqlite:////var/lib/modbot/modbot.db", "sqlite:///data/m.db")
    text = text.replace('csv = "/etc/modbot/directory.csv"', 'csv = "directory.csv"')
    settings = config.load(write(folder, text + '\n[templates]\ndir = "templates"\n')).first
    assert settings.database.url == f"sqlite:///{folder.resolve() / 'data' / 'm.db'}"
    assert settings.directory.csv == folder.resolve() / "directory.csv"
    assert settings.templates.dir == folder.resolve() / "templates"


@pytest.mark.parametrize(("change", "expected"), [
    (('username = "counselor"', 'usernme = "counselor"'),
     "imap.usernme: unknown key — did you mean username?"),
    (("[schedule]", "[schedul]"), "schedul: unknown key — did you mean schedule?"),
    (('mode = "auto"', 'mode = "shadw"'),
     'policy.mode = "shadw": must be "shadow", "review" or "auto" — did you mean shadow?'),
    (('trusted_authserv_ids = ["mx.counsel.example.edu"]',
      'trusted_authserv_ids = "mx.counsel.example.edu"'),
     'policy.trusted_authserv_ids = "mx.counsel.example.edu": must be an array'),
    (("poll_seconds = 300", 'poll_seconds = "often"'),
     'schedule.poll_seconds = "often": must be a whole number'),
    (("poll_seconds = 300", "poll_seconds = 5"), "schedule.poll_seconds = 5: must be at least 10"),
    (('folder = "INBOX"', "folder = []"), "imap.folder = []: must be a string"),
], ids=["key-typo", "table-typo", "choice-typo", "array", "number", "minimum", "string"])
def test_problems_say_what_was_given_in_toml_words(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   change: tuple[str, str],
                                                   expected: str) -> None:
    """A problem repeats what was written, says what TOML value is expected and suggests the
    key or choice probably meant, with no Python words."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, ISSUE_CONFIG.replace(*change)))
    message = str(caught.value)
    assert expected in message
    for python in ("tuple", "Input should", "<class", "dict", "str "):
        assert python not in message


def _inbox(username: str) -> dict[str, object]:
    return {"counselor": {"name": "Ann Lee", "email": "ann@uni.edu", "confidential_contact": "x"},
            "imap": {"host": "imap.uni.edu", "username": username, "password_env": "MB_PW"},
            "smtp": {"host": "smtp.uni.edu"}}


def test_shared_tables_are_read_once_for_every_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables outside [[accounts]] are one object in every account, and a problem in one
    of them is reported once however many accounts there are."""
    monkeypatch.setenv("MB_PW", "pw")
    loaded = config.parse({"schedule": {"poll_seconds": 120}, "directory": {"csv": "people.csv"},
                           "accounts": [_inbox(f"c{n}") for n in range(3)]})
    first, *others = loaded.accounts
    for other in others:
        for name in ("database", "schedule", "digest", "review", "classify", "logging",
                     "directory", "policy", "templates"):
            assert getattr(other, name) is getattr(first, name), name
    assert loaded.schedule.poll_seconds == 120
    with pytest.raises(config.ConfigProblems) as caught:
        config.parse({"schedule": {"poll_seconds": "often"},
                      "accounts": [_inbox(f"c{n}") for n in range(3)]})
    assert caught.value.problems == ('schedule.poll_seconds = "often": must be a whole number',)
