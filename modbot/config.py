"""Load the TOML configuration file into a validated, frozen ``Config``.

A ``Config`` is the whole file: its accounts, one ``Account`` per inbox (each carrying the
shared tables too, so that whatever handles one inbox needs nothing else), and the tables they
share. Reading the file, its secrets and its paths happens here; what each table may hold is
``modbot.config_sections``. Every problem in a file is reported together in one
``ConfigError``; unknown keys are errors. Secrets never live in the file: ``password_env`` names
an environment variable and ``password_file`` a file, and both are read here, once. This module
must never log or repr a secret: secrets are held as ``pydantic.SecretStr``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modbot.config_sections import (
    DEFAULT_SCOPES,
    ClassifySettings,
    CounselorSettings,
    DatabaseSettings,
    DigestSettings,
    DirectorySettings,
    ImapSettings,
    LoggingSettings,
    OAuth2Settings,
    PolicySettings,
    ReviewSettings,
    ScheduleSettings,
    Section,
    Security,
    SmtpSettings,
    TemplateSettings,
    is_email,
    is_loopback,
)
from modbot.errors import ConfigError
from modbot.model import Mode

# The tables' models are imported from here by the rest of modbot, as they always were.
__all__ = [
    "ACCOUNT_TABLES",
    "CONFIG_ENV",
    "DEFAULT_SCOPES",
    "Account",
    "ClassifySettings",
    "Config",
    "ConfigProblems",
    "CounselorSettings",
    "DatabaseSettings",
    "DigestSettings",
    "DirectorySettings",
    "ImapSettings",
    "LoggingSettings",
    "OAuth2Settings",
    "PolicySettings",
    "ReviewSettings",
    "ScheduleSettings",
    "Security",
    "SmtpSettings",
    "TemplateSettings",
    "is_email",
    "is_loopback",
    "load",
    "parse",
]

CONFIG_ENV = "MODBOT_CONFIG"
_TOKEN_FILES = {"imap": "modbot-imap-token.json", "smtp": "modbot-smtp-token.json"}


class _TopLevel(Section):
    """The tables outside [[accounts]]: the shared ones and the defaults an account may replace."""

    database: DatabaseSettings = DatabaseSettings()
    policy: PolicySettings = PolicySettings()
    directory: DirectorySettings = DirectorySettings()
    classify: ClassifySettings = ClassifySettings()
    schedule: ScheduleSettings = ScheduleSettings()
    digest: DigestSettings = DigestSettings()
    templates: TemplateSettings = TemplateSettings()
    review: ReviewSettings = ReviewSettings()
    logging: LoggingSettings = LoggingSettings()


class Account(_TopLevel):
    """One inbox of the file: its counselor, IMAP and SMTP servers, and the rest.

    Its own counselor, imap, smtp, directory, policy and templates, and the file's shared
    database, schedule, digest, review, classify and logging tables (read once, the same objects
    in every account), so that everything which handles one inbox takes an ``Account`` and
    never needs to know about the others.
    """

    counselor: CounselorSettings
    imap: ImapSettings
    smtp: SmtpSettings

    @property
    def account(self) -> str:
        """The key under which cursors and messages of this inbox are stored."""
        return f"{self.imap.username}@{self.imap.host}"


@dataclass(frozen=True)
class Config:
    """A whole configuration file: its accounts, and the tables they share.

    ``accounts`` holds one ``Account`` per inbox in the file's order: the single top-level
    ``[counselor]``/``[imap]``/``[smtp]`` form gives one, ``[[accounts]]`` one per table.
    The shared tables (database, schedule, digest, review, classify, logging) are the same in
    every account; what runs every inbox at once (the daemon, a poll of every inbox, ``check``,
    ``status``) reads them here.
    """

    accounts: tuple[Account, ...]

    def __post_init__(self) -> None:
        if not self.accounts:
            raise ValueError("a configuration has at least one account")

    @property
    def first(self) -> Account:
        """The account a command acts on when no ``--account`` names one."""
        return self.accounts[0]

    @property
    def database(self) -> DatabaseSettings:
        return self.first.database

    @property
    def schedule(self) -> ScheduleSettings:
        return self.first.schedule

    @property
    def digest(self) -> DigestSettings:
        return self.first.digest

    @property
    def review(self) -> ReviewSettings:
        return self.first.review

    @property
    def classify(self) -> ClassifySettings:
        return self.first.classify

    @property
    def logging(self) -> LoggingSettings:
        return self.first.logging

    def only(self, name: str) -> Config:
        """This configuration with just the account called ``name`` (``username@host``, or
        the IMAP username alone); raises ``ConfigError`` naming the accounts there are."""
        found = [a for a in self.accounts if name in (a.account, a.imap.username)]
        if len(found) != 1:
            known = ", ".join(a.account for a in self.accounts)
            why = "matches several accounts" if found else "is not an account"
            raise ConfigError(f"--account {name} {why} of this configuration ({known})")
        return Config((found[0],))


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


def _validate(data: dict[str, Any]) -> tuple[Account | None, list[str]]:
    try:
        return Account.model_validate(data), []
    except ValidationError as exc:
        from modbot.config_words import describe

        return None, [describe(error, Account) for error in exc.errors()]


def _validate_shared(data: dict[str, Any]) -> tuple[dict[str, Section], list[str]]:
    """The top-level tables validated once, as the models every account is given as they are
    (pydantic keeps a model instance it is handed), so that 200 accounts share one of each."""
    try:
        top = _TopLevel.model_validate(data)
    except ValidationError as exc:
        from modbot.config_words import describe

        return {}, [describe(error, _TopLevel) for error in exc.errors()]
    return {name: getattr(top, name) for name in _TopLevel.model_fields}, []


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


def _uses_review(settings: Account) -> bool:
    policy = settings.policy
    return policy.mode is Mode.REVIEW or Mode.REVIEW in policy.modes.values()


def _parse_accounts(data: dict[str, Any], tables: object, base: Path,
                    resolve_secrets: bool) -> tuple[list[Account], list[str]]:
    """Every [[accounts]] table merged with the shared tables into its own ``Account``."""
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
    problems.extend(_prepare(data, base, resolve_secrets, token_dir))
    shared, invalid = _validate_shared(data)  # once, and the same objects in every account
    problems.extend(invalid)
    views: list[Account] = []
    seen: dict[str, int] = {}
    for number, table in enumerate(tables, start=1):
        where = f"accounts[{number}]"
        own = dict(table)
        for key in sorted(set(own) - set(ACCOUNT_TABLES)):
            own.pop(key)
            if key in Account.model_fields:
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
          resolve_secrets: bool = True) -> Config:
    """Validate a configuration mapping; raise ``ConfigError`` listing every problem.

    A mapping with ``accounts`` (a list of tables, one per inbox) gives one account per table;
    one without, the single account of its ``counselor``, ``imap`` and ``smtp`` tables.
    """
    base = base or Path.cwd()
    data = {key: (dict(value) if isinstance(value, dict) else value) for key, value in data.items()}
    _anchor_database(data, base)
    accounts: list[Account] = []
    if "accounts" in data:
        accounts, problems = _parse_accounts(data, data.pop("accounts"), base, resolve_secrets)
    else:
        problems = _prepare(data, base, resolve_secrets, _beside_database(data, base))
        settings, invalid = _validate(data)
        problems.extend(invalid)
        accounts = [settings] if settings is not None else []
    if problems or not accounts:
        raise ConfigProblems(source, problems)
    return Config(tuple(accounts))


def load(path: Path | str | None = None, *, resolve_secrets: bool = True) -> Config:
    """Load the configuration from ``path``, else from ``$MODBOT_CONFIG``; raise ``ConfigError``.

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
