"""A first configuration file from a few answers (``modbot init``).

``QUESTIONS`` is the table the command asks from, in order; :func:`render` turns the answers
into a commented TOML file that starts in shadow mode and keeps secrets out (password_env);
:func:`write` creates it owner-only and never replaces an existing file. The file is checked
with ``config.parse`` before it is written, so a bad answer leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from modbot import config
from modbot.errors import ConfigError

# Names of environment variables, not passwords:
IMAP_PASSWORD_ENV = "MODBOT_IMAP_PASSWORD"  # noqa: S105
SMTP_PASSWORD_ENV = "MODBOT_SMTP_PASSWORD"  # noqa: S105
NO_LOGIN = "-"
PORTS = {"imap": {"tls": 993, "starttls": 143, "none": 143},
         "smtp": {"tls": 465, "starttls": 587, "none": 25}}


@dataclass(frozen=True)
class Question:
    """One answer ``modbot init`` needs: its key, its prompt, and its default (None: required)."""

    key: str
    prompt: str
    default: str | None = None
    choices: tuple[str, ...] = ()


QUESTIONS = (
    Question("name", "Counselor's name, as it signs every reply"),
    Question("email", "Counselor's email address (replies come from it, the digest goes to it)"),
    Question("contact", "The confidential way to reach the counselor (a URL or phone number)"),
    Question("imap_host", "IMAP server of the counselor's inbox"),
    Question("imap_user", "IMAP username", default="{email}"),
    Question("smtp_host", "SMTP server for sending replies", default="{imap_host}"),
    Question("smtp_user", f"SMTP username ({NO_LOGIN!r} if the server needs no login)",
             default="{imap_user}"),
    Question("security", "Connection security (none: only for servers on this machine)",
             default="tls", choices=("tls", "starttls", "none")),
    Question("directory", "Campus directory CSV (name,email,linkedin_url); empty for none",
             default=""),
    Question("database", "Database file (or a SQLAlchemy URL)",
             default="/var/lib/modbot/modbot.db"),
)


@dataclass(frozen=True)
class Verdict:
    """What is wrong with one answer (``problem``: ask again), or worth knowing (``warning``)."""

    problem: str | None = None
    warning: str | None = None


def check_answer(key: str, value: str, answers: dict[str, str]) -> Verdict:
    """Check the answer to question ``key`` as it is typed, given the earlier ``answers``.

    A problem means the configuration could not be written with it; a warning, that it can be
    but something needs doing first (a directory file that does not exist yet, a database
    folder this user cannot write).
    """
    value = value.strip()
    if key in ("name", "contact", "imap_user") and not value:
        return Verdict("an answer is needed")
    if key == "email" and not config.is_email(value):
        return Verdict(f"{value!r} is not an email address")
    if key in ("imap_host", "smtp_host") and not _is_host(value):
        return Verdict(f"{value!r} is not a host name: give the server's name alone, such as "
                       "imap.example.edu (the port follows from the security)")
    if key == "security":
        if value not in PORTS["imap"]:
            return Verdict(f"answer one of: {', '.join(PORTS['imap'])}")
        hosts = [answers.get("imap_host", ""), answers.get("smtp_host", "")]
        if value == "none" and not all(config.is_loopback(h) for h in hosts):
            return Verdict('"none" sends the password in clear text: only for servers on this '
                           "machine (localhost, 127.0.0.1)")
    if key == "directory" and value:
        return _check_directory(Path(value).expanduser().absolute())
    if key == "database" and value and "://" not in value:
        return _check_database(Path(value).expanduser().absolute())
    return Verdict()


def _is_host(value: str) -> bool:
    """A host name or an IP address: no scheme, port, path or space."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", value))


def _check_directory(path: Path) -> Verdict:
    from modbot.errors import DirectoryError
    from modbot.recipients import CsvDirectory

    if not path.exists():
        return Verdict(warning=f"{path} does not exist yet: put the campus directory export "
                               "there before modbot starts (`modbot check` reports it until "
                               "then)")
    try:
        directory = CsvDirectory.from_csv(path)
    except DirectoryError as exc:
        return Verdict(f"{exc}")
    return Verdict(warning="; ".join(directory.warnings) or None)


