"""Genuine and forged LinkedIn mail as Microsoft 365, Proofpoint, Mimecast and Google store it.

The header shapes are those of the real samples in shared/campus-samples (001-009): Exchange's
verdict without authserv-id right above the tenant's Frontend Transport ingress with its tenant
stamps at the bottom, Proofpoint's renamed verdict between its two Received lines, Mimecast's
among the message's own fields, Google's right under its ingress. The LinkedIn part is signed
with the test's LinkedIn key; the bodies carry rewritten links, as the stored copies do.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
from support.linkedin_mail import (
    ATTACKER,
    JORDAN,
    LINKEDIN_KEY,
    gate_directory,
    invitation,
    lookup,
    reply_address,
    sign,
)
from support.linkedin_mail import forged as forged_invitation

from modbot.config import PolicySettings
from modbot.directory.index import Directory
from modbot.judging import Judgement, judge
from modbot.model import Mode, Verdict

TENANT = "5d3e2773-e07f-4432-a630-1a0f68a28a05"
OTHER_TENANT = "84df9e7f-e9f6-40af-b435-aaaaaaaaaaaa"
GATEWAYS = ("mx0a-00000d07.pphosted.com", "mx0b-00000d07.pphosted.com")
LINKEDIN_HOP = "from mailb-cd.linkedin.com (108.174.3.12)"
EXO_PASS = ("spf=pass (sender IP is 108.174.3.12) smtp.mailfrom=bounce.linkedin.com; "
            "dkim=pass (signature was verified) header.d=linkedin.com;dmarc=pass action=none "
            "header.from=linkedin.com;compauth=pass reason=100")
EXO_BROKEN = ("spf=fail (sender IP is 67.231.149.169) smtp.mailfrom=bounce.linkedin.com; "
              "dkim=fail (body hash did not verify) header.d=linkedin.com;dmarc=fail "
              "action=oreject header.from=linkedin.com;compauth=softpass reason=201")


@pytest.fixture(scope="module")
def directory() -> Directory:
    return gate_directory()


def safelinks(message: bytes) -> bytes:
    """The body as Safe Links stores it: every link wrapped, per recipient."""
    def wrap(url: str) -> str:
        return ("https://nam12.safelinks.protection.outlook.com/?url=" + quote(url, safe="")
                + "&amp;data=05%7C02%7Cmorgan.lee%40counsel.example.edu%7C1%7C"
                + TENANT + "%7C0%7C0%7C638790000000000000&amp;sdata=Zm9v&amp;reserved=0")
    head, _, body = message.partition(b"\n\n")
    text = body.decode()
    for url in sorted(set(_urls(text)), key=len, reverse=True):
        text = text.replace(url, wrap(url))
    return head + b"\n\n" + text.encode()


def _urls(text: str) -> list[str]:
    import re
    return re.findall(r"https://www\.linkedin\.com/[^\s\"<]+", text)


def exchange(signed: bytes, *, verdict: str = EXO_PASS, client: str = LINKEDIN_HOP,
             tenant: str = TENANT, between: str = "", extra_bottom: str = "",
             safe_links: bool = True) -> bytes:
    """``signed`` as Exchange Online stores it for ``tenant`` (samples 001-005)."""
    top = (
        "Received: from BN8PR04MB6123.namprd04.prod.outlook.com (2603:10b6:408::1) by\n"
        " MN2PR04MB6991.namprd04.prod.outlook.com with HTTPS; Mon, 3 Mar 2025 14:02:13 +0000\n"
        "Received: from BN1PEPF00004688.namprd05.prod.outlook.com (2603:10b6:408::2) by\n"
        " BN8PR04MB6123.namprd04.prod.outlook.com (2603:10b6:408::1) with Microsoft SMTP\n"
        " Server id 15.20.8606.22; Mon, 3 Mar 2025 14:02:12 +0000\n"
        f"Authentication-Results: {verdict}\n"
        "Received-SPF: Pass (protection.outlook.com: domain of bounce.linkedin.com designates\n"
        " 108.174.3.12 as permitted sender) receiver=protection.outlook.com;\n"
        " client-ip=108.174.3.12; helo=mailb-cd.linkedin.com; pr=C\n"
        f"Received: {client} by\n"
        " BN1PEPF00004688.mail.protection.outlook.com (10.167.243.133) with Microsoft\n"
        " SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id\n"
        " 15.20.8606.22 via Frontend Transport; Mon, 3 Mar 2025 14:02:11 +0000\n"
        + between
    ).encode()
    head, _, body = (safelinks(signed) if safe_links else signed).partition(b"\n\n")
    bottom = (
        "\nX-MS-Exchange-Organization-MessageDirectionality: Incoming\n"
        "X-MS-Exchange-Organization-AuthAs: Anonymous\n"
        f"X-EOPTenantAttributedMessage: {tenant}:0\n"
        f"X-MS-Exchange-CrossTenant-Id: {tenant}\n" + extra_bottom
    ).rstrip("\n").encode()
    return top + head + bottom + b"\n\n" + body


PROOFPOINT = (
    "Received: from pps.filterd (m0342460.ppops.net [127.0.0.1])\n"
    "\tby mx0a-00000d07.pphosted.com (8.18.1.2/8.18.1.2) with ESMTP id 531ENE0B015239\n"
    "\tfor <morgan.lee@counsel.example.edu>; Mon, 3 Mar 2025 06:02:10 -0800\n"
    "Authentication-Results-Original: ppops.net;\tspf=pass\n"
    " smtp.mailfrom=s-1@bounce.linkedin.com;\tdkim=pass\n"
    " header.d=linkedin.com header.s=d2048-202308-00;\tdmarc=pass header.from=linkedin.com\n"
    "Received: from mailb-cd.linkedin.com (mailb-cd.linkedin.com [108.174.3.12])\n"
    "\tby mx0a-00000d07.pphosted.com with ESMTP id 4aa1b2c3d4-1\n"
    "\tfor <morgan.lee@counsel.example.edu>; Mon, 3 Mar 2025 06:02:10 -0800\n"
)
PROOFPOINT_HOP = "from mx0a-00000d07.pphosted.com (67.231.149.169)"


def run(raw: bytes, directory: Directory, **policy: object) -> Judgement:
    settings = PolicySettings(mode=Mode.AUTO, **policy)  # type: ignore[arg-type]
    return judge(raw, settings, directory, lookup)


def genuine() -> bytes:
    return sign(invitation(), "linkedin.com", LINKEDIN_KEY[0])


# --- Exchange Online ------------------------------------------------------------------------------

@pytest.mark.parametrize("safe_links", [True, False])
def test_exchange_verdict_answers_a_safe_links_copy(directory: Directory,
                                                    safe_links: bool) -> None:
    """Exchange's own verdict for the pinned tenant proves its copy, links rewritten or not."""
    stored = exchange(genuine(), safe_links=safe_links)
    j = run(stored, directory, microsoft365_tenant=TENANT)
    assert j.authenticity.verdict is Verdict.AUTHENTIC, j.authenticity.reasons
    assert reply_address(j) == JORDAN
    assert j.classification.person.profile_url == \
        "https://www.linkedin.com/comm/in/jordan-rivera-42"


