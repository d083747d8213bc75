"""Load the TOML configuration into validated, frozen settings.

Every problem in a file is reported together in one ``ConfigError``; unknown keys are errors.
Secrets never live in the file: ``password_env`` names an environment variable and
``password_file`` a file, and both are read here, once. This module must never log or repr a
secret: secrets are held as ``pydantic.SecretStr``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from modbot.errors import ConfigError
from modbot.model import Action, ClassifierRule, Kind, Mode

if TYPE_CHECKING:
    from modbot.classify import Rule

CONFIG_ENV = "MODBOT_CONFIG"
_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")

Security = Literal["tls", "starttls", "none"]
Email = Annotated[str, Field(min_length=3, max_length=254)]


def is_email(value: str) -> bool:
    """True for what the configuration accepts as one email address."""
    return bool(_EMAIL.match(value)) and 3 <= len(value) <= 254


def _check_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CounselorSettings(_Section):
    name: str = Field(min_length=1)
    email: Email
    confidential_contact: str = Field(min_length=1)

    _email = field_validator("email")(_check_email)

    @property
    def domain(self) -> str:
        """The counselor's mail domain, for the Message-IDs of replies and digests."""
        return self.email.rpartition("@")[2]


Provider = Literal["google", "microsoft", "generic"]

# Scopes asked for when an oauth2 table names none. Microsoft's IMAP and SMTP permissions are two
# scopes of one token; offline_access is what makes Microsoft hand out a refresh token.
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    "google": ("https://mail.google.com/",),
    "microsoft": ("https://outlook.office.com/IMAP.AccessAsUser.All",
                  "https://outlook.office.com/SMTP.Send", "offline_access"),
    "generic": (),
}
_GOOGLE_URLS = ("https://accounts.google.com/o/oauth2/v2/auth", "https://oauth2.googleapis.com/token")
_TOKEN_FILES = {"imap": "modbot-imap-token.json", "smtp": "modbot-smtp-token.json"}


def _https_or_loopback(key: str, url: str | None) -> str | None:
    """A problem with ``url`` unless it is https://, or http:// to a loopback host (tests)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return None
    return f"{key} {url!r} must be an https:// address (http:// only on a loopback host)"


class OAuth2Settings(_Section):
    """How modbot gets OAuth2 access tokens for XOAUTH2: the ``[imap.oauth2]`` table.

    The client secret, like a password, is never written in the file: ``client_secret_env`` or
    ``client_secret_file`` (Microsoft's public clients have none; Google's installed-app clients
    always have one). ``token_file`` holds the refresh token and the current access token.
    """

    provider: Provider
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    tenant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")  # microsoft
    authority: str | None = None  # microsoft: another cloud, e.g. https://login.microsoftonline.us
    # parse() fills the default: beside a SQLite database, else beside the configuration file.
    token_file: Path
    scopes: tuple[str, ...] = ()
    token_url: str | None = None  # google (testing) and generic
    authorization_url: str | None = None  # google (testing) and generic, for `modbot auth`
    # Filled from client_secret_env / client_secret_file by load(); never written in the file.
    client_secret: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _fits_provider(self) -> OAuth2Settings:
        problems = [p for p in (_https_or_loopback("token_url", self.token_url),
                                _https_or_loopback("authorization_url", self.authorization_url),
                                _https_or_loopback("authority", self.authority)) if p]
        if self.client_secret_env and self.client_secret_file:
            problems.append("give client_secret_env or client_secret_file, not both")
        if self.provider == "microsoft":
            if self.token_url or self.authorization_url:
                problems.append('token_url and authorization_url are not used with provider = '
                                '"microsoft": msal finds them from authority and tenant')
        elif self.tenant or self.authority:
            problems.append('tenant and authority are only for provider = "microsoft"')
        if self.provider == "google" and not (self.client_secret_env or self.client_secret_file
                                              or self.client_secret):
            problems.append("Google's installed-app clients have a client secret: set "
                            "client_secret_env or client_secret_file")
        if self.provider == "generic" and not self.token_url:
            problems.append('provider = "generic" needs token_url')
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def effective_scopes(self) -> tuple[str, ...]:
        """The configured scopes, else the provider's defaults."""
        return self.scopes or DEFAULT_SCOPES[self.provider]

    @property
    def effective_token_url(self) -> str | None:
        """The token endpoint (None for Microsoft, whose endpoint msal discovers)."""
        return self.token_url or (_GOOGLE_URLS[1] if self.provider == "google" else None)

    @property
    def effective_authorization_url(self) -> str | None:
        """Where `modbot auth` sends the browser (None for Microsoft's device-code flow)."""
        return self.authorization_url or (_GOOGLE_URLS[0] if self.provider == "google" else None)

    @property
    def effective_authority(self) -> str:
        """Microsoft's authority URL with the tenant, e.g. ``.../organizations``."""
        base = (self.authority or "https://login.microsoftonline.com").rstrip("/")
        return f"{base}/{self.tenant or 'organizations'}"