def _check_database(path: Path) -> Verdict:
    existing = next((p for p in (path.parent, *path.parents) if p.exists()), None)
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return Verdict(warning=f"{path} is not writable by you: modbot must run as a user "
                               "who can write it")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK) \
            and not path.parent.exists():
        return Verdict(warning=f"{existing} is not writable by you: create {path.parent} for "
                               "the user modbot runs as (sudo install -d -o modbot -m 700 "
                               f"{path.parent})")
    return Verdict()


def default_for(question: Question, answers: dict[str, str]) -> str | None:
    """The question's default, filled in from earlier answers (e.g. the IMAP user's email)."""
    if question.default is None:
        return None
    return question.default.format_map(_Known(answers))


class _Known(dict[str, str]):
    """Earlier answers; one that was not given fills in as empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _toml(value: str) -> str:
    """``value`` as a TOML basic string."""
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def database_url(answer: str) -> str:
    """A URL as given, or a SQLite URL for a file path (made absolute: URLs are not relative
    to the configuration file, but to wherever modbot happens to start)."""
    if "://" in answer:
        return answer
    return f"sqlite:///{Path(answer).expanduser().absolute()}"


def render(answers: dict[str, str]) -> str:
    """The configuration file for ``answers`` (keyed like ``QUESTIONS``), with comments."""
    security = answers["security"].strip().lower()
    if security not in PORTS["imap"]:
        raise ConfigError(f"security: {security!r} is not one of tls, starttls, none")
    smtp_user = answers["smtp_user"].strip()
    directory = answers["directory"].strip()
    smtp_login = (
        f"username = {_toml(smtp_user)}\npassword_env = {_toml(SMTP_PASSWORD_ENV)}\n"
        if smtp_user and smtp_user != NO_LOGIN
        else "# No login: the server accepts mail from this host without one.\n"
             f'# username = "counselor"\n# password_env = "{SMTP_PASSWORD_ENV}"\n'
    )
    directory_line = (
        f"csv = {_toml(str(Path(directory).expanduser().absolute()))}\n" if directory
        else "# Without a directory, invitations cannot be answered by mail: they are held\n"
             "# for the counselor with the reply ready to paste into LinkedIn.\n"
             '# csv = "/etc/modbot/directory.csv"\n'
    )
    return f"""\
# modbot configuration, written by `modbot init`. Every key, its default and why:
# config/modbot.example.toml in modbot's source. Check this file with `modbot check`.
# Secrets never go in this file: the passwords are read from the environment variables named
# below (or give password_file = "/run/secrets/..." instead).

[counselor]
name = {_toml(answers["name"])}
email = {_toml(answers["email"])}
confidential_contact = {_toml(answers["contact"])}

[imap]
host = {_toml(answers["imap_host"])}
port = {PORTS["imap"][security]}
username = {_toml(answers["imap_user"])}
password_env = {_toml(IMAP_PASSWORD_ENV)}
# "tls" | "starttls" | "none". Certificates are always verified; "none" only for this machine.
security = {_toml(security)}
# A campus CA to trust in addition to the system's:
# ca_file = "/etc/modbot/ca.pem"
# A folder where modbot keeps a copy of each reply, so a crash mid-send is never resent blindly:
# sent_folder = "Sent"

[smtp]
host = {_toml(answers["smtp_host"])}
port = {PORTS["smtp"][security]}
security = {_toml(security)}
{smtp_login}
[database]
url = {_toml(database_url(answers["database"]))}

[policy]
# A new installation watches first: "shadow" decides and records but sends nothing. Read a
# week of digests, then switch to "review" (approve each reply) or "auto".
mode = "shadow"
# The authserv-ids of the counselor's own receiving mail servers, whose Authentication-Results
# headers modbot may believe (see `modbot classify --explain` on a real notification):
# trusted_authserv_ids = ["mx.counsel.example.edu"]

[directory]
{directory_line}
[logging]
# "INFO" | "DEBUG" | "WARNING" | "ERROR"; format "text" or "json" (one object per line).
level = "INFO"
format = "text"
"""


def check(text: str, path: Path) -> None:
    """Raise ``ConfigError`` listing every problem if ``text`` is not a valid configuration."""
    config.parse(tomllib.loads(text), source=str(path), base=path.parent.absolute(),
                 resolve_secrets=False)


def write(path: Path, text: str) -> None:
    """Create ``path`` owner-only with ``text``; never replace an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; modbot init never overwrites a "
                          "configuration") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)
        file.write(text)
