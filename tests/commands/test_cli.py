"""The command line as a counselor uses it, without mail servers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import configs
from support.rows import message_row
from typer.testing import CliRunner

from modbot.cli import app
from modbot.model import PolicyRule
from modbot.store import Store

CORPUS = Path(__file__).parents[1] / "data" / "corpus"
runner = CliRunner()
ACCOUNT = "counselor@127.0.0.1"  # the account of config_file

@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    return configs.write_config(tmp_path,
                                database={"url": configs.sqlite_url(tmp_path / "modbot.db")})


def test_classify_json_on_the_real_corpus() -> None:
    """`classify --json` prints the documented fields per line and is right on the corpus."""
    files = sorted(str(p) for p in CORPUS.glob("*.eml"))
    result = runner.invoke(app, ["classify", "--json", *files])
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in map(json.loads, result.output.splitlines())}
    for row in rows.values():
        assert {"file", "kind", "authentic", "person", "decision", "reasons"} <= row.keys()
        assert set(row["person"]) >= {"name", "profile_url"}
    invitation = rows["invitation_m2m_2016.eml"]
    assert invitation["kind"] == "connection_invitation"
    assert invitation["person"]["name"] == "Steven Footle"
    assert rows["spoof_linkedin_welcome_2013.eml"]["kind"] == "spoofed_linkedin"
    assert rows["spoof_linkedin_welcome_2013.eml"]["authentic"] is False
    assert rows["spoof_linkedin_welcome_2013.eml"]["decision"] == "hold"
    assert rows["not_linkedin_spam_2011.eml"]["kind"] == "not_linkedin"
    assert rows["not_linkedin_spam_2011.eml"]["decision"] == "ignore"


def test_classify_missing_file_is_one_line() -> None:
    """A missing file is reported in one line and the exit code says so."""
    result = runner.invoke(app, ["classify", "/nonexistent.eml"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_texts_prints_the_three_texts(config_file: Path) -> None:
    """`texts` prints the welcome, the advice for contacting and the reply, with the contact."""
    result = runner.invoke(app, ["--config", str(config_file), "texts"])
    assert result.exit_code == 0, result.output
    lowered = result.output.lower()
    assert "welcome" in lowered
    assert "advice for contacting" in lowered
    assert result.output.count("https://counsel.example.edu/secure") >= 3


def test_bad_config_is_reported_with_exit_code_2(tmp_path: Path) -> None:
    """A broken configuration gives every problem and exit code 2."""
    path = tmp_path / "bad.toml"
    path.write_text("[counselor]\nname = 'x'\n[bogus]\n", encoding="utf-8")
    result = runner.invoke(app, ["--config", str(path), "texts"])
    assert result.exit_code == 2
    assert "bogus: unknown key" in result.output


def test_digest_preview_writes_html(config_file: Path, tmp_path: Path) -> None:
    """`digest --preview FILE` writes the digest's HTML and sends nothing."""
    out = tmp_path / "digest.html"
    result = runner.invoke(app, ["--config", str(config_file), "digest", "--preview", str(out)])
    assert result.exit_code == 0, result.output
    assert "<html" in out.read_text(encoding="utf-8").lower()


def test_held_and_resolve(config_file: Path, tmp_path: Path) -> None:
    """Held items are listed with numbers, and `resolve` closes them."""
    store = Store.open(f"sqlite:///{tmp_path / 'modbot.db'}")
    now = datetime(2026, 11, 23, tzinfo=UTC)
    store.record(message_row("k", ACCOUNT, seen_at=now, classify_rule="r",
                             person_name="Priya Natarajan", invitation_id=None,
                             address_source=None, action="hold", policy_rule=PolicyRule.NO_ADDRESS,
                             reasons=["the person is not in the directory"]), None)
    listed = runner.invoke(app, ["--config", str(config_file), "held"])
    assert "Priya Natarajan" in listed.output
    done = runner.invoke(app, ["--config", str(config_file), "resolve", "--all"])
    assert "1 item resolved" in done.output
    assert store.open_items(ACCOUNT) == []


def test_resume_ends_a_pause(config_file: Path, tmp_path: Path) -> None:
    """`resume` ends the pause a reached cap started, and says when there was none."""
    store = Store.open(f"sqlite:///{tmp_path / 'modbot.db'}")
    store.start_pause("counselor@127.0.0.1", "the hourly cap was reached",
                      datetime.now(UTC), "<pause@counsel.example.edu>")
    store.close()
    resumed = runner.invoke(app, ["--config", str(config_file), "resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "replies resumed" in resumed.output
    again = runner.invoke(app, ["--config", str(config_file), "resume"])
    assert "replies were not paused" in again.output


def test_check_reports_a_configured_forbidden_phrase(config_file: Path, tmp_path: Path) -> None:
    """`check` lints the counselor's templates against their own list of forbidden phrases."""
    import shutil

    from modbot.render import default_templates_dir

    templates = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), templates)
    reply = templates / "connection_invitation.j2"
    reply.write_text(reply.read_text(encoding="utf-8") + "\nSee you at the career fair.\n",
                     encoding="utf-8")
    text = config_file.read_text(encoding="utf-8")
    config_file.write_text(text + f'\n[templates]\ndir = "{templates}"\n'
                           'forbidden_phrases = ["career fair"]\n', encoding="utf-8")
    result = runner.invoke(app, ["--config", str(config_file), "check"])
    assert result.exit_code == 1
    assert "career fair" in result.output