class _ServerSettings(_Section):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    security: Security = "tls"
    ca_file: Path | None = None
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # Filled from password_env / password_file by load(); never written in the file itself.
    password: SecretStr | None = Field(default=None, exclude=True)
    # "oauth2": log in with XOAUTH2 and an access token from the oauth2 table, not a password.
    auth: Literal["password", "oauth2"] = "password"
    oauth2: OAuth2Settings | None = None

    @model_validator(mode="after")
    def _oauth2_is_complete(self) -> _ServerSettings:
        if self.auth == "password" and self.oauth2 is not None:
            raise ValueError('an oauth2 table is given but auth is "password"; '
                             'set auth = "oauth2" to use it')
        if self.auth == "oauth2":
            if self.oauth2 is None:
                raise ValueError('auth = "oauth2" needs an oauth2 table, e.g. [imap.oauth2]')
            if self.password_env or self.password_file:
                raise ValueError('password_env and password_file are not used with '
                                 'auth = "oauth2"')
            if not self.username:
                raise ValueError('auth = "oauth2" needs username (the mailbox\'s address)')
        return self

    @model_validator(mode="after")
    def _plaintext_only_on_loopback(self) -> _ServerSettings:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(
                f'security = "none" sends the password in clear text; it is allowed only for a '
                f"loopback host, not {self.host!r}"
            )
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        return self


class ImapSettings(_ServerSettings):
    port: int = Field(default=993, ge=1, le=65535)
    username: str = Field(min_length=1)
    folder: str = "INBOX"
    keyword: str = Field(default="$ModbotDone", pattern=r"^\$?[A-Za-z][A-Za-z0-9_-]{0,63}$")
    # Folder where sent replies are kept (modbot APPENDs a copy unless the provider does).
    sent_folder: str | None = None
    # LinkedIn candidates bigger than this are held as "too large" without fetching their body.
    max_message_bytes: int = Field(default=10_000_000, ge=100_000)
    # Where the server offers IDLE (RFC 2177), learn of new mail at once on a connection of its
    # own; the interval poll stays as the safety net. false: the interval poll alone.
    idle: bool = True


class SmtpSettings(_ServerSettings):
    port: int = Field(default=465, ge=1, le=65535)


class DatabaseSettings(_Section):
    # Loaded from a file, a relative SQLite path is relative to that file (``parse``).
    url: str = Field(default="sqlite:///modbot.db", min_length=1)


class PolicySettings(_Section):
    mode: Mode = Mode.SHADOW
    trusted_authserv_ids: tuple[str, ...] = ()
    # Microsoft 365: the tenant id whose Exchange Online verdict (it has no authserv-id) is
    # believed, where Exchange writes it on this tenant's copy.
    microsoft365_tenant: str | None = Field(
        default=None, pattern=r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
                              r"[0-9A-Fa-f]{12}$")
    # The college's inbound gateway hosts (Proofpoint's mx0a-….pphosted.com, …), whose verdict
    # at the border is believed when Exchange's own check failed because the gateway changed
    # the message.
    gateway_hosts: tuple[str, ...] = ()
    actions: dict[Kind, Action] = Field(default_factory=dict)
    modes: dict[Kind, Mode] = Field(default_factory=dict)
    redirect_all_to: Email | None = None
    max_replies_per_hour: int = Field(default=20, ge=0)
    max_replies_per_day: int = Field(default=100, ge=0)
    person_window_days: int = Field(default=180, ge=0)
    look_back_days: int = Field(default=7, ge=0)
    # Names, profile links, invitation ids and addresses are removed from the database after
    # this many days; counts by kind and action stay.
    retention_days: int = Field(default=365, ge=1)

    @field_validator("redirect_all_to")
    @classmethod
    def _redirect_is_email(cls, value: str | None) -> str | None:
        return None if value is None else _check_email(value)

    @model_validator(mode="after")
    def _retention_covers_person_window(self) -> PolicySettings:
        if self.retention_days < self.person_window_days:
            raise ValueError(
                f"retention_days ({self.retention_days}) is shorter than person_window_days "
                f"({self.person_window_days}): a person would be answered again once their "
                "first answer was purged; lower person_window_days too"
            )
        return self


