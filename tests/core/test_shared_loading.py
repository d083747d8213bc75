"""One daemon, many accounts: the directory and the templates they share are loaded once."""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path
from typing import Any, cast

from modbot import config
from modbot.poll import Context
from modbot.render import default_templates_dir
from modbot.store import Store

DIRECTORY = "name,email,linkedin_url\nJordan Rivera,jordan@students.example.edu,\n"


def accounts(tmp_path: Path, count: int, **tables: Any) -> config.Config:
    """A configuration of ``count`` [[accounts]] sharing the top-level ``tables``."""
    data: dict[str, Any] = {
        "policy": {"mode": "shadow"},
        **tables,
        "accounts": [{
            "counselor": {"name": f"Counselor {n}", "email": f"c{n}@counsel.example.edu",
                          "confidential_contact": "https://counsel.example.edu/secure"},
            "imap": {"host": "imap.counsel.example.edu", "username": f"c{n}"},
            "smtp": {"host": "smtp.counsel.example.edu"},
        } for n in range(count)],
    }
    return config.parse(data, base=tmp_path, resolve_secrets=False)


def context(account: config.Account) -> Context:
    # Neither the store nor the TLS context is used to load the directory or the templates.
    return Context(account, cast(Store, None), ssl.create_default_context())


def test_accounts_share_one_directory_and_one_set_of_templates(tmp_path: Path) -> None:
    (tmp_path / "directory.csv").write_text(DIRECTORY, encoding="utf-8")
    loaded = accounts(tmp_path, 3, directory={"csv": "directory.csv"})
    contexts = [context(a) for a in loaded.accounts]
    for ctx in contexts:
        ctx.load_all()
    assert len({id(ctx.directory) for ctx in contexts}) == 1
    assert len({id(ctx.templates) for ctx in contexts}) == 1
    assert contexts[0].directory is not None
    assert contexts[0].directory.lookup("Jordan Rivera", None).email == (  # type: ignore[union-attr]
        "jordan@students.example.edu")


def test_a_changed_file_is_read_anew(tmp_path: Path) -> None:
    """A directory export or a template replaced on disk is loaded again, not taken from an
    earlier context."""
    csv = tmp_path / "directory.csv"
    csv.write_text(DIRECTORY, encoding="utf-8")
    folder = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), folder)
    first = context(accounts(tmp_path, 1, directory={"csv": "directory.csv"},
                             templates={"dir": "templates"}).first)
    first.load_all()
    csv.write_text(DIRECTORY + "Sam Lee,sam@students.example.edu,\n", encoding="utf-8")
    template = next(folder.glob("*.j2"))
    template.write_text(template.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    later = os.stat(csv).st_mtime_ns + 10**9  # a coarse clock must not hide the change
    os.utime(csv, ns=(later, later))
    os.utime(template, ns=(later, later))
    second = context(accounts(tmp_path, 1, directory={"csv": "directory.csv"},
                              templates={"dir": "templates"}).first)
    assert second.directory is not first.directory
    assert second.templates is not first.templates
    assert second.directory is not None
    assert second.directory.lookup("Sam Lee", None).email == (  # type: ignore[union-attr]
        "sam@students.example.edu")


def test_accounts_with_their_own_directories_keep_them(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(DIRECTORY, encoding="utf-8")
    (tmp_path / "b.csv").write_text(DIRECTORY, encoding="utf-8")
    loaded = accounts(tmp_path, 2)
    own = [a.model_copy(update={"directory": a.directory.model_copy(
        update={"csv": tmp_path / name})}) for a, name in zip(loaded.accounts, ("a.csv", "b.csv"),
                                                              strict=True)]
    first, second = (context(a) for a in own)
    assert first.directory is not second.directory
