"""The counselor's own classification rules: loaded from [[classify.rules]], checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import configs

from modbot import config
from modbot.classify import classify
from modbot.errors import ConfigError
from modbot.model import Authenticity, Kind, Verdict
from modbot.parse import parse

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[1] / "data"
AUTHENTIC = Authenticity(True, Verdict.AUTHENTIC, ("given by the test",))
SPOOF = Authenticity(True, Verdict.SPOOF, ("given by the test",))

@pytest.fixture(autouse=True)
def _imap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "imap-secret")


def load(tmp_path: Path, extra: str) -> config.Account:
    """A file whose [[classify.rules]] are ``extra``, loaded."""
    return config.load(configs.write_config(tmp_path, extra=extra)).first


def kind_of(fixture: str, settings: config.Account, auth: Authenticity = AUTHENTIC) -> Kind:
    notification = parse((DATA / fixture).read_bytes())
    return classify(notification, auth, settings.classify.compiled_rules).kind


def test_no_rules_by_default(tmp_path: Path) -> None:
    """Without [[classify.rules]] nothing is added to the built-in table."""
    assert load(tmp_path, "").classify.compiled_rules == ()


def test_sender_rule_changes_a_fixtures_kind(tmp_path: Path) -> None:
    """A sender rule makes an unknown LinkedIn notice "other LinkedIn mail", and names itself."""
    settings = load(tmp_path, """
[[classify.rules]]
name = "account_notices"
kind = "other_linkedin"
sender = "notifications-noreply"
""")
    assert kind_of("unknown_linkedin_notice.eml", load(tmp_path, "")) is Kind.UNKNOWN_LINKEDIN
    assert kind_of("unknown_linkedin_notice.eml", settings) is Kind.OTHER_LINKEDIN
    notification = parse((DATA / "unknown_linkedin_notice.eml").read_bytes())
    decided = classify(notification, AUTHENTIC, settings.classify.compiled_rules)
    assert decided.rule == "account_notices"
    assert decided.reasons == ("account_notices: From local part notifications-noreply.",)


@pytest.mark.parametrize(("rule", "fixture", "before", "after"), [
    ('template = "^email_m2m_invite_single"', "invitation_current_jordan_rivera.eml",
     Kind.CONNECTION_INVITATION, Kind.UNKNOWN_LINKEDIN),
    ('header = "X-LinkedIn-Template"\nmatch = "connection_suggestion"',
     "pymk_connection_suggestion.eml", Kind.OTHER_LINKEDIN, Kind.CONNECTION_INVITATION),
    ('text = "account summary"', "unknown_linkedin_notice.eml",
     Kind.UNKNOWN_LINKEDIN, Kind.OTHER_LINKEDIN),
])
def test_each_test_kind_runs_before_the_builtin_table(
        tmp_path: Path, rule: str, fixture: str, before: Kind, after: Kind) -> None:
    """template, header+match and text rules decide before the built-in rules do."""
    settings = load(tmp_path, f"""
[[classify.rules]]
name = "counselor_rule"
kind = "{after.value}"
{rule}
""")
    assert kind_of(fixture, load(tmp_path, "")) is before
    notification = parse((DATA / fixture).read_bytes())
    decided = classify(notification, AUTHENTIC, settings.classify.compiled_rules)
    assert (decided.kind, decided.rule) == (after, "counselor_rule")


def test_rules_run_in_file_order(tmp_path: Path) -> None:
    """Of two rules that both match, the one written first decides."""
    settings = load(tmp_path, """
[[classify.rules]]
name = "first"
kind = "other_linkedin"
text = "account summary"

[[classify.rules]]
name = "second"
kind = "connection_invitation"
sender = "notifications-noreply"
""")
    assert [r.name for r in settings.classify.compiled_rules] == ["first", "second"]
    assert kind_of("unknown_linkedin_notice.eml", settings) is Kind.OTHER_LINKEDIN


def test_a_rule_cannot_outrank_the_spoof_guard(tmp_path: Path) -> None:
    """A spoof stays a spoof whatever the counselor's rules say."""
    settings = load(tmp_path, """
[[classify.rules]]
name = "invitations_v3"
kind = "connection_invitation"
text = "."
""")
    assert kind_of("spoof_copied_headers_no_dkim.eml", settings, SPOOF) is Kind.SPOOFED_LINKEDIN


def test_bad_rules_are_reported_with_the_files_other_problems(tmp_path: Path) -> None:
    """A bad kind, a bad regex, a second test, a number and a reused name join other problems."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, """
[schedule]
poll_seconds = 1

[[classify.rules]]
name = "bad_kind"
kind = "friend_request"
template = "invite"

[[classify.rules]]
name = "bad_regex"
kind = "connection_invitation"
text = "(unclosed"

[[classify.rules]]
name = "two_tests"
kind = "other_linkedin"
sender = "jobs"
text = "job alert"

[[classify.rules]]
name = "not_text"
kind = "other_linkedin"
template = 7

[[classify.rules]]
name = "Bad Name"
kind = "other_linkedin"
sender = "x"
colour = "blue"
""")
    message = str(caught.value)
    assert "6 problems" in message
    assert "schedule.poll_seconds" in message
    assert "classify.rules[1]: rule bad_kind: unknown kind 'friend_request'" in message
    assert "classify.rules[2]: rule bad_regex: invalid regular expression" in message
    assert "classify.rules[3]: rule two_tests: give exactly one of" in message
    assert "classify.rules[4].template = 7: must be a string, in double quotes" in message
    assert "classify.rules[5]: unknown rule keys: colour" in message


@pytest.mark.parametrize(("names", "problem"), [
    (("mine", "mine"), "rule name 'mine' is used twice"),
    (("phrase_invitation",), "rule name 'phrase_invitation' is taken by a built-in rule"),
])
def test_rule_names_are_unique(tmp_path: Path, names: tuple[str, ...], problem: str) -> None:
    """Reasons name the rule that decided, so two rules never share a name."""
    tables = "".join(f'\n[[classify.rules]]\nname = "{n}"\nkind = "other_linkedin"\n'
                     f'sender = "jobs"\n' for n in names)
    with pytest.raises(ConfigError, match=f"classify.rules: {problem}"):
        load(tmp_path, tables)


def test_example_rule_loads_and_classifies(tmp_path: Path) -> None:
    """The example configuration's rule, uncommented, loads and decides what it promises."""
    text = (ROOT / "config" / "modbot.example.toml").read_text(encoding="utf-8")
    section = text.split("\n[classify]\n", 1)[1].split("\n[", 1)[0]
    example = section[section.index("# [[classify.rules]]"):]
    tables = "\n".join(line.removeprefix("# ") for line in example.splitlines()
                       if line.startswith("# "))
    settings = load(tmp_path, tables)
    (rule,) = settings.classify.compiled_rules
    raw = (DATA / "pymk_connection_suggestion.eml").read_bytes().replace(
        b"connection_suggestion_email", b"email_m2m_invite_v3_single")
    decided = classify(parse(raw), AUTHENTIC, settings.classify.compiled_rules)
    assert (decided.kind, decided.rule) == (Kind.CONNECTION_INVITATION, rule.name)
