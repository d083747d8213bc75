"""Installing for real: the README's way to the PATH and into production, commands in step with
the code, and a demo that says what to do next."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from modbot.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
runner = CliRunner()


def section(title: str) -> str:
    """The README section under ``title``, up to the next heading of the same level."""
    level = re.search(rf"^(#+) {re.escape(title)}$", README, re.MULTILINE)
    assert level, title
    rest = README[level.end():]
    end = re.search(rf"^{level.group(1)} ", rest, re.MULTILINE)
    return rest[:end.start()] if end else rest


def test_readme_says_how_to_get_modbot_on_the_path() -> None:
    """After the quick start the README says where the command is and how to install it."""
    text = section("`modbot` on the PATH")
    assert ".venv/bin/modbot" in text and "pipx install ." in text
    assert "ln -s /opt/modbot/bin/modbot /usr/local/bin/modbot" in text


def test_readme_goes_into_production() -> None:
    """"Into production" covers the user, the folders, systemd or Docker, check, the shadow week
    and the switch to automatic replies."""
    text = section("Into production")
    for step in ("useradd --system", "/var/lib/modbot", "systemctl enable --now modbot",
                 "Docker", "check", "shadow week", 'mode = "auto"'):
        assert step in text, step


def test_readme_lists_every_command() -> None:
    """Every command modbot has is in the README's table, and every command there exists."""
    group = typer.main.get_command(app)
    commands = set(getattr(group, "commands", {}))
    table = section("Commands")
    first_column = [row.split("|")[1] for row in table.splitlines() if row.startswith("| `")]
    listed = {name for cell in first_column for name in re.findall(r"`modbot ([a-z][a-z-]*)", cell)}
    assert commands == listed
    assert "`modbot --version`" in table


OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown``."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)}


def test_readme_says_the_counselor_answers_the_digest() -> None:
    """Where the README speaks of held items and the pause, it says the counselor answers the
    digest ("resolve 3 4", "resolve all", "resume"), not only that IT runs a command."""
    table = section("Commands")
    held = next(row for row in table.splitlines() if row.startswith("| `modbot held`"))
    resume = next(row for row in table.splitlines() if row.startswith("| `modbot resume`"))
    assert '"resolve 3 4", "resolve all"' in held and "answering the digest" in held
    assert '"resume"' in resume and "pause alert" in resume
    shadow = " ".join(section("Into production").split())
    assert '("resolve 3 4", "resolve all"; "resume"' in shadow and "no terminal" in shadow


def test_readme_links_operations_sections_that_exist() -> None:
    """The README links the shadow-mode switch and the counselor's answers in
    docs/operations.md, and those sections are there."""
    linked = set(re.findall(r"\(docs/operations\.md#([\w-]+)\)", README))
    assert {"the-shadow-week-and-the-switch-to-automatic-replies",
            "what-waits-for-the-counselor"} <= linked
    assert linked <= anchors(OPERATIONS), linked - anchors(OPERATIONS)


def test_operations_tells_how_an_answer_closes_items() -> None:
    """docs/operations.md says what an answer may say, which answers count, and what IT runs."""
    text = " ".join(OPERATIONS.split("## What waits for the counselor", 1)[1]
                    .split("\n## ", 1)[0].split())
    for said in ('"resolve 3 4"', '"resolve all"', '"resume"', "pause alert",
                 "`In-Reply-To`", "one-time reference", "`modbot resolve ID...`",
                 "`modbot resume`"):
        assert said in text, said
    switch = OPERATIONS.split("## The shadow week", 1)[1].split("\n## ", 1)[0]
    assert "answers the digest" in " ".join(switch.split())


@pytest.fixture(scope="module")
def kept_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`modbot demo --keep DIR` run once: its output and the configuration it kept."""
    keep = tmp_path_factory.mktemp("install") / "demo"
    mask = os.umask(0o022)  # the in-process command sets 077; later servers need it back
    try:
        result = runner.invoke(app, ["demo", "--keep", str(keep)])
    finally:
        os.umask(mask)
    assert result.exit_code == 0, result.output
    return result.output, keep / "modbot.toml"


def test_demo_ends_with_the_next_step(kept_demo: tuple[str, Path]) -> None:
    """The demo says where its data is kept and what to run next, and those commands work."""
    output, config = kept_demo
    after = output.split("== Next ==", 1)[1]
    assert f"modbot --config {config} status" in after
    assert "modbot init ./modbot.toml" in after and "check" in after
    status = runner.invoke(app, ["--config", str(config), "status"])
    assert status.exit_code == 0, status.output
    assert "waiting for the counselor" in status.output


def test_status_after_the_demo_tells_how_long_ago_it_polled(kept_demo: tuple[str, Path]) -> None:
    """The demo's clock ends at the present: `status` on its data puts the last poll, which
    went well, a couple of minutes in the past, never now or in the future."""
    status = runner.invoke(app, ["--config", str(kept_demo[1]), "status"])
    assert status.exit_code == 0, status.output
    (line,) = [line for line in status.output.splitlines() if "last poll:" in line]
    ago = re.search(r", (\d+) (s|min) ago, went well$", line)
    assert ago, line
    seconds = int(ago.group(1)) * (60 if ago.group(2) == "min" else 1)
    assert 110 <= seconds <= 600, line
