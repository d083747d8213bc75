"""What every ``modbot`` command shares: loading the settings, failing in one sentence, logging.

Kept apart from the commands so that the modules defining them (``modbot.cli``,
``modbot.cli_setup``, ``modbot.cli_review``) import it without importing each other. Light on
purpose: nothing heavy is imported until a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer

from modbot.errors import ConfigError

if TYPE_CHECKING:
    from modbot.config import Account, Config

__all__ = ["_config", "_fail", "_settings", "_setup_logging", "_version"]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"modbot: {message}", err=True)
    raise typer.Exit(code)


def _config(ctx: typer.Context, *, resolve_secrets: bool = True) -> Config:
    """The configuration, with only the account ``--account`` names when it names one."""
    from modbot import config

    path = ctx.obj.get("config") if ctx.obj else None
    account = ctx.obj.get("account") if ctx.obj else None
    try:
        loaded = config.load(path, resolve_secrets=resolve_secrets)
        if account:
            loaded = loaded.only(account)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    _setup_logging(loaded.logging.level, loaded.logging.format)
    return loaded


def _settings(ctx: typer.Context, *, resolve_secrets: bool = True) -> Account:
    """The one account a command acts on: the one ``--account`` names, else the first."""
    return _config(ctx, resolve_secrets=resolve_secrets).first


def _setup_logging(level: str, fmt: str = "text") -> None:
    from modbot.logs import install

    install(level, fmt)  # also holds chatty and indiscreet libraries at WARNING


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modbot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from modbot import __version__

        return __version__