_ATTRIBUTE = r"^[A-Za-z][A-Za-z0-9-]{0,63}$"  # an LDAP attribute name, nothing a filter could parse
_LDAP_ONLY = ("ldap_base_dn", "ldap_bind_dn", "ldap_password_env", "ldap_password_file",
              "ldap_ca_file", "ldap_starttls", "ldap_filter", "name_attribute", "email_attribute",
              "url_attribute", "ldap_timeout_seconds")


class DirectorySettings(_Section):
    """Where inviters' addresses come from: a CSV file, an LDAP directory, or both.

    With both, every lookup asks both and they must agree (see ``modbot.directory.combined``).
    """

    csv: Path | None = None
    ldap_url: str | None = None  # ldaps://host[:port] or ldap://host[:port] (then StartTLS)
    ldap_base_dn: str | None = None
    ldap_bind_dn: str | None = None  # unset: an anonymous bind
    ldap_password_env: str | None = None
    ldap_password_file: Path | None = None
    ldap_ca_file: Path | None = None
    ldap_starttls: bool = True  # ldap:// only; false is refused for anything but loopback
    ldap_filter: str = Field(default="(objectClass=person)", pattern=r"^\(.*\)$")
    name_attribute: str = Field(default="cn", pattern=_ATTRIBUTE)
    email_attribute: str = Field(default="mail", pattern=_ATTRIBUTE)
    url_attribute: str = Field(default="labeledURI", pattern=_ATTRIBUTE)
    ldap_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # Filled from ldap_password_env / ldap_password_file by load(); never written in the file.
    ldap_password: SecretStr | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _ldap_is_complete(self) -> DirectorySettings:
        if self.ldap_url is None:
            stray = sorted(set(_LDAP_ONLY) & self.model_fields_set)
            if stray:
                raise ValueError(f"{', '.join(stray)} given without ldap_url")
            return self
        problems: list[str] = []
        parts = urlsplit(self.ldap_url)
        try:
            _ = parts.port  # raises for a port that is not a number from 0 to 65535
            usable = (parts.scheme in ("ldap", "ldaps") and bool(parts.hostname)
                      and parts.path in ("", "/") and not parts.query and not parts.fragment
                      and not parts.username and not parts.password)
        except ValueError:
            usable = False
        if not usable:
            problems.append(f"ldap_url {self.ldap_url!r} must look like ldaps://host[:port] "
                            "or ldap://host[:port]")
        elif self.ldap_security == "none" and not is_loopback(self.ldap_host):
            problems.append(f"ldap_starttls = false sends the directory's answers in clear "
                            f"text; it is allowed only for a loopback host, not "
                            f"{self.ldap_host!r}")
        if not self.ldap_base_dn or "=" not in self.ldap_base_dn:
            problems.append("ldap_base_dn is required with ldap_url (e.g. "
                            '"ou=people,dc=example,dc=edu")')
        if self.ldap_password_env and self.ldap_password_file:
            problems.append("give ldap_password_env or ldap_password_file, not both")
        has_password = bool(self.ldap_password_env or self.ldap_password_file)
        if self.ldap_bind_dn and not has_password:
            problems.append("ldap_bind_dn needs ldap_password_env or ldap_password_file")
        if has_password and not self.ldap_bind_dn:
            problems.append("a directory password needs ldap_bind_dn")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def ldap_host(self) -> str:
        """The LDAP server's host name (only meaningful with ``ldap_url``)."""
        return urlsplit(self.ldap_url or "").hostname or ""

    @property
    def ldap_port(self) -> int:
        """The LDAP server's port: the URL's, else 636 for ldaps:// and 389 for ldap://."""
        parts = urlsplit(self.ldap_url or "")
        return parts.port or (636 if parts.scheme == "ldaps" else 389)

    @property
    def ldap_security(self) -> Security:
        """``tls`` for ldaps://, ``starttls`` for ldap://, ``none`` when StartTLS is turned off."""
        if urlsplit(self.ldap_url or "").scheme == "ldaps":
            return "tls"
        return "starttls" if self.ldap_starttls else "none"