def test_exchange_copy_without_the_tenant_configured_is_held(directory: Directory) -> None:
    """Without microsoft365_tenant nothing vouches for Exchange's verdict, and DKIM is broken."""
    j = run(exchange(genuine()), directory)
    assert reply_address(j) is None


@pytest.mark.parametrize("variant", [
    "another tenant's stamps", "a second tenant stamp", "compauth alone", "dmarc of another",
    "verdict below the ingress", "renamed verdicts pass", "injected clause", "fake ingress",
])
def test_forged_exchange_verdicts_are_held(directory: Directory, variant: str) -> None:
    """Every Microsoft-style verdict the sender wrote, or one for another tenant, is held."""
    forged = forged_invitation()
    fail = ("spf=fail (sender IP is 203.0.113.9) smtp.mailfrom=evil.example; dkim=pass "
            "(signature was verified) header.d=evil.example;dmarc=fail action=none "
            "header.from=linkedin.com;compauth=fail reason=000")
    exo_line = f"Authentication-Results: {EXO_PASS}\n"
    cases = {
        "another tenant's stamps": exchange(genuine(), tenant=OTHER_TENANT),
        "a second tenant stamp": exchange(
            forged, verdict=fail, extra_bottom=f"X-MS-Exchange-CrossTenant-Id: {TENANT}\n"),
        "compauth alone": exchange(genuine(), verdict=(
            "spf=pass (sender IP is 108.174.3.12) smtp.mailfrom=bounce.linkedin.com; dkim=none "
            "(message not signed) header.d=none;dmarc=none action=none "
            "header.from=linkedin.com;compauth=pass reason=106")),
        "dmarc of another": exchange(genuine(), verdict=EXO_PASS.replace(
            "header.from=linkedin.com", "header.from=evil.example")),
        "verdict below the ingress": exchange(forged, verdict=fail, between=exo_line),
        "renamed verdicts pass": exchange(forged, verdict=fail, between=(
            f"Authentication-Results-Original: {EXO_PASS}\n"
            f"X-MS-Exchange-Authentication-Results: {EXO_PASS}\n")),
        "injected clause": exchange(forged, verdict=(
            'spf=pass (sender IP is 203.0.113.9) smtp.mailfrom="a;dkim=pass '
            'header.d=linkedin.com;dmarc=pass header.from=linkedin.com"@evil.example; '
            "dkim=none (message not signed) header.d=none;dmarc=none action=none "
            "header.from=linkedin.com;compauth=fail reason=001")),
        "fake ingress": exchange(forged, verdict=fail, between=(
            exo_line + "Received: from mailb-cd.linkedin.com (108.174.3.12) by\n"
            " X.mail.protection.outlook.com (10.1.1.1) with Microsoft SMTP Server id\n"
            " 15.20.1.1 via Frontend Transport; Mon, 3 Mar 2025 14:02:10 +0000\n")),
    }
    j = run(cases[variant], directory, microsoft365_tenant=TENANT)
    assert reply_address(j) is None
    assert j.authenticity.verdict is not Verdict.AUTHENTIC


