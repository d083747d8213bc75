"""The mail survey of `modbot check`: counts, reasons and suggested settings, from header shapes
of real campus mail (Exchange Online, Proofpoint and Mimecast in front of it, Gmail, Postfix)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from support.linkedin_mail import ATTACKER, delivered, forged, genuine, lookup, trusted_pass
from test_campus_stacks import (
    EXO_BROKEN,
    GATEWAYS,
    OTHER_TENANT,
    PROOFPOINT,
    PROOFPOINT_HOP,
    TENANT,
    exchange,
    gmail,
    google_pass,
)

from modbot import survey
from modbot.config import PolicySettings
from modbot.model import Verdict

FORGED_EXO = ("spf=fail (sender IP is 203.0.113.9) smtp.mailfrom=evil.example; dkim=pass "
              "(signature was verified) header.d=evil.example;dmarc=fail action=none "
              "header.from=linkedin.com;compauth=fail reason=000")
MIMECAST = ("Authentication-Results: relay.mimecast.com; dkim=pass header.d=linkedin.com; "
            "dmarc=pass header.from=linkedin.com\n")


def header(raw: bytes) -> bytes:
    return raw.partition(b"\n\n")[0] + b"\n\n"


def behind_proofpoint() -> bytes:
    return exchange(genuine(), verdict=EXO_BROKEN, client=PROOFPOINT_HOP, between=PROOFPOINT)


def behind_mimecast() -> bytes:
    return exchange(genuine(), verdict=EXO_BROKEN,
                    client="from au-smtp-1.mimecast.com (124.47.150.22)", between=MIMECAST)


def surveyed(raws: Sequence[bytes], policy: PolicySettings) -> tuple[str, str, list[str]]:
    """The report `check` prints for a folder holding ``raws``."""
    suggestion = survey.suggest(survey.stamps(header(raw)) for raw in raws)
    suggested = suggestion.policy(policy) if suggestion.adds_to(policy) else None
    findings = [survey.judge(raw, policy, lookup, suggested) for raw in raws]
    return survey.report(survey.Survey("INBOX", 40, tuple(f for f in findings if f),
                                       policy, suggestion))


# --- stamps --------------------------------------------------------------------------------------

def test_exchange_copy_names_its_tenant() -> None:
    """A copy that entered through Exchange Online gives the tenant it was stamped for."""
    assert survey.stamps(header(exchange(genuine()))) == survey.Stamps(tenant=TENANT)


def test_proofpoint_hosts_are_read_where_mail_entered_it() -> None:
    """Behind Proofpoint, the gateway is named with the host of its Received lines."""
    found = survey.stamps(header(behind_proofpoint()))
    assert (found.tenant, found.gateway, found.gateway_hosts) == (
        TENANT, "Proofpoint", ("mx0a-00000d07.pphosted.com",))


def test_mimecast_is_named_by_the_hop_that_handed_mail_to_exchange() -> None:
    """Mimecast writes no Received line of its own on the stored copy: the hand-over names it."""
    found = survey.stamps(header(behind_mimecast()))
    assert (found.gateway, found.gateway_hosts, found.authserv_ids) == ("Mimecast", (), ())


@pytest.mark.parametrize(("stored", "expected"), [
    ("gmail", ("mx.google.com",)),
    ("postfix", ("mx.counsel.example.edu",)),
])
def test_authserv_ids_are_those_written_where_the_gate_believes_them(
        stored: str, expected: tuple[str, ...]) -> None:
    """Google's verdict right under its ingress and the MX's above its own are suggested."""
    signed = genuine()
    raw = (gmail(signed, verdict=google_pass(signed)) if stored == "gmail"
           else delivered(signed, verdict=trusted_pass(signed)))
    assert survey.stamps(header(raw)).authserv_ids == expected


def test_a_sender_s_lines_below_the_ingress_suggest_nothing() -> None:
    """Authentication-Results and gateway Received lines the sender wrote below the MX's
    ingress are neither suggested authserv-ids nor the college's gateway."""
    sender_part = (
        b"Authentication-Results: mx.evil.example; dkim=pass header.d=linkedin.com\n"
        b"Received: from pps.filterd (m1.ppops.net [127.0.0.1])\n"
        b"\tby mx0a-00666666.pphosted.com with ESMTP id 1\n"
        b"Received: from evil.example (evil.example [203.0.113.9])\n"
        b"\tby mx0a-00666666.pphosted.com with ESMTP id 2\n")
    raw = delivered(sender_part + forged())
    assert survey.stamps(header(raw)) == survey.Stamps()


def test_vendor_shared_authserv_ids_are_never_suggested() -> None:
    """Proofpoint's ppops.net is every customer's, even where it sits at the top of a copy."""
    raw = b"Authentication-Results: ppops.net; dkim=pass header.d=linkedin.com\n" + \
        delivered(genuine())
    assert survey.stamps(header(raw)).authserv_ids == ()


def test_a_tenant_on_half_the_copies_or_fewer_is_not_suggested() -> None:
    """The tenant must be on most Exchange copies; every tenant seen is listed either way."""
    two = survey.suggest([survey.Stamps(tenant=TENANT), survey.Stamps(tenant=OTHER_TENANT)])
    assert two.microsoft365_tenant is None
    assert dict(two.tenants) == {TENANT: 1, OTHER_TENANT: 1}
    three = survey.suggest([survey.Stamps(tenant=TENANT)] * 2
                           + [survey.Stamps(tenant=OTHER_TENANT)])
    assert three.microsoft365_tenant == TENANT


