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
    """One answer ``modbot init`` needs: its key, its prompt, and its default (None: required).

    ``only_for`` names the answers to the mail-system question it is asked for (empty: always).
    """

    key: str
    prompt: str
    default: str | None = None
    choices: tuple[str, ...] = ()
    only_for: tuple[str, ...] = ()


# Which system receives the college's mail decides whose verdict modbot believes
# (docs/deployment.md): Exchange Online's for the tenant, a gateway's at its hosts, or the
# authserv-id of Google's or the college's own MX.
GATEWAYS = {"proofpoint": ("Proofpoint", ("pphosted.com", "ppe-hosted.com")),
            "mimecast": ("Mimecast", ("mimecast.com",)),
            "barracuda": ("Barracuda", ("barracudanetworks.com",)),
            "cisco": ("Cisco Secure Email", ("iphmx.com",))}
MAIL_SYSTEMS = ("microsoft365", "google", "server", *GATEWAYS, "unknown")
_MICROSOFT = ("microsoft365", *GATEWAYS)
# Authserv-ids every customer of a vendor writes, on its outbound mail too.
SHARED_AUTHSERV_IDS = ("ppops.net", "pphosted.com", "mimecast.com", "outlook.com",
                       "microsoft.com", "barracudanetworks.com", "iphmx.com")
_TENANT = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


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
    Question("mail_system", "Which system receives the college's mail (google: Workspace; "
             "server: your own Postfix or other; proofpoint … cisco: a gateway in front of "
             "Microsoft 365; unknown: decide later with `modbot check`)", choices=MAIL_SYSTEMS),
    Question("tenant", "Microsoft 365 tenant id (Entra admin center, Overview, Tenant ID)",
             only_for=_MICROSOFT),
    Question("gateway_hosts", "The gateway's inbound hosts, separated by commas (the "
             "domain's MX records, such as mx0a-00000d07.pphosted.com)",
             only_for=("proofpoint", "barracuda", "cisco")),
    Question("authserv_ids", "The authserv-id your mail server writes in "
             "Authentication-Results (OpenDKIM's and OpenDMARC's AuthservID, usually its host "
             "name); empty: modbot verifies LinkedIn's DKIM signature itself",
             default="", only_for=("server",)),
)


def asked(question: Question, answers: dict[str, str]) -> bool:
    """Whether ``question`` applies, given the earlier ``answers`` (the mail system's)."""
    return not question.only_for or answers.get("mail_system", "") in question.only_for


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
    if key in ("mail_system", "tenant", "gateway_hosts", "authserv_ids"):
        return _check_mail_answer(key, value, answers)
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


def _check_mail_answer(key: str, value: str, answers: dict[str, str]) -> Verdict:
    """The answers that say whose verdict to believe (docs/deployment.md)."""
    system = answers.get("mail_system", "")
    if key == "mail_system":
        if value not in MAIL_SYSTEMS:
            return Verdict(f"answer one of: {', '.join(MAIL_SYSTEMS)}")
        if value == "mimecast":
            return Verdict(warning="Mimecast writes its verdict where its position proves "
                                   "nothing, so LinkedIn's notifications stay held until IT "
                                   "lets them through Mimecast unchanged or trusts its ARC "
                                   "seal in Exchange (docs/deployment.md, \"Mimecast\")")
        return Verdict()
    if key == "tenant":
        if not value:
            return Verdict("an answer is needed: Microsoft 365 tenant id (Entra admin center, "
                           "Overview, Tenant ID)") if system == "microsoft365" else Verdict()
        if not _TENANT.fullmatch(value):
            what = "a domain" if "." in value else "not a tenant id"
            return Verdict(f"{value!r} is {what}: the tenant id looks like "
                           "5d3e2773-e07f-4432-a630-1a0f68a28a05 (Entra admin center, "
                           "Overview, Tenant ID)")
        return Verdict()
    hosts = split_hosts(value)
    if key == "gateway_hosts" and not hosts:
        return Verdict("an answer is needed: the gateway's hosts, from the domain's MX records")
    for host in hosts:
        if not _is_host(host):
            return Verdict(f"{host!r} is not a host name: give names such as "
                           "mx0a-00000d07.pphosted.com, separated by commas")
        shared = next((s for s in SHARED_AUTHSERV_IDS if host == s or host == "*." + s), None)
        if shared:
            return Verdict(f"{host!r} is written by every customer of that vendor, on its "
                           "outbound mail too: give your own hosts")
    if key == "gateway_hosts" and system in GATEWAYS:
        name, suffixes = GATEWAYS[system]
        other = [h for h in hosts if not any(_host_under(h, s) for s in suffixes)]
        if other:
            return Verdict(warning=f"{', '.join(other)} is not a {name} host "
                                   f"(…{suffixes[0]}): modbot believes the gateway only where "
                                   "these hosts wrote its Received lines; `modbot check` shows "
                                   "which hosts the mail names")
    return Verdict()