@pytest.mark.parametrize("value", [
    "spf=pass smtp.mailfrom=a@b; dkim=pass header.d=linkedin.com; dkim=fail header.d=x",
    "spf=pass smtp.mailfrom=a@b; x-evil=pass header.d=linkedin.com",
    "spf=pass (unclosed smtp.mailfrom=a@b; dkim=pass header.d=linkedin.com",
    "spf=pass smtp.mailfrom==?us-ascii?q?x=3B_dkim=3Dpass?=@evil.example",
    "dkim=pass header.d=linkedin.com header.d=evil.example",
])
def test_exchange_reader_never_makes_a_result_from_a_token(value: str) -> None:
    """A header Exchange could not have written as read is no evidence at all."""
    from modbot.stacks import read_exchange

    assert read_exchange(value) is None


def test_exchange_reader_reads_the_real_forms() -> None:
    """The 2017-2021 form with bare tenant names and the current one are both read."""
    from modbot.stacks import read_exchange

    old = ("spf=pass (sender IP is 123.126.97.3) smtp.mailfrom=163.com; "
           "judytmdevorg.onmicrosoft.com; dkim=pass (signature was verified) "
           "header.d=163.com;judytmdevorg.onmicrosoft.com; dmarc=pass action=none "
           "header.from=163.com;compauth=pass reason=100")
    results = read_exchange(old)
    assert results is not None
    assert [(r.method, r.result) for r in results] == [
        ("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("compauth", "pass")]
    assert read_exchange(EXO_PASS) is not None


# --- a gateway in front of Exchange -------------------------------------------------------------

def test_proofpoint_verdict_answers_when_exchange_check_failed(directory: Directory) -> None:
    """Behind Proofpoint, Exchange's check fails and the gateway's verdict at the border decides."""
    stored = exchange(genuine(), verdict=EXO_BROKEN, client=PROOFPOINT_HOP, between=PROOFPOINT)
    j = run(stored, directory, microsoft365_tenant=TENANT, gateway_hosts=GATEWAYS)
    assert j.authenticity.verdict is Verdict.AUTHENTIC, j.authenticity.reasons
    assert reply_address(j) == JORDAN


def test_unconfigured_gateway_is_named_for_it(directory: Directory) -> None:
    """Without gateway_hosts, the copy is held with what IT should change, never answered."""
    stored = exchange(genuine(), verdict=EXO_BROKEN, client=PROOFPOINT_HOP, between=PROOFPOINT)
    j = run(stored, directory, microsoft365_tenant=TENANT)
    assert reply_address(j) is None and j.authenticity.verdict is Verdict.UNKNOWN
    assert any("Proofpoint" in r and "gateway_hosts" in r for r in j.authenticity.reasons)


def test_gateway_verdict_below_its_ingress_is_the_sender_s(directory: Directory) -> None:
    """A passing 'gateway' verdict the sender wrote below the gateway's ingress is held."""
    forged = forged_invitation()
    real = PROOFPOINT.replace("dkim=pass\n header.d=linkedin.com", "dkim=pass\n header.d=evil"
                              ".example").replace("dmarc=pass", "dmarc=fail")
    sender_part = ("Authentication-Results: ppops.net; dkim=pass header.d=linkedin.com "
                   "header.s=d2048-202308-00; dmarc=pass header.from=linkedin.com\n")
    stored = exchange(forged, verdict=EXO_BROKEN, client=PROOFPOINT_HOP,
                      between=real + sender_part)
    j = run(stored, directory, microsoft365_tenant=TENANT, gateway_hosts=GATEWAYS)
    assert reply_address(j) is None


def test_mimecast_copy_is_held_with_advice(directory: Directory) -> None:
    """Mimecast's verdict sits among the message's own fields: held, with what IT can do."""
    mimecast = ("Authentication-Results: relay.mimecast.com; dkim=pass header.d=linkedin.com; "
                "dmarc=pass header.from=linkedin.com\n")
    stored = exchange(genuine(), verdict=EXO_BROKEN,
                      client="from au-smtp-1.mimecast.com (124.47.150.22)", between=mimecast)
    j = run(stored, directory, microsoft365_tenant=TENANT,
            trusted_authserv_ids=("relay.mimecast.com",))
    assert reply_address(j) is None
    assert any("Enhanced Filtering" in r for r in j.authenticity.reasons)


# --- Google Workspace ---------------------------------------------------------------------------

def gmail(signed: bytes, *, verdict: str, under: str = "") -> bytes:
    """``signed`` as Gmail stores it (samples 008, 009): the verdict right under the ingress."""
    return (
        "Delivered-To: morgan.lee@counsel.example.edu\n"
        "Received: by 2002:adf:f6ca:0:b0:34d:2618:f679 with SMTP id y10csp473084wrp;\n"
        "        Mon, 3 Mar 2025 06:02:12 -0800 (PST)\n"
        "Return-Path: <s-1@bounce.linkedin.com>\n"
        "Received: from mailb-cd.linkedin.com (mailb-cd.linkedin.com. [108.174.3.12])\n"
        "        by mx.google.com with ESMTPS id xy25-20020a05620a5dd900b0078ee090d0f3si1;\n"
        "        Mon, 3 Mar 2025 06:02:11 -0800 (PST)\n"
        "Received-SPF: pass (google.com: domain of s-1@bounce.linkedin.com designates "
        "108.174.3.12 as permitted sender) client-ip=108.174.3.12;\n"
        f"Authentication-Results: mx.google.com;\n       {verdict}\n{under}"
    ).encode() + signed


def google_pass(signed: bytes) -> str:
    import re
    b = re.search(rb"\bb=([A-Za-z0-9+/]{8})", re.sub(rb"\s+", b"", signed.split(b"\n\n")[0]))
    assert b is not None
    return (f"dkim=pass header.i=@linkedin.com header.s=d2048-202308-00 "
            f"header.b={b.group(1).decode()};\n       spf=pass smtp.mailfrom=s-1@bounce."
            "linkedin.com;\n       dmarc=pass (p=REJECT sp=REJECT dis=NONE) "
            "header.from=linkedin.com")


def test_google_verdict_right_under_its_ingress_answers(directory: Directory) -> None:
    """Google's verdict, written right under its ingress, proves the message."""
    signed = genuine()
    j = run(gmail(signed, verdict=google_pass(signed)), directory,
            trusted_authserv_ids=("mx.google.com",))
    assert reply_address(j) == JORDAN


def test_forged_google_verdict_under_the_real_one_is_held(directory: Directory) -> None:
    """A sender's mx.google.com verdict under Google's own cannot outvote it."""
    forged = forged_invitation(invitation(headers=[f"Reply-To: {ATTACKER}"]))
    own = ("Authentication-Results: mx.google.com; dkim=pass header.i=@linkedin.com; "
           "dmarc=pass header.from=linkedin.com\n")
    real = ("dkim=pass header.i=@evil.example;\n       dmarc=fail (p=REJECT sp=REJECT "
            "dis=NONE) header.from=linkedin.com")
    j = run(gmail(forged, verdict=real, under=own), directory,
            trusted_authserv_ids=("mx.google.com",))
    assert reply_address(j) is None
    assert j.authenticity.verdict is Verdict.SPOOF


def test_google_verdict_further_down_is_not_google_s(directory: Directory) -> None:
    """Only the verdict right under Google's ingress counts: one lower down is the sender's."""
    forged = forged_invitation()
    stored = gmail(forged, verdict="dkim=none;\n       dmarc=fail header.from=linkedin.com")
    stored = stored.replace(b"Authentication-Results: mx.google.com;", b"X-Note: x\n"
                            b"Authentication-Results: mx.google.com;", 1)
    stored = stored.replace(b"DKIM-Signature:", b"Authentication-Results: mx.google.com; "
                            b"dkim=pass header.i=@linkedin.com\nDKIM-Signature:", 1)
    j = run(stored, directory, trusted_authserv_ids=("mx.google.com",))
    assert reply_address(j) is None


# --- Google's verdict carried in an ARC chain, verified here -------------------------------------

GOOGLE_KEY: tuple[bytes, bytes] | None = None  # made on first use


def google_key() -> tuple[bytes, bytes]:
    from support.linkedin_mail import new_key

    global GOOGLE_KEY
    if GOOGLE_KEY is None:
        GOOGLE_KEY = new_key()
    return GOOGLE_KEY


def arc_sealed(message: bytes, sealer: bytes = b"google.com") -> bytes:
    """``message`` with Google's verdict and the ARC set Gmail seals as it takes mail in."""
    import re

    import dkim

    b = re.search(rb"\bb=([A-Za-z0-9+/]{8})", re.sub(rb"\s+", b"", message.split(b"\n\n")[0]))
    assert b is not None
    verdict = (b"Authentication-Results: mx.google.com; dkim=pass header.i=@linkedin.com "
               b"header.s=d2048-202308-00 header.b=" + b.group(1) + b"; dmarc=pass "
               b"(p=REJECT sp=REJECT dis=NONE) header.from=linkedin.com\n")
    with_verdict = verdict + message
    arc = dkim.arc_sign(with_verdict, b"arc-20240605", sealer, google_key()[0], b"mx.google.com",
                        include_headers=[b"from", b"subject", b"to", b"date", b"message-id",
                                         b"mime-version", b"content-type", b"feedback-id"],
                        linesep=b"\n")
    return b"".join(arc) + with_verdict


def arc_lookup(linkedin: bool) -> Callable[[bytes], bytes | None]:
    """DNS with Google's ARC key, and LinkedIn's signing key only when ``linkedin``."""
    def answer(name: bytes) -> bytes | None:
        if name.startswith(b"arc-20240605._domainkey."):
            return google_key()[1]
        return lookup(name) if linkedin else None
    return answer


def judge_here(raw: bytes, directory: Directory, dns: Callable[[bytes], bytes | None]
               ) -> Judgement:
    return judge(raw, PolicySettings(mode=Mode.AUTO), directory, dns)


def test_google_arc_chain_proves_what_dkim_here_cannot(directory: Directory) -> None:
    """With LinkedIn's key gone from DNS, Google's sealed verdict still proves the message."""
    j = judge_here(arc_sealed(genuine()), directory, arc_lookup(linkedin=False))
    assert j.authenticity.verdict is Verdict.AUTHENTIC, j.authenticity.reasons
    assert j.authenticity.evidence == "arc"
    assert reply_address(j) == JORDAN


def test_arc_seal_replayed_on_another_body_proves_nothing(directory: Directory) -> None:
    """A genuine seal moved onto another body fails its message signature: not proven."""
    replayed = arc_sealed(genuine()).replace(b"Nursing student", b"Send me your password")
    j = judge_here(replayed, directory, arc_lookup(linkedin=False))
    assert j.authenticity.verdict is not Verdict.AUTHENTIC and reply_address(j) is None


def test_arc_sealed_by_anyone_but_google_proves_nothing(directory: Directory) -> None:
    """A valid chain sealed by another domain vouches for nothing LinkedIn sent."""
    j = judge_here(arc_sealed(genuine(), sealer=b"evil.example"), directory,
                   arc_lookup(linkedin=False))
    assert j.authenticity.verdict is not Verdict.AUTHENTIC and reply_address(j) is None


def test_gateway_line_below_another_border_is_the_sender_s(directory: Directory) -> None:
    """A 'gateway' verdict the sender wrote, under a border another server crossed, is held."""
    border = ("Received: from mail.evil.example (mail.evil.example [6.6.6.6])\n"
              "\tby mx1.college.example with ESMTPS id 4Z8q1T2kLmz9;\n"
              "\tMon, 3 Mar 2025 14:02:11 +0000 (UTC)\n")
    stored = border.encode() + PROOFPOINT.encode() + forged_invitation()
    j = run(stored, directory, gateway_hosts=GATEWAYS)
    assert reply_address(j) is None and j.authenticity.verdict is not Verdict.AUTHENTIC
