"""The table of kinds describes every kind completely, and the stages read it rather than lists
of their own."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from modbot import classify, digest, kinds, person, policy, render, words
from modbot.model import Action, ClassifierRule, Kind, PolicyRule

TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates"


def test_the_table_is_complete() -> None:
    """The shipped table has no problem: one row per kind, each consistent with itself."""
    assert kinds.problems() == []
    assert set(kinds.BY_KIND) == set(Kind)


def test_a_kind_without_a_row_is_named() -> None:
    """Leaving a kind out of the table is reported by name, not found later as a silent gap."""
    rows = tuple(row for row in kinds.ROWS if row.kind is not Kind.LINKEDIN_MESSAGE)
    assert kinds.problems(rows) == [
        "Kind.LINKEDIN_MESSAGE has no row in modbot/kinds.py ROWS"]


@pytest.mark.parametrize(("change", "problem"), [
    ({"reply_template": None}, "needs a reply template"),
    ({"series": "nowhere"}, "chart series 'nowhere' is not in SERIES"),
    ({"phrase": ""}, "needs a label and a phrase"),
    ({"about_person": False}, "must be about one"),
])
def test_a_half_described_kind_is_named(change: dict[str, object], problem: str) -> None:
    """A row missing its template, its chart series or its words is reported with its kind."""
    broken = tuple(dataclasses.replace(row, **change) if row.kind is Kind.CONNECTION_INVITATION
                   else row for row in kinds.ROWS)
    found = kinds.problems(broken)
    assert len(found) == 1 and found[0].startswith("Kind.CONNECTION_INVITATION")
    assert problem in found[0]


@pytest.mark.parametrize("row", kinds.ROWS, ids=lambda row: row.kind.value)
def test_each_reply_template_is_shipped(row: kinds.KindRow) -> None:
    """A kind that is answered has its template among the shipped ones, and the renderer loads
    and lints it."""
    if row.reply_template is None:
        assert row.kind not in kinds.REPLY_KINDS
        return
    assert (TEMPLATES / f"{row.reply_template}.j2").is_file()
    assert row.reply_template in render.REPLY_TEMPLATES
    assert row.reply_template in render.TEMPLATE_NAMES


def test_the_stages_read_the_table() -> None:
    """The policy's defaults, the person finder's kinds, the words and the chart come from it."""
    assert {k: policy.DEFAULT_ACTIONS[k] for k in Kind} == {r.kind: r.action for r in kinds.ROWS}
    assert {r.kind for r in kinds.ROWS if r.about_person} == person.PERSON_KINDS
    assert {k: words.kind_label(k.value) for k in Kind} == {r.kind: r.label for r in kinds.ROWS}
    charted = {kind for _key, group in digest.SERIES for kind in group}
    assert charted == {r.kind.value for r in kinds.ROWS if r.series is not None}
    assert kinds.DEFAULT_ACTIONS[Kind.NOT_LINKEDIN] is Action.IGNORE


def test_the_digest_template_takes_the_series_from_the_table() -> None:
    """The shipped digest template names no chart series of its own: label and colour come
    from the table, so a new series cannot be missing from the chart."""
    source = (TEMPLATES / "digest.j2").read_text(encoding="utf-8")
    assert "set series_names" not in source
    for series in kinds.SERIES:
        assert f'"{series.label}"' not in source


def test_every_builtin_classifier_rule_has_a_name_constant() -> None:
    """The classifier's rules are named by ``ClassifierRule``, so no other module spells them."""
    names = {rule.name for rule in (*classify.GUARDS, *classify.RULES)}
    assert names == set(ClassifierRule) - {ClassifierRule.ERROR}
    assert all(isinstance(rule.name, ClassifierRule) for rule in classify.RULES)


def test_every_policy_rule_has_a_name_constant() -> None:
    """The policy's table uses ``PolicyRule`` names, and no module outside it spells one."""
    assert all(isinstance(name, PolicyRule) for name, _test in policy.RULES)
    package = Path(policy.__file__).parent
    names = "|".join(re.escape(rule.value) for rule in PolicyRule)
    # a rule compared, a rule held with or decided by, spelled as a string
    spelled = re.compile(rf'(?:rule\s*(?:==|!=)\s*|held\(|Decision\([^,()]+,\s*)"(?:{names})"')
    offenders = [f"{path.name}: {match.group()}" for path in sorted(package.glob("*.py"))
                 if path.name != "model.py"
                 for match in spelled.finditer(path.read_text(encoding="utf-8"))]
    assert not offenders, offenders
