"""The tables of the configuration file, one validated, frozen pydantic model per table.

Each model checks its own table (unknown keys are errors) and says what a value means; the
models hold secrets only as ``pydantic.SecretStr``, filled by ``modbot.config`` when it loads a
file. This module must never read a file, an environment variable or a secret itself, and
never log or repr a secret.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from modbot.model import Action, ClassifierRule, Kind, Mode

if TYPE_CHECKING:
    from modbot.classify import Rule

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


class Section(BaseModel):
    """A table of the file: unknown keys are errors, and a loaded value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CounselorSettings(Section):
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


class OAuth2Settings(Section):
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


class _ServerSettings(Section):
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


class DatabaseSettings(Section):
    # Loaded from a file, a relative SQLite path is relative to that file (``parse``).
    url: str = Field(default="sqlite:///modbot.db", min_length=1)


class PolicySettings(Section):
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


class DirectorySettings(Section):
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


class ClassifySettings(Section):
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


class ScheduleSettings(Section):
    poll_seconds: int = Field(default=300, ge=10, le=86400)


class DigestSettings(Section):
    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    time: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str = "UTC"
    misfire_grace_hours: int = Field(default=24 * 6, ge=1)


class ReviewSettings(Section):
    every_hours: int = Field(default=24, ge=1, le=24 * 14)
    token_hours: int = Field(default=72, ge=1, le=24 * 30)


class TemplateSettings(Section):
    dir: Path | None = None
    # Phrases `modbot check` refuses in any text (whole words, any case); None: the defaults,
    # which imply a counseling relationship ("our session", "your counselor", ...).
    forbidden_phrases: tuple[str, ...] | None = None


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "text" for a terminal; "json": one object per line for journald, Docker or a collector.
    format: Literal["text", "json"] = "text"
