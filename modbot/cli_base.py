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
    from modbot.config import Settings

__all__ = ["_fail", "_settings", "_setup_logging", "_version"]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"modbot: {message}", err=True)
    raise typer.Exit(code)


def _settings(ctx: typer.Context, *, resolve_secrets: bool = True) -> Settings:
    from modbot import config

    path = ctx.obj.get("config") if ctx.obj else None
    account = ctx.obj.get("account") if ctx.obj else None
    try:
        settings = config.load(path, resolve_secrets=resolve_secrets)
        if account:
            settings = settings.select(account)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    _setup_logging(settings.logging.level, settings.logging.format)
    return settings


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
