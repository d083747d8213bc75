"""`modbot check` run in-process on a configuration written for the test, and its lines."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from modbot.cli import app
from support import configs

runner = CliRunner()


def config_text(tmp_path: Path, *, imap_port: int = 1, smtp_port: int = 2,
                imap_security: str = "tls", smtp_security: str = "tls",
                ca_file: Path | None = None, user: str = "counselor",
                extra: str = "") -> str:
    """A file for `check` with two-second timeouts and the password in $MODBOT_CHECK_PASSWORD."""
    return configs.config_text(
        imap={"port": imap_port, "security": imap_security, "username": user,
              "password_env": "MODBOT_CHECK_PASSWORD", "timeout_seconds": 2, "ca_file": ca_file},
        smtp={"port": smtp_port, "security": smtp_security, "timeout_seconds": 2,
              "ca_file": ca_file},
        database={"url": "sqlite:///state/modbot.db"}, extra=extra)


def check(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    path = configs.write_config(tmp_path, text)
    result = runner.invoke(app, ["--config", str(path), "check"])
    assert "Traceback" not in result.output
    return result.exit_code, result.output.splitlines()


def line(lines: list[str], start: str) -> str:
    found = [text for text in lines if text.startswith(start)]
    assert found, f"no line starts with {start!r} in:\n" + "\n".join(lines)
    return found[0]