def write_two_accounts(tmp_path: Path) -> Path:
    """A file of Ada's and Ben's inboxes, each with its own contact, sharing tmp_path/m.db."""
    return configs.write_config(tmp_path, configs.accounts_text(
        configs.inbox("Ada Counselor", "ada@counsel.example.edu", "ada",
                      contact="https://counsel.example.edu/ada"),
        configs.inbox("Ben Counselor", "ben@counsel.example.edu", "ben",
                      contact="https://counsel.example.edu/ben"),
        database={"url": configs.sqlite_url(tmp_path / "m.db")}))


@pytest.mark.parametrize(("account", "contact"), [
    ("ben", "counsel.example.edu/ben"),
    ("ada@imap.counsel.example.edu", "counsel.example.edu/ada"),
])
def test_account_option_selects_one_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          account: str, contact: str) -> None:
    """--account makes a command act on the named inbox of a several-inbox configuration."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    path = write_two_accounts(tmp_path)
    result = runner.invoke(app, ["--config", str(path), "--account", account, "texts"])
    assert result.exit_code == 0, result.output
    assert contact in result.output


def test_unknown_account_is_named_with_the_known_ones(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An --account that is not in the configuration is refused, listing the accounts there are."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    path = write_two_accounts(tmp_path)
    result = runner.invoke(app, ["--config", str(path), "--account", "carl", "texts"])
    assert result.exit_code == 2
    assert "ada@imap.counsel.example.edu, ben@imap.counsel.example.edu" in result.output


@pytest.fixture
def two_accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Store]:
    """A two-account configuration whose database holds one held item of each account."""
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "x")
    path = write_two_accounts(tmp_path)
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    now = datetime(2026, 11, 23, tzinfo=UTC)
    for user, name in (("ada", "Priya Natarajan"), ("ben", "Jordan Rivera")):
        store.record(message_row(f"k-{user}", f"{user}@imap.counsel.example.edu", seen_at=now,
                                 person_name=name, invitation_id=None, address_source=None,
                                 action="hold", policy_rule=PolicyRule.NO_ADDRESS,
                                 reasons=["the person is not in the directory"]), None)
    return path, store


def test_held_lists_only_the_chosen_account(two_accounts: tuple[Path, Store]) -> None:
    """`--account ben held` lists Ben's held items and never Ada's."""
    path, _ = two_accounts
    listed = runner.invoke(app, ["--config", str(path), "--account", "ben", "held"])
    assert listed.exit_code == 0, listed.output
    assert "Jordan Rivera" in listed.output and "Priya Natarajan" not in listed.output


def test_resolve_all_closes_only_the_chosen_account(two_accounts: tuple[Path, Store]) -> None:
    """`--account ben resolve --all` closes Ben's held items and leaves Ada's open."""
    path, store = two_accounts
    done = runner.invoke(app, ["--config", str(path), "--account", "ben", "resolve", "--all"])
    assert "1 item resolved" in done.output
    assert store.open_items("ben@imap.counsel.example.edu") == []
    assert [i.person_name for i in store.open_items("ada@imap.counsel.example.edu")] == \
        ["Priya Natarajan"]


def test_resolve_by_number_refuses_another_accounts_item(two_accounts: tuple[Path, Store]
                                                         ) -> None:
    """The number of Ada's held item is "no such held item" for Ben, and stays open."""
    path, store = two_accounts
    (ada,) = store.open_items("ada@imap.counsel.example.edu")
    done = runner.invoke(app, ["--config", str(path), "--account", "ben", "resolve",
                               str(ada.id)])
    assert done.exit_code == 1
    assert f"Number {ada.id} is not a held item" in done.output
    assert [i.id for i in store.open_items("ada@imap.counsel.example.edu")] == [ada.id]


def test_help_imports_no_heavy_library() -> None:
    """`modbot --help` answers without importing asyncio, pydantic, rich or the stages."""
    code = ("import sys\n"
            "sys.argv = ['modbot', '--help']\n"
            "from modbot.cli import main\n"
            "try:\n    main()\n"
            "except SystemExit:\n    pass\n"
            "heavy = ('asyncio', 'pydantic', 'rich', 'sqlalchemy', 'jinja2', 'modbot.config',\n"
            "         'modbot.poll', 'modbot.store')\n"
            "print(*[name for name in heavy if name in sys.modules], file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert "run-once" in done.stdout
    assert done.stderr.strip() == ""


def test_help_keeps_brackets_as_text() -> None:
    """Help texts are plain: a TOML table name in brackets is printed, not read as markup."""
    result = runner.invoke(app, ["health", "--help"])
    assert result.exit_code == 0
    assert "[schedule] poll_seconds" in result.output