def _compile_rule(spec: dict[str, str]) -> Rule:
    # Imported here: classify pulls in dkimpy and tldextract (~170 ms), which commands that only
    # read the configuration need not pay for.
    from modbot.classify import Rule

    return Rule.from_spec(spec)


def _check_rule(spec: dict[str, str]) -> dict[str, str]:
    _compile_rule(spec)  # raises ValueError saying what is wrong with this table
    return spec


class ClassifySettings(_Section):
    """The counselor's own classification rules, read before the built-in table."""

    # Each table is compiled at load, so a bad kind or regex is reported with the file's other
    # problems; ``compiled_rules`` hands the poll the Rule values.
    rules: tuple[Annotated[dict[str, str], AfterValidator(_check_rule)], ...] = ()

    @field_validator("rules")
    @classmethod
    def _names_are_unique(cls, rules: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
        builtin = set(ClassifierRule) - {ClassifierRule.ERROR}
        seen: set[str] = set()
        for spec in rules:
            name = spec["name"]
            if name in builtin:
                raise ValueError(f"rule name {name!r} is taken by a built-in rule")
            if name in seen:
                raise ValueError(f"rule name {name!r} is used twice")
            seen.add(name)
        return rules

    @cached_property
    def compiled_rules(self) -> tuple[Rule, ...]:
        """The rules as ``classify(..., extra_rules=...)`` takes them, in the file's order."""
        return tuple(_compile_rule(dict(spec)) for spec in self.rules)


class ScheduleSettings(_Section):
    poll_seconds: int = Field(default=300, ge=10, le=86400)


class DigestSettings(_Section):
    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    time: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str = "UTC"
    misfire_grace_hours: int = Field(default=24 * 6, ge=1)


class ReviewSettings(_Section):
    every_hours: int = Field(default=24, ge=1, le=24 * 14)
    token_hours: int = Field(default=72, ge=1, le=24 * 30)


class TemplateSettings(_Section):
    dir: Path | None = None
    # Phrases `modbot check` refuses in any text (whole words, any case); None: the defaults,
    # which imply a counseling relationship ("our session", "your counselor", ...).
    forbidden_phrases: tuple[str, ...] | None = None


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "text" for a terminal; "json": one object per line for journald, Docker or a collector.
    format: Literal["text", "json"] = "text"


class Settings(_Section):
    """The configuration of one inbox: its counselor, IMAP and SMTP servers, and the rest.

    A file with several ``[[accounts]]`` loads as the first account's ``Settings``;
    :meth:`accounts` gives every account's, each a whole ``Settings`` sharing the file's
    database, schedule, digest, review, classify and logging tables, so that everything which
    handles one inbox takes a ``Settings`` and never needs to know about the others.
    """

    counselor: CounselorSettings
    imap: ImapSettings
    smtp: SmtpSettings
    database: DatabaseSettings = DatabaseSettings()
    policy: PolicySettings = PolicySettings()
    directory: DirectorySettings = DirectorySettings()
    classify: ClassifySettings = ClassifySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    digest: DigestSettings = DigestSettings()
    templates: TemplateSettings = TemplateSettings()
    review: ReviewSettings = ReviewSettings()
    logging: LoggingSettings = LoggingSettings()

    # Every account's settings, in the file's order, when the file has [[accounts]]: set by
    # parse() on each of them (a copy made with model_copy keeps the original's).
    _accounts: tuple[Settings, ...] = PrivateAttr(default=())

    @property
    def account(self) -> str:
        """The key under which cursors and messages of this inbox are stored."""
        return f"{self.imap.username}@{self.imap.host}"

    def accounts(self) -> tuple[Settings, ...]:
        """Every inbox of the configuration, in the file's order; just this one without
        ``[[accounts]]``."""
        return self._accounts or (self,)

    def select(self, name: str) -> Settings:
        """The one account called ``name`` (``username@host``, or the IMAP username alone),
        standing on its own; raises ``ConfigError`` naming the accounts there are."""
        found = [a for a in self.accounts() if name in (a.account, a.imap.username)]
        if len(found) != 1:
            known = ", ".join(a.account for a in self.accounts())
            why = "matches several accounts" if found else "is not an account"
            raise ConfigError(f"--account {name} {why} of this configuration ({known})")
        alone = found[0].model_copy()
        alone._accounts = ()
        return alone


class ConfigProblems(ConfigError):
    """Everything wrong with one configuration file, one sentence per problem in ``problems``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        count = len(problems)
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}:\n{listing}")
        self.source = source
        self.problems = tuple(problems)


def _read_secret(section: str, raw: dict[str, Any], base: Path,
                 prefix: str = "") -> tuple[str | None, str | None]:
    """Return (secret, problem) for a section's ``<prefix>password_env`` / ``_file``."""
    env_key, file_key = f"{prefix}password_env", f"{prefix}password_file"
    env_name = raw.get(env_key)
    file_name = raw.get(file_key)
    if isinstance(env_name, str) and env_name:
        value = os.environ.get(env_name)
        if value is None:
            return None, f"{section}.{env_key}: environment variable {env_name} is not set"
        return value, None
    if isinstance(file_name, str) and file_name:
        path = (base / file_name).expanduser()
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n"), None
        except OSError as exc:
            return None, f"{section}.{file_key}: cannot read {path}: {exc.strerror}"
    return None, None


def _beside_database(data: dict[str, Any], base: Path) -> Path:
    """The folder of a SQLite database (as the store will open it), else ``base``."""
    database = data.get("database")
    url = database.get("url") if isinstance(database, dict) else None
    url = url if isinstance(url, str) else DatabaseSettings().url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").partition("?")[0]
        if path and path != ":memory:":
            return Path(path).expanduser().parent
    return base


def _prepare_oauth2(data: dict[str, Any], base: Path, resolve_secrets: bool,
                    token_dir: Path, token_tag: str = "") -> list[str]:
    """Read client secrets, resolve paths and fill defaults of the oauth2 tables in place.

    ``[smtp] auth = "oauth2"`` without its own table shares IMAP's: the same client, sign-in and
    token file (and IMAP's username when SMTP names none). A token file not named in the file
    goes to ``token_dir``; ``token_tag`` tells the default files of several accounts apart.
    """
    problems: list[str] = []
    for section in ("imap", "smtp"):
        server = data.get(section)
        if not isinstance(server, dict):
            continue
        imap = data.get("imap")
        if (section == "smtp" and server.get("auth") == "oauth2" and "oauth2" not in server
                and isinstance(imap, dict) and isinstance(imap.get("oauth2"), dict)):
            server["oauth2"] = dict(imap["oauth2"])
            server.setdefault("username", imap.get("username"))
            continue
        if not isinstance(server.get("oauth2"), dict):
            continue
        raw = server["oauth2"] = dict(server["oauth2"])
        where = f"{section}.oauth2"
        if "client_secret" in raw:
            problems.append(f"{where}.client_secret: secrets are never written in the file; "
                            "use client_secret_env or client_secret_file")
            raw.pop("client_secret")
        env_name, file_name = raw.get("client_secret_env"), raw.get("client_secret_file")
        if resolve_secrets and isinstance(env_name, str) and env_name:
            if env_name in os.environ:
                raw["client_secret"] = os.environ[env_name]
            else:
                problems.append(f"{where}.client_secret_env: environment variable {env_name} "
                                "is not set")
        elif resolve_secrets and isinstance(file_name, str) and file_name:
            path = (base / file_name).expanduser()
            try:
                raw["client_secret"] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"{where}.client_secret_file: cannot read {path}: "
                                f"{exc.strerror}")
        for key in ("client_secret_file", "token_file"):
            if isinstance(raw.get(key), str):
                raw[key] = str((base / raw[key]).expanduser())
        name = _TOKEN_FILES[section]
        if token_tag:
            name = name.replace("-token.json", f"-token-{token_tag}.json")
        raw.setdefault("token_file", str(token_dir / name))
    return problems


