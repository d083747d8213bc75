"""`modbot check` run in-process on a configuration written for the test, and its lines."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from modbot.cli import app

runner = CliRunner()


def config_text(tmp_path: Path, *, imap_port: int = 1, smtp_port: int = 2,
                imap_security: str = "tls", smtp_security: str = "tls",
                ca_file: Path | None = None, user: str = "counselor",
                extra: str = "") -> str:
    ca = f'ca_file = "{ca_file}"\n' if ca_file else ""
    return f"""
[counselor]
name = "Career Services Counselor"
email = "counselor@counsel.example.edu"
confidential_contact = "https://counsel.example.edu/secure or 555-0100"

[imap]
host = "127.0.0.1"
port = {imap_port}
security = "{imap_security}"
username = "{user}"
password_env = "MODBOT_CHECK_PASSWORD"
timeout_seconds = 2
{ca}
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "{smtp_security}"
timeout_seconds = 2
{ca}
[database]
url = "sqlite:///state/modbot.db"
{extra}
"""


def check(tmp_path: Path, text: str) -> tuple[int, list[str]]:
    path = tmp_path / "modbot.toml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["--config", str(path), "check"])
    assert "Traceback" not in result.output
    return result.exit_code, result.output.splitlines()


def line(lines: list[str], start: str) -> str:
    found = [text for text in lines if text.startswith(start)]
    assert found, f"no line starts with {start!r} in:\n" + "\n".join(lines)
    return found[0]
