"""Configurations for tests that need one but do not test it: TOML files and in-memory accounts.

- ``config_text`` and ``write_config``: a valid single-account file with the usual counselor on
  127.0.0.1, each table changed by keyword; ``served_text`` points it at a test Dovecot user and
  aiosmtpd server; ``inbox`` and ``accounts_text``: a file of several [[accounts]].
- ``account``: an ``Account`` for an in-process poll of given servers, with its own SQLite store
  and directory CSV; ``poll_context``: the poll's context for it, trusting the test CA.

A test whose subject is the text of a configuration (a bad key, a documented layout) writes that
text itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modbot.config import (
    Account,
    CounselorSettings,
    DatabaseSettings,
    DirectorySettings,
    ImapSettings,
    PolicySettings,
    SmtpSettings,
)
from modbot.model import Mode
from modbot.poll import Context
from modbot.tls import client_context

if TYPE_CHECKING:
    from support import servers

HOST = "127.0.0.1"
NAME = "Career Services Counselor"
COUNSELOR = "counselor@counsel.example.edu"
CONTACT = "https://counsel.example.edu/secure or 555-0100"
TRUSTED = "mx.counsel.example.edu"
IMAP_PASSWORD_ENV = "MODBOT_IMAP_PASSWORD"
# Two students the test notifications name (tests/data): Jordan has a LinkedIn URL, Sam does not.
DIRECTORY = """name,email,linkedin_url
Jordan Rivera,jrivera@students.example.edu,https://www.linkedin.com/in/jordan-rivera-42
Sam Okafor,sokafor@students.example.edu,
"""

Keys = Mapping[str, Any]


def sqlite_url(path: Path) -> str:
    """The database URL of a SQLite file at ``path``."""
    return f"sqlite:///{path}"


def toml_value(value: Any) -> str:
    """``value`` written as TOML: booleans, numbers, lists, and anything else as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def toml_table(name: str, keys: Keys) -> str:
    """One ``[name]`` table; a key whose value is None is left out."""
    lines = [f"[{name}]", *(f"{key} = {toml_value(value)}"
                            for key, value in keys.items() if value is not None)]
    return "\n".join(lines) + "\n"


def config_text(*, counselor: Keys | None = None, imap: Keys | None = None,
                smtp: Keys | None = None, extra: str = "", **tables: Keys) -> str:
    """A valid single-account file: the counselor, an IMAP login as ``counselor`` on 127.0.0.1
    with its password in $MODBOT_IMAP_PASSWORD, and SMTP on 127.0.0.1.

    ``counselor``, ``imap`` and ``smtp`` change or add keys of those tables (None drops one);
    every further keyword is a table of its own (``database={"url": ...}``), in the order given;
    ``extra`` is appended as written.
    """
    sections: dict[str, Keys] = {
        "counselor": {"name": NAME, "email": COUNSELOR, "confidential_contact": CONTACT,
                      **(counselor or {})},
        "imap": {"host": HOST, "username": "counselor", "password_env": IMAP_PASSWORD_ENV,
                 **(imap or {})},
        "smtp": {"host": HOST, **(smtp or {})},
        **tables,
    }
    text = "\n".join(toml_table(name, keys) for name, keys in sections.items())
    return text + ("\n" + extra if extra else "")


def inbox(name: str, address: str, username: str, *, contact: str = CONTACT,
          password_env: str = IMAP_PASSWORD_ENV, imap: Keys | None = None,
          smtp: Keys | None = None, **tables: Keys) -> dict[str, Any]:
    """One [[accounts]] table as TOML loads it: ``name`` at ``address``, reading ``username``'s
    inbox at imap.counsel.example.edu and sending through smtp.counsel.example.edu.

    ``imap`` and ``smtp`` change or add keys of those tables; ``tables`` are the account's own
    further tables (``policy={"mode": "shadow"}``).
    """
    return {
        "counselor": {"name": name, "email": address, "confidential_contact": contact},
        "imap": {"host": "imap.counsel.example.edu", "username": username,
                 "password_env": password_env, **(imap or {})},
        "smtp": {"host": "smtp.counsel.example.edu", **(smtp or {})},
        **tables,
    }


def accounts_text(*accounts: Mapping[str, Keys], **tables: Keys) -> str:
    """A file of several inboxes: an [[accounts]] table for each of ``accounts`` (such as
    ``inbox`` gives), then the tables they share."""
    parts = ["[[accounts]]\n" + "".join(toml_table(f"accounts.{name}", keys)
                                        for name, keys in each.items())
             for each in accounts]
    return "\n".join([*parts, *(toml_table(name, keys) for name, keys in tables.items())])


def served_text(imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, ca_file: Path, *,
                imap: Keys | None = None, smtp: Keys | None = None, extra: str = "",
                **tables: Keys) -> str:
    """``config_text`` for ``imap_user``'s mailbox and ``smtp_server``, both over implicit TLS
    trusting ``ca_file``; ``imap``, ``smtp`` and ``tables`` as for ``config_text``."""
    return config_text(
        imap={"port": imap_user.port, "username": imap_user.username, "security": "tls",
              "ca_file": ca_file, **(imap or {})},
        smtp={"port": smtp_server.port, "security": "tls", "ca_file": ca_file, **(smtp or {})},
        extra=extra, **tables)


def write_config(folder: Path, text: str | None = None, **changes: Any) -> Path:
    """``folder/modbot.toml`` holding ``text``, or ``config_text(**changes)``; its path."""
    path = folder / "modbot.toml"
    path.write_text(config_text(**changes) if text is None else text, encoding="utf-8")
    return path


def account(folder: Path, imap: ImapSettings, smtp: SmtpSettings, *,
            people: str | Path = DIRECTORY, counselor: Keys | None = None,
            policy: PolicySettings | Keys | None = None, **tables: Any) -> Account:
    """An ``Account`` answering in automatic mode, trusting ``mx.counsel.example.edu``, with its
    store in ``folder/modbot.db``.

    ``people`` is the directory: CSV text written to ``folder/directory.csv``, or a CSV file's
    path. ``counselor`` changes the counselor's fields; ``policy`` is the policy, or fields that
    change the default one; ``tables`` are further tables (``templates=TemplateSettings(...)``).
    """
    if isinstance(people, str):
        csv = folder / "directory.csv"
        csv.write_text(people, encoding="utf-8")
    else:
        csv = people
    if not isinstance(policy, PolicySettings):
        policy = PolicySettings(**{"mode": Mode.AUTO, "trusted_authserv_ids": (TRUSTED,),
                                   **(policy or {})})
    values: dict[str, Any] = {
        "database": DatabaseSettings(url=sqlite_url(folder / "modbot.db")),
        "directory": DirectorySettings(csv=csv),
        **tables,
    }
    return Account(
        counselor=CounselorSettings(**{"name": NAME, "email": COUNSELOR,
                                       "confidential_contact": CONTACT, **(counselor or {})}),
        imap=imap, smtp=smtp, policy=policy, **values)


def poll_context(settings: Account, ca_file: Path, *,
                 dkim_lookup: Callable[[bytes], bytes | None] | None = None) -> Context:
    """A poll context for ``settings`` whose IMAP and SMTP connections trust ``ca_file``; DKIM
    keys come from ``dkim_lookup``, never from DNS."""
    ctx = Context.build(settings, dkim_lookup=dkim_lookup)
    ctx.imap_tls = ctx.smtp_tls = client_context(ca_file)
    return ctx