def _prepare(data: dict[str, Any], base: Path, resolve_secrets: bool, token_dir: Path,
             token_tag: str = "") -> list[str]:
    """Read the secrets and resolve the paths of the tables in ``data``, in place.

    Problems are named by their place in ``data`` (``imap.password_env: ...``).
    """
    problems: list[str] = []
    for section in ("imap", "smtp"):
        raw = data.get(section)
        if not isinstance(raw, dict):
            continue
        raw = data[section] = dict(raw)
        if "password" in raw:
            problems.append(
                f"{section}.password: secrets are never written in the file; "
                "use password_env or password_file"
            )
            raw.pop("password")
        problem = None
        if resolve_secrets:
            secret, problem = _read_secret(section, raw, base)
            if problem:
                problems.append(problem)
            if secret is not None:
                raw["password"] = secret
        if (section == "imap" and resolve_secrets and "password" not in raw and not problem
                and raw.get("auth") != "oauth2"):
            problems.append("imap: set password_env or password_file")
        for key in ("ca_file", "password_file"):
            if isinstance(raw.get(key), str):
                raw[key] = str((base / raw[key]).expanduser())
    directory = data.get("directory")
    if isinstance(directory, dict):
        directory = data["directory"] = dict(directory)
        if "ldap_password" in directory:
            problems.append("directory.ldap_password: secrets are never written in the file; "
                            "use ldap_password_env or ldap_password_file")
            directory.pop("ldap_password")
        if resolve_secrets:
            secret, problem = _read_secret("directory", directory, base, prefix="ldap_")
            if problem:
                problems.append(problem)
            if secret is not None:
                directory["ldap_password"] = secret
    for section, key in (("directory", "csv"), ("directory", "ldap_ca_file"),
                         ("directory", "ldap_password_file"), ("templates", "dir")):
        raw = data.get(section)
        if isinstance(raw, dict) and isinstance(raw.get(key), str):
            raw = data[section] = dict(raw)
            raw[key] = str((base / raw[key]).expanduser())
    problems.extend(_prepare_oauth2(data, base, resolve_secrets, token_dir, token_tag))
    return problems


