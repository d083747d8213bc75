"""`modbot init` asks which system receives the college's mail and writes whose verdict to
believe: the tenant, the gateway's hosts or the authserv-ids, each answer checked as typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.linkedin_mail import JORDAN, gate_directory, genuine, reply_address
from test_campus_stacks import EXO_BROKEN, PROOFPOINT, PROOFPOINT_HOP, TENANT, exchange
from typer.testing import CliRunner

from modbot import config, newconfig
from modbot.cli import app
from modbot.judging import judge
from modbot.model import Mode

runner = CliRunner()
BASE = {"name": "Career Services Counselor", "email": "counselor@counsel.example.edu",
        "contact": "555-0100", "imap-host": "imap.counsel.example.edu", "directory": ""}
PROOFPOINT_HOSTS = "mx0a-00000d07.pphosted.com, mx0b-00000d07.pphosted.com"


@pytest.fixture(autouse=True)
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODBOT_IMAP_PASSWORD", "imap-secret")
    monkeypatch.setenv("MODBOT_SMTP_PASSWORD", "smtp-secret")


def init(tmp_path: Path, **answers: str) -> tuple[int, str, Path]:
    target = tmp_path / "modbot.toml"
    values = {**BASE, "database": str(tmp_path / "modbot.db"), **answers}
    options = [part for key, value in values.items() for part in (f"--{key}", value)]
    result = runner.invoke(app, ["init", str(target), "--non-interactive", *options])
    return result.exit_code, result.output, target


@pytest.mark.parametrize(("answers", "tenant", "gateways", "ids"), [
    ({"mail-system": "microsoft365", "tenant": TENANT}, TENANT, (), ()),
    ({"mail-system": "proofpoint", "tenant": TENANT, "gateway-hosts": PROOFPOINT_HOSTS},
     TENANT, ("mx0a-00000d07.pphosted.com", "mx0b-00000d07.pphosted.com"), ()),
    ({"mail-system": "google"}, None, (), ("mx.google.com",)),
    ({"mail-system": "server", "authserv-ids": "mx.counsel.example.edu"},
     None, (), ("mx.counsel.example.edu",)),
    ({"mail-system": "server"}, None, (), ()),
    ({"mail-system": "unknown"}, None, (), ()),
])
def test_each_mail_system_writes_its_keys(tmp_path: Path, answers: dict[str, str],
                                          tenant: str | None, gateways: tuple[str, ...],
                                          ids: tuple[str, ...]) -> None:
    """Each mail system writes exactly the keys docs/deployment.md names for it, loadable."""
    code, output, target = init(tmp_path, **answers)
    assert code == 0, output
    policy = config.load(target).first.policy
    assert (policy.microsoft365_tenant, policy.gateway_hosts, policy.trusted_authserv_ids) == (
        tenant, gateways, ids)
    assert "docs/deployment.md" in target.read_text(encoding="utf-8")


def test_mimecast_writes_the_tenant_and_says_what_it_cannot_do(tmp_path: Path) -> None:
    """Behind Mimecast the tenant is written, and init warns that notifications stay held
    until IT changes Mimecast or Exchange."""
    code, output, target = init(tmp_path, **{"mail-system": "mimecast", "tenant": TENANT})
    assert code == 0, output
    assert "note: Mimecast writes its verdict where its position proves nothing" in output
    assert config.load(target).first.policy.gateway_hosts == ()
    assert "trusts its ARC seal" in target.read_text(encoding="utf-8")


def test_the_written_settings_prove_a_proofpoint_copy(tmp_path: Path) -> None:
    """What init writes for Proofpoint in front of Microsoft 365 is what the gate needs: a
    genuine invitation stored behind both is answered at the directory address."""
    _, _, target = init(tmp_path, **{"mail-system": "proofpoint", "tenant": TENANT,
                                     "gateway-hosts": PROOFPOINT_HOSTS})
    policy = config.load(target).first.policy.model_copy(update={"mode": Mode.AUTO})
    stored = exchange(genuine(), verdict=EXO_BROKEN, client=PROOFPOINT_HOP, between=PROOFPOINT)
    j = judge(stored, policy, gate_directory(), None)
    assert reply_address(j) == JORDAN


def test_bad_answers_are_listed_and_nothing_is_written(tmp_path: Path) -> None:
    """A domain for the tenant, a vendor's shared id and an option that does not apply to the
    mail system are each named, and no file is left."""
    code, output, target = init(tmp_path, **{"mail-system": "proofpoint",
                                             "tenant": "counsel.onmicrosoft.com",
                                             "gateway-hosts": "ppops.net",
                                             "authserv-ids": "mx.counsel.example.edu"})
    assert code == 2
    assert "--tenant: 'counsel.onmicrosoft.com' is a domain: the tenant id looks like" in output
    assert "--gateway-hosts: 'ppops.net' is written by every customer" in output
    assert "--authserv-ids does not apply to --mail-system proofpoint" in output
    assert not target.exists()


def test_microsoft365_needs_its_tenant(tmp_path: Path) -> None:
    """Without --tenant, Microsoft 365 cannot be trusted: the option is named as missing."""
    code, output, target = init(tmp_path, **{"mail-system": "microsoft365"})
    assert code == 2 and "--tenant" in output
    assert not target.exists()


def test_interactive_answers_are_checked_as_typed(tmp_path: Path) -> None:
    """A mail system not on the list, a tenant that is no GUID and a shared host are asked
    again at once; a host that is not Proofpoint's is a warning; the file is written at the
    end with the corrected answers."""
    target = tmp_path / "modbot.toml"
    answers = [
        "Career Services Counselor", "counselor@counsel.example.edu", "555-0100",
        "imap.counsel.example.edu", "", "", "", "tls", "", str(tmp_path / "modbot.db"),
        "exchange", "proofpoint",  # not a choice: asked again
        "not-a-guid", TENANT,
        "ppops.net", "mx0a-00000d07.pphosted.com, mail.counsel.example.edu",
    ]
    result = runner.invoke(app, ["init", str(target)], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "Please answer one of: microsoft365, google, server" in result.output
    assert "'not-a-guid' is not a tenant id" in result.output
    assert "'ppops.net' is written by every customer" in result.output
    assert "mail.counsel.example.edu is not a Proofpoint host" in result.output
    policy = config.load(target).first.policy
    assert policy.microsoft365_tenant == TENANT
    assert policy.gateway_hosts == ("mx0a-00000d07.pphosted.com", "mail.counsel.example.edu")


@pytest.mark.parametrize(("value", "problem"), [
    ("5d3e2773-e07f-4432-a630-1a0f68a28a05", None),
    ("5D3E2773-E07F-4432-A630-1A0F68A28A05", None),
    ("5d3e2773e07f4432a6301a0f68a28a05", "is not a tenant id"),
    ("{5d3e2773-e07f-4432-a630-1a0f68a28a05}", "is not a tenant id"),
    ("counsel.example.edu", "is a domain"),
])
def test_tenant_ids_are_guids(value: str, problem: str | None) -> None:
    """The tenant id is the GUID Entra shows, in either case; anything else is refused."""
    verdict = newconfig.check_answer("tenant", value, {"mail_system": "microsoft365"})
    assert (verdict.problem is None) if problem is None else (problem in (verdict.problem or ""))


def test_init_help_names_the_mail_systems() -> None:
    """`init --help` names every mail system and the page that explains them."""
    text = runner.invoke(app, ["init", "--help"]).output
    for system in newconfig.MAIL_SYSTEMS:
        assert system in text
    assert "docs/deployment.md" in text