def test_replies_are_not_notifications() -> None:
    """A reply to anything is a poll candidate, but the survey wants LinkedIn's mail only."""
    reply = b"From: Sam <sam@students.example.edu>\nIn-Reply-To: <1@linkedin.com>\n\n"
    assert not survey.claims_linkedin(reply)
    assert survey.claims_linkedin(header(exchange(genuine())))


# --- the report ----------------------------------------------------------------------------------

def test_unconfigured_exchange_mailbox_gets_the_tenant_and_gateway_suggested() -> None:
    """Exchange copies, some behind Proofpoint, with nothing configured: none is proven, and
    the tenant and gateway hosts are suggested, proving every genuine one and no forgery."""
    raws = [exchange(genuine())] * 3 + [behind_proofpoint()] * 2 + [
        exchange(forged(), verdict=FORGED_EXO)]
    level, headline, lines = surveyed(raws, PolicySettings())
    text = "\n".join(lines)
    assert level == "problem"
    assert "6 LinkedIn notifications in the last 30 days of INBOX (40 messages)" in headline
    assert "proves none of them" in headline
    assert "with them 5 of 6 would be proven" in text
    assert f'microsoft365_tenant = "{TENANT}"' in text
    assert 'gateway_hosts = ["mx0a-00000d07.pphosted.com"]' in text
    assert "Safe Links (6)" in text
    assert "6 copies failed DKIM with rewritten links" in text
    assert "confirm each value" in text


def test_configured_exchange_mailbox_counts_by_evidence() -> None:
    """With the tenant and gateway set, genuine copies are proven by Exchange's or the gateway's
    verdict, the forgery is counted as forged with the gate's reason, and nothing is suggested."""
    raws = [exchange(genuine())] * 3 + [behind_proofpoint()] * 2 + [
        exchange(forged(), verdict=FORGED_EXO)]
    policy = PolicySettings(microsoft365_tenant=TENANT, gateway_hosts=GATEWAYS)
    level, headline, lines = surveyed(raws, policy)
    assert level == "warning" and headline.endswith("5 proven, 1 not")
    assert "      5  proven" in lines
    assert "      3    by Exchange Online's verdict" in lines
    assert "      2    by the gateway's verdict" in lines
    assert "      1  judged forged: held, never answered" in lines
    assert any("dmarc=fail" in line for line in lines)
    assert not any("suggested" in line for line in lines)


def test_a_gateway_left_out_is_named_with_its_reason_and_its_hosts() -> None:
    """With only the tenant set, Proofpoint copies are held with the gate's reason, and its
    hosts are suggested beside the tenant already configured."""
    raws = [exchange(genuine()), behind_proofpoint()]
    level, _, lines = surveyed(raws, PolicySettings(microsoft365_tenant=TENANT))
    text = "\n".join(lines)
    assert level == "warning"
    assert "not proven: held for the counselor" in text and "Proofpoint changed" in text
    assert "with them 2 of 2 would be proven" in text
    assert "microsoft365_tenant" not in text


def test_mimecast_gets_advice_not_hosts() -> None:
    """Behind Mimecast no gateway_hosts can help: the report says what IT can change."""
    level, _, lines = surveyed([behind_mimecast()], PolicySettings(microsoft365_tenant=TENANT))
    text = "\n".join(lines)
    assert level == "problem"
    assert "Mimecast took this mail in" in text and "Enhanced Filtering for Connectors" in text
    assert "gateway_hosts" not in text


def test_gmail_proven_by_dkim_needs_no_suggestion() -> None:
    """Gmail keeps the body intact: DKIM verified here proves it, and all is well."""
    signed = genuine()
    level, headline, lines = surveyed([gmail(signed, verdict=google_pass(signed))],
                                      PolicySettings())
    assert (level, headline.endswith("all proven")) == ("ok", True)
    assert "      1    by DKIM verified here" in lines
    assert "  link wrappers met: none" in lines


def test_the_report_names_no_person_subject_or_address() -> None:
    """Counts, hosts, tenant ids and reasons only: never a name, a subject or an address."""
    raws = [exchange(genuine()), exchange(forged(), verdict=FORGED_EXO)]
    _, headline, lines = surveyed(raws, PolicySettings())
    text = "\n".join([headline, *lines])
    for private in ("Jordan", "Rivera", "connection request", "morgan", ATTACKER, "jordan-rivera"):
        assert private.lower() not in text.lower()


def test_an_empty_folder_is_a_note() -> None:
    """No notification in the window is worth knowing, not a problem."""
    level, headline, lines = survey.report(survey.Survey("INBOX", 0, (), PolicySettings()))
    assert (level, lines) == ("note", [])
    assert headline == ("mail survey: no LinkedIn notification in the last 30 days of INBOX "
                        "(0 messages)")


def test_unreadable_mail_is_a_finding_not_a_crash() -> None:
    """A message the gate cannot read is one more finding, never an exception."""
    finding = survey.judge(b"From: LinkedIn <invitations@linkedin.com>\n\n\xff", PolicySettings(),
                           lookup)
    assert finding is not None and finding.verdict is not Verdict.AUTHENTIC