def _validate(data: dict[str, Any]) -> tuple[Settings | None, list[str]]:
    try:
        return Settings.model_validate(data), []
    except ValidationError as exc:
        from modbot.config_words import describe

        return None, [describe(error, Settings) for error in exc.errors()]


# What each [[accounts]] table holds. counselor, imap and smtp are its own; a directory, policy
# or templates table there replaces the top-level one as a whole for that account. Everything
# else (database, schedule, digest, review, classify, logging) is shared by every account.
ACCOUNT_TABLES = ("counselor", "imap", "smtp", "directory", "policy", "templates")
_INBOX_TABLES = ("counselor", "imap", "smtp")


def _token_tag(account: dict[str, Any], number: int) -> str:
    """What tells one account's default token files from another's: its IMAP username."""
    imap = account.get("imap")
    username = imap.get("username") if isinstance(imap, dict) else None
    if not isinstance(username, str) or not username:
        return str(number)
    return re.sub(r"[^A-Za-z0-9@._-]", "_", username)[:100]


def _uses_review(settings: Settings) -> bool:
    policy = settings.policy
    return policy.mode is Mode.REVIEW or Mode.REVIEW in policy.modes.values()


def _parse_accounts(data: dict[str, Any], tables: object, base: Path,
                    resolve_secrets: bool) -> tuple[list[Settings], list[str]]:
    """Every [[accounts]] table merged with the shared tables into its own ``Settings``."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        return [], ["accounts: write each inbox as an [[accounts]] table"]
    if not tables:
        return [], ["accounts: give at least one [[accounts]] table, or use [counselor], [imap] "
                    "and [smtp] for a single inbox"]
    problems: list[str] = []
    mixed = [f"[{key}]" for key in _INBOX_TABLES if key in data]
    if mixed:
        problems.append(
            f"{', '.join(mixed)} at the top level cannot be used with [[accounts]]: with "
            "[[accounts]], each inbox has its own counselor, imap and smtp tables inside its "
            "[[accounts]] table")
        for key in _INBOX_TABLES:
            data.pop(key, None)
    token_dir = _beside_database(data, base)
    problems.extend(_prepare(data, base, resolve_secrets, token_dir))  # shared tables, once
    shared = dict(data)
    views: list[Settings] = []
    seen: dict[str, int] = {}
    for number, table in enumerate(tables, start=1):
        where = f"accounts[{number}]"
        own = dict(table)
        for key in sorted(set(own) - set(ACCOUNT_TABLES)):
            own.pop(key)
            if key in Settings.model_fields:
                problems.append(f"{where}.{key}: [{key}] is shared by every account; set it at "
                                "the top level")
            else:
                from modbot.config_words import suggestion

                problems.append(f"{where}.{key}: unknown key"
                                f"{suggestion(key, ACCOUNT_TABLES)}")
        found = _prepare(own, base, resolve_secrets, token_dir, _token_tag(own, number))
        view, invalid = _validate({**shared, **own})
        for problem in (*found, *invalid):
            table_name = problem.split(":", 1)[0].split(".", 1)[0]
            ours = table_name in own or table_name in _INBOX_TABLES
            problems.append(f"{where}.{problem}" if ours else problem)
        if view is None:
            continue
        if view.account in seen:
            problems.append(f"{where}: the same inbox ({view.account}) as "
                            f"accounts[{seen[view.account]}]; list each inbox once")
        seen.setdefault(view.account, number)
        if len(tables) > 1 and _uses_review(view):
            problems.append(
                f"{where}.policy: review mode is not available with several accounts yet (the "
                "review email would list every account's waiting replies); use shadow or auto")
        views.append(view)
    return views, list(dict.fromkeys(problems))


_SQLITE_URL = re.compile(r"^(sqlite(?:\+\w+)?:///)([^?]*)(.*)$", re.DOTALL)


def _anchor_database(data: dict[str, Any], base: Path) -> None:
    """Make a relative SQLite file (the default ``modbot.db`` too) relative to ``base``, the
    configuration file's folder, like every other path in the file, in place.

    Relative to the working directory, the same file would open another database depending
    on where modbot was started from: a new, empty one under systemd, whose working
    directory is ``/``.
    """
    table = data.get("database", {})
    if not isinstance(table, dict):
        return
    url = table.get("url", DatabaseSettings().url)
    match = _SQLITE_URL.match(url) if isinstance(url, str) else None
    if match is None:
        return
    path = match.group(2)
    if not path or path == ":memory:" or path.startswith(("file:", "/")):
        return
    data["database"] = {**table, "url": f"{match.group(1)}{base / Path(path).expanduser()}"
                                        f"{match.group(3)}"}


def parse(data: dict[str, Any], *, source: str = "config", base: Path | None = None,
          resolve_secrets: bool = True) -> Settings:
    """Validate a configuration mapping; raise ``ConfigError`` listing every problem.

    A mapping with ``accounts`` (a list of tables, one per inbox) loads as its first account;
    ``Settings.accounts()`` gives all of them.
    """
    base = base or Path.cwd()
    data = {key: (dict(value) if isinstance(value, dict) else value) for key, value in data.items()}
    _anchor_database(data, base)
    settings: Settings | None = None
    if "accounts" in data:
        views, problems = _parse_accounts(data, data.pop("accounts"), base, resolve_secrets)
        if views and not problems:
            for view in views:
                view._accounts = tuple(views)
            settings = views[0]
    else:
        problems = _prepare(data, base, resolve_secrets, _beside_database(data, base))
        settings, invalid = _validate(data)
        problems.extend(invalid)
    if problems or settings is None:
        raise ConfigProblems(source, problems)
    return settings


def load(path: Path | str | None = None, *, resolve_secrets: bool = True) -> Settings:
    """Load settings from ``path``, else from ``$MODBOT_CONFIG``; raise ``ConfigError``.

    Relative paths inside the file are taken relative to the file's own directory.
    """
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        if not env:
            raise ConfigError(f"no configuration given: pass --config PATH or set {CONFIG_ENV}")
        path = env
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, source=str(path), base=path.parent.resolve(),
                 resolve_secrets=resolve_secrets)