def split_hosts(value: str) -> list[str]:
    """Host names given separated by commas or spaces, lower-cased, each once."""
    return list(dict.fromkeys(h.lower().rstrip(".") for h in re.split(r"[,\s]+", value) if h))


def _host_under(host: str, suffix: str) -> bool:
    """``host`` is ``suffix`` or a name under it."""
    return host == suffix or host.endswith("." + suffix)


def _check_directory(path: Path) -> Verdict:
    from modbot.directory.csv import CsvDirectory
    from modbot.errors import DirectoryError

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
{trust_block(answers)}
[directory]
{directory_line}
[logging]
# "INFO" | "DEBUG" | "WARNING" | "ERROR"; format "text" or "json" (one object per line).
level = "INFO"
format = "text"
"""


def trust_block(answers: dict[str, str]) -> str:
    """The ``[policy]`` keys that say whose verdict to believe, for the mail system answered."""
    system = answers.get("mail_system", "unknown").strip()
    tenant = answers.get("tenant", "").strip().lower()
    hosts = split_hosts(answers.get("gateway_hosts", ""))
    ids = split_hosts(answers.get("authserv_ids", ""))
    lines = ["# Whose verdict on a message is believed depends on the system that receives the",
             "# college's mail (docs/deployment.md); `modbot check` reports what the last 30 days",
             "# of mail prove with these settings, and suggests others."]
    if tenant:
        lines += ["# Microsoft 365: Exchange Online's own verdict, where it writes it on this "
                  "tenant's copies.",
                  f"microsoft365_tenant = {_toml(tenant)}"]
    if hosts:
        name = GATEWAYS[system][0] if system in GATEWAYS else "The gateway"
        lines += [f"# {name}: its verdict, between its own Received lines, when its link "
                  "rewriting made",
                  "# Exchange's check fail.",
                  "gateway_hosts = [" + ", ".join(_toml(h) for h in hosts) + "]"]
    if system == "mimecast":
        lines += ["# Mimecast: its verdict proves nothing where it writes it; notifications stay "
                  "held until",
                  "# IT lets them through unchanged or trusts its ARC seal in Exchange "
                  "(docs/deployment.md)."]
    if system == "google":
        ids = ["mx.google.com"]
        lines.append("# Google Workspace: the verdict right under Google's ingress Received line.")
    elif ids:
        lines.append("# Your mail server's verdict, above its ingress Received line.")
    if ids:
        lines.append("trusted_authserv_ids = [" + ", ".join(_toml(i) for i in ids) + "]")
    if not (tenant or hosts or ids):
        lines += ["# Nothing set: modbot verifies LinkedIn's DKIM signature itself, which fails "
                  "where a",
                  "# gateway or Safe Links rewrote the links. For example:",
                  '# microsoft365_tenant = "5d3e2773-e07f-4432-a630-1a0f68a28a05"',
                  '# gateway_hosts = ["mx0a-00000d07.pphosted.com"]',
                  '# trusted_authserv_ids = ["mx.counsel.example.edu"]']
    return "\n".join(lines) + "\n"


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
