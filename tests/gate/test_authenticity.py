"""Tests for modbot.authenticity: trusted results, DKIM verified here, and evidence of spoofing."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.linkedin_mail import new_key

from modbot.authenticity import NOT_LINKEDIN, check
from modbot.model import Authenticity, Verdict
from modbot.parse import parse

DATA = Path(__file__).parents[1] / "data"
EXPECTED = tomllib.loads((DATA / "expected.toml").read_text(encoding="utf-8"))
FIXTURES = sorted(EXPECTED)
TRUSTED = ("mx.counsel.example.edu",)
SELECTOR = b"fixture"

Lookup = Callable[[bytes], bytes | None]


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    """A fresh RSA key: the PEM private key and its DNS TXT record."""
    return new_key()


def sign(data: bytes, domain: str, pem: bytes, *, length: bool = False) -> bytes:
    headers = [b"from", b"subject", b"to", b"date", b"x-linkedin-template"]
    return dkim.sign(data, SELECTOR, domain.encode(), pem, include_headers=headers,
                     length=length, linesep=b"\n") + data


def lookup_for(txt: bytes, *domains: str) -> Lookup:
    names = {SELECTOR + b"._domainkey." + d.encode() + b"." for d in domains}
    return lambda name: txt if name in names else None


def judge(data: bytes, trusted: tuple[str, ...] = TRUSTED,
          lookup: Lookup | None = None) -> Authenticity:
    """check() of raw message bytes."""
    return check(parse(data), trusted_authserv_ids=trusted, dkim_lookup=lookup)


def fixture_check(name: str, key: tuple[bytes, bytes]) -> Authenticity:
    """check() of a fixture as the expectations describe it, signed first where they say so."""
    data, lookup = raw(name), None
    domain = EXPECTED[name].get("dkim_sign")
    if domain:
        data, lookup = sign(data, domain, key[0]), lookup_for(key[1], domain)
    return judge(data, lookup=lookup)


# A LinkedIn signature as a trusted server would report it (it is not verified here).
SIGNATURE = ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=linkedin.com; s=d2048; "
             "bh=Zml4dHVyZQ==; h=From:Subject:To:Date:X-LinkedIn-Template; b=Fx1aQm2ZZml4dHVyZQ==")


def message(*headers: str, from_: str = "LinkedIn <invitations@linkedin.com>",
            body: str = "Hello.\n", signature: str = SIGNATURE) -> bytes:
    lines = [*headers, *([signature] if signature else []), f"From: {from_}",
             "To: Morgan Lee <morgan.lee@counsel.example.edu>",
             "Subject: Notice", "Content-Type: text/plain; charset=utf-8"]
    return ("\n".join(lines) + "\n\n" + body).encode()


# --- the fixture corpus ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_verdict(name: str, key: tuple[bytes, bytes]) -> None:
    """Each fixture gets the verdict its expectation names."""
    assert fixture_check(name, key).verdict is Verdict(EXPECTED[name]["verdict"])


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_claim_follows_kind(name: str, key: tuple[bytes, bytes]) -> None:
    """Only the fixtures that are not LinkedIn's at all fail to look like LinkedIn."""
    claimed = fixture_check(name, key).looks_like_linkedin
    assert claimed is (EXPECTED[name]["kind"] != "not_linkedin")


@pytest.mark.parametrize("name", FIXTURES)
def test_reasons_are_short_and_never_quote_the_body(name: str, key: tuple[bytes, bytes]) -> None:
    """Every reason is one short sentence and contains no line of the message body."""
    n = parse(raw(name))
    lines = (n.text + "\n" + n.html).splitlines()
    body = [line.strip() for line in lines if len(line.strip()) > 15]
    for reason in fixture_check(name, key).reasons:
        assert 0 < len(reason) <= 240 and "\n" not in reason
        assert not any(line in reason for line in body)


def test_mail_that_does_not_claim_linkedin_is_not_judged() -> None:
    """Unrelated spam gets the fixed 'does not claim to be LinkedIn mail' finding."""
    n = parse(raw("corpus/not_linkedin_spam_2011.eml"))
    assert check(n, trusted_authserv_ids=TRUSTED) == NOT_LINKEDIN
    assert NOT_LINKEDIN.authentic is None


def test_real_spoof_is_caught_by_its_return_path() -> None:
    """The 2013 spam copying LinkedIn's headers is a spoof because of its localnet.com envelope."""
    result = judge(raw("corpus/spoof_linkedin_welcome_2013.eml"))
    assert result.authentic is False
    assert any("localnet.com" in reason for reason in result.reasons)


def test_real_spoof_is_still_a_spoof_when_its_server_is_trusted() -> None:
    """Trusting mx.google.com, which shows no DKIM pass, still makes the 2013 spam a spoof."""
    result = check(parse(raw("corpus/spoof_linkedin_welcome_2013.eml")),
                   trusted_authserv_ids=["mx.google.com"])
    assert result.verdict is Verdict.SPOOF
    assert any(reason.startswith("mx.google.com reports no DKIM") for reason in result.reasons)


def test_real_invitation_without_authentication_headers_is_unknown() -> None:
    """The trimmed 2016 invitation carries no evidence either way."""
    result = check(parse(raw("corpus/invitation_m2m_2016.eml")), trusted_authserv_ids=TRUSTED)
    assert (result.looks_like_linkedin, result.authentic) == (True, None)


# --- Authentication-Results -----------------------------------------------------------------------

def test_results_of_an_untrusted_server_are_ignored() -> None:
    """An authentic-looking result is worth nothing unless its authserv-id is trusted."""
    result = check(parse(raw("invitation_current_jordan_rivera.eml")), trusted_authserv_ids=())
    assert result.verdict is Verdict.UNKNOWN


def test_forged_results_under_another_name_never_authenticate() -> None:
    """A sender's own 'dkim=pass' under mx.google.com neither proves nor appears as evidence."""
    result = check(parse(raw("spoof_forged_authres_untrusted.eml")), trusted_authserv_ids=TRUSTED)
    assert result.verdict is Verdict.SPOOF
    assert not any("mx.google.com" in reason for reason in result.reasons)


def test_topmost_trusted_result_decides() -> None:
    """A forged result under the trusted authserv-id below the real one cannot outvote it."""
    result = judge(raw("spoof_forged_authres_below_trusted.eml"))
    assert result.verdict is Verdict.SPOOF


@pytest.mark.parametrize(("authserv_id", "trusted", "verdict"), [
    ("bn8pr04mb6123.namprd04.prod.protection.outlook.com", "*.protection.outlook.com",
     Verdict.AUTHENTIC),
    ("protection.outlook.com", "*.protection.outlook.com", Verdict.UNKNOWN),
    ("protection.outlook.com.evil.example", "*.protection.outlook.com", Verdict.UNKNOWN),
    ("MX.Counsel.Example.EDU", "mx.counsel.example.edu", Verdict.AUTHENTIC),
])
def test_trusted_authserv_id_patterns(authserv_id: str, trusted: str, verdict: Verdict) -> None:
    """A leading '*.' trusts subdomains only; names compare without regard to case."""
    data = raw("invitation_current_jordan_rivera.eml").replace(
        b"Authentication-Results: mx.counsel.example.edu;",
        f"Authentication-Results: {authserv_id};".encode())
    assert check(parse(data), trusted_authserv_ids=[trusted]).verdict is verdict


def test_headers_that_do_not_name_a_trusted_server_are_passed_over() -> None:
    """Results above the trusted server's that never name it do not hide or replace it."""
    data = message(
        "Authentication-Results: relay.example.org; dkim=fail header.d=linkedin.com",
        "Authentication-Results: (mx.counsel.example.edu) evil.example; dkim=pass header.d=x.com",
        "Authentication-Results: MX.COUNSEL.EXAMPLE.EDU; dkim=fail header.d=linkedin.com",
        "Authentication-Results: mx.counsel.example.edu; dkim=pass header.d=linkedin.com")
    result = judge(data)
    assert result.verdict is Verdict.SPOOF
    assert "mx.counsel.example.edu reports no dkim=pass for linkedin.com (dkim=fail for " \
        "linkedin.com)." in result.reasons


@pytest.mark.parametrize(("authserv_id", "trusted", "verdict"), [
    ("m\u0445.counsel.example.edu", "m\u0445.counsel.example.edu", Verdict.UNKNOWN),
    ("mx.ex\u0430mple.edu", "*.ex\u0430mple.edu", Verdict.UNKNOWN),
    ("mx.counsel.example.edu", "m\u0445.counsel.example.edu", Verdict.UNKNOWN),
    ("mx.counsel.example.edu", "", Verdict.UNKNOWN),
])
def test_trust_patterns_beyond_ascii(authserv_id: str, trusted: str, verdict: Verdict) -> None:
    """A verdict with letters beyond ASCII was not written by a server, and proves nothing."""
    data = message(f"Authentication-Results: {authserv_id}; dkim=pass header.d=linkedin.com")
    assert judge(data, trusted=(trusted,)).verdict is verdict


_AUTHRES_PIECES = ["mx.counsel.example.edu", "MX.Example", "1", ";", " ", "\t", "\r\n ", "\n",
                   "(", ")", "(comment)", "((nested) c)", "(a\\) b)", "\\", '"', '"q s"', "dkim",
                   "spf", "/1", "=", "pass", "fail", "none", "reason=", '"why"', "header.d",
                   "header.i", "smtp.mailfrom", "policy.x", "bogus.x", ".", "@", "linkedin.com",
                   "a@b.example", "header.b=Fx1a+/=", "\u00e9", "\x00", "\u212a", "\u017f",
                   "HEADER.D=X", "header.d=@x.y", "header..d=x", ".d=x", "dkim=pass.x", "=="]


_RESINFO = st.tuples(
    st.sampled_from([";", "; ", ";\r\n\t", " ; (c) "]),
    st.sampled_from(["dkim", "spf", "dmarc", "dkim/1", "x-y", "none", "DKIM", "d.k", "\u212a"]),
    st.sampled_from(["=", " = ", "=(c)"]),
    st.sampled_from(["pass", "fail", "neutral (why (not))", "pass (a\\) b)", "p.a", "p..a", "="]),
    st.lists(st.sampled_from([" header.d=linkedin.com", " smtp.mailfrom=a@b.example",
                              ' header.b="q"', " policy.x=@d.example", " bogus.x=1",
                              ' header.i = "a b"@c.d', " (p=REJECT sp=REJECT)", ' reason="x"',
                              " header.s=(c)s1", " (mx: domain of a@b designates 1.2.3.4)",
                              " HEADER.From=x.\u017fom", " \u017fmtp.x=1", " header.d=a(b)",
                              " header.\u212a=v", " foo.bar=1", " header.d=@x.y", " header.d="]),
             max_size=4),
).map(lambda parts: "".join((*parts[:4], *parts[4])))
_AUTHRES_VALUES = st.one_of(
    st.lists(st.sampled_from(_AUTHRES_PIECES), max_size=24).map("".join),
    st.tuples(st.sampled_from(["mx.counsel.example.edu", "mx (c) ", "x.y (v) 1 (c)", " a.b"]),
              st.lists(_RESINFO, max_size=4)).map(lambda v: v[0] + "".join(v[1])),
)


@settings(max_examples=1000, deadline=None)
@given(_AUTHRES_VALUES)
def test_authres_is_read_exactly_as_authres_reads_it(value: str) -> None:
    """The quicker matching inside authres's parser finds what authres itself finds, or fails."""
    import authres

    from modbot.verdicts import _authres_parser

    def outcome(parse_value: Callable[[str], object], value: str) -> object:
        try:
            header: Any = parse_value(value)
        except Exception as exc:
            return type(exc), str(exc)
        return header.authserv_id, header.version, [
            (r.method, r.version, r.result, r.reason,
             [(p.type, p.name, p.value, p.comment) for p in r.properties])
            for r in header.results]

    assert outcome(_authres_parser(), value) == outcome(
        authres.AuthenticationResultsHeader.parse_value, value)


@pytest.mark.parametrize(("results", "verdict"), [
    ("dkim=pass header.d=linkedin.com; dmarc=pass header.from=linkedin.com", Verdict.AUTHENTIC),
    ("dkim=pass header.i=@mailb.linkedin.com", Verdict.AUTHENTIC),
    ("dkim=pass (signature was verified) header.d=linkedin.com;dmarc=pass action=none "
     "header.from=linkedin.com;compauth=pass reason=100", Verdict.AUTHENTIC),
    ("dkim=pass header.d=linkedin.com.evil.net", Verdict.SPOOF),
    ("dkim=pass header.d=notlinkedin.com", Verdict.SPOOF),
    ("dkim=fail header.d=linkedin.com", Verdict.SPOOF),
    ("dkim=pass header.d=linkedin.com; dmarc=fail header.from=linkedin.com", Verdict.SPOOF),
    ("dkim=pass header.d=linkedin.com; dmarc=temperror header.from=linkedin.com", Verdict.UNKNOWN),
    ("spf=pass smtp.mailfrom=s-1@bounce.linkedin.com", Verdict.SPOOF),
    ("none", Verdict.SPOOF),
])
def test_trusted_results_are_read(results: str, verdict: Verdict) -> None:
    """Only an aligned dkim=pass for linkedin.com, and no failed DMARC, proves the message."""
    data = message(f"Authentication-Results: mx.counsel.example.edu; {results}")
    assert judge(data).verdict is verdict


def test_linkedin_signature_on_a_foreign_from_is_a_spoof() -> None:
    """A pass for linkedin.com does not vouch for a From address of another domain."""
    results = "Authentication-Results: mx.counsel.example.edu; dkim=pass header.d=linkedin.com"
    data = message(results, "X-LinkedIn-Class: INVITE-GUEST", from_="Jo <jo@example.org>")
    assert judge(data).verdict is Verdict.SPOOF


def test_trusted_results_win_over_dkim_verification(key: tuple[bytes, bytes]) -> None:
    """With a trusted result present the DNS lookup is never consulted."""
    asked: list[bytes] = []

    def lookup(name: bytes) -> bytes | None:
        asked.append(name)
        return None
    n = parse(raw("invitation_current_jordan_rivera.eml"))
    assert check(n, trusted_authserv_ids=TRUSTED, dkim_lookup=lookup).verdict is Verdict.AUTHENTIC
    assert asked == []


# --- DKIM verified here ---------------------------------------------------------------------------

def test_valid_linkedin_signature_authenticates(key: tuple[bytes, bytes]) -> None:
    """A signature of linkedin.com that verifies proves the message."""
    data = sign(raw("invitation_dkim_signed_harper_lane.eml"), "linkedin.com", key[0])
    result = judge(data, (), lookup_for(key[1], "linkedin.com"))
    assert result.verdict is Verdict.AUTHENTIC
    assert result.reasons[-1] == "DKIM signature of linkedin.com verified."


def test_valid_signature_of_another_domain_is_a_spoof(key: tuple[bytes, bytes]) -> None:
    """A signature that verifies but belongs to another domain proves nothing for LinkedIn."""
    data = sign(raw("spoof_dkim_other_domain.eml"), "mailer.example.net", key[0])
    result = check(parse(data), trusted_authserv_ids=(),
                   dkim_lookup=lookup_for(key[1], "mailer.example.net"))
    assert result.verdict is Verdict.SPOOF
    assert "mailer.example.net is valid but not LinkedIn's" in result.reasons[-1]


def test_signature_of_another_domain_is_a_spoof_even_offline(key: tuple[bytes, bytes]) -> None:
    """Without DNS, a DKIM-Signature of another domain alone is evidence of a spoof."""
    data = sign(raw("spoof_dkim_other_domain.eml"), "mailer.example.net", key[0])
    result = check(parse(data), trusted_authserv_ids=())
    assert result.verdict is Verdict.SPOOF
    assert any("mailer.example.net, not linkedin.com" in reason for reason in result.reasons)


def test_body_changed_after_signing_is_a_spoof(key: tuple[bytes, bytes]) -> None:
    """A linkedin.com signature over a different body does not verify."""
    data = sign(raw("invitation_dkim_signed_harper_lane.eml"), "linkedin.com", key[0])
    data = data.replace(b"Nursing student", b"Send your password")
    result = judge(data, (), lookup_for(key[1], "linkedin.com"))
    assert result.verdict is Verdict.SPOOF


def test_partial_body_signature_does_not_authenticate(key: tuple[bytes, bytes]) -> None:
    """A signature with l= lets anyone append text, so it proves nothing."""
    data = sign(raw("invitation_dkim_signed_harper_lane.eml"), "linkedin.com", key[0], length=True)
    result = judge(data, (), lookup_for(key[1], "linkedin.com"))
    assert result.verdict is not Verdict.AUTHENTIC


def test_linkedin_key_missing_from_dns_is_a_spoof(key: tuple[bytes, bytes]) -> None:
    """A key DNS says does not exist is a failed proof, as OpenDKIM reports it: a spoof."""
    data = sign(raw("invitation_dkim_signed_harper_lane.eml"), "linkedin.com", key[0])
    result = judge(data, (), lambda name: None)
    assert result.verdict is Verdict.SPOOF
    assert "linkedin.com has no key in DNS" in result.reasons[-1]


def test_linkedin_key_dns_cannot_answer_is_unknown(key: tuple[bytes, bytes]) -> None:
    """When DNS gives no answer at all the message is neither proven nor disproven."""
    def lookup(name: bytes) -> bytes | None:
        raise TimeoutError("DNS timeout")
    data = sign(raw("invitation_dkim_signed_harper_lane.eml"), "linkedin.com", key[0])
    assert judge(data, (), lookup).verdict is Verdict.UNKNOWN


def test_dkim_verification_logs_nothing(key: tuple[bytes, bytes],
                                        caplog: pytest.LogCaptureFixture) -> None:
    """dkimpy's own logging of signatures and headers never reaches our logs."""
    caplog.set_level(logging.DEBUG)
    data = sign(raw("invitation_dkim_signed_harper_lane.eml"), "linkedin.com", key[0])
    judge(data.replace(b"Nursing student", b"Changed"), (), lookup_for(key[1], "linkedin.com"))
    assert "Harper" not in caplog.text and "linkedin.com" not in caplog.text


def test_unverifiable_signatures_are_left_unknown_offline() -> None:
    """Without DNS, LinkedIn-looking signatures are neither trusted nor held against the message."""
    result = check(parse(raw("invitation_current_jordan_rivera.eml")), trusted_authserv_ids=())
    assert result.verdict is Verdict.UNKNOWN
    assert result.reasons[-1].endswith("DKIM was not verified offline.")


def test_signatures_that_do_not_verify_are_a_spoof(key: tuple[bytes, bytes]) -> None:
    """With DNS at hand, LinkedIn signatures that fail to verify show a forgery."""
    result = check(parse(raw("invitation_current_jordan_rivera.eml")), trusted_authserv_ids=(),
                   dkim_lookup=lambda name: key[1])
    assert result.verdict is Verdict.SPOOF


# --- evidence without proof -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "evidence"), [
    ("spoof_linkedln_from.eml", "From domain linkedln.com imitates linkedin.com."),
    ("spoof_subdomain_trick.eml",
     "From domain linkedin.com.mail-secure.net imitates linkedin.com."),
    ("spoof_lookalike_links.eml",
     "A link points to www.linkedin-security.net, which imitates linkedin.com."),
    ("spoof_copied_headers_no_dkim.eml",
     "Return-Path domain bulk-mailer.example.net is not linkedin.com."),
])
def test_spoof_reasons_name_the_evidence(name: str, evidence: str) -> None:
    """A spoof's reasons name the domain that gave it away."""
    assert evidence in check(parse(raw(name)), trusted_authserv_ids=TRUSTED).reasons


@pytest.mark.parametrize("from_", ["LinkedIn <security@example.net>",
                                   "Linkedln Security <alerts@example.net>",
                                   "Jo Doe via LinkedIn <jo@example.net>"])
def test_display_name_alone_claims_linkedin(from_: str) -> None:
    """A display name presenting itself as LinkedIn, on another domain, is a spoof."""
    result = judge(message(from_=from_))
    assert (result.looks_like_linkedin, result.verdict) == (True, Verdict.SPOOF)


def test_display_name_mentioning_linkedin_is_no_claim() -> None:
    """A name that merely mentions LinkedIn does not make mail LinkedIn's."""
    result = judge(message(from_="Career Center (LinkedIn tips) <news@career.example.edu>"))
    assert result == NOT_LINKEDIN


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_check_never_raises(data: bytes) -> None:
    """Whatever parse() makes of arbitrary bytes, check() returns a finding."""
    result = check(parse(data), trusted_authserv_ids=TRUSTED, dkim_lookup=lambda name: None)
    assert isinstance(result, Authenticity) and all(re.match(r"\S", r) for r in result.reasons)


def test_authres_internals_the_quicker_reading_overrides_are_checked_first() -> None:
    """The pinned authres has every internal overridden; a class missing one is not overridden."""
    import authres.core

    from modbot import verdicts

    assert verdicts._overridable(authres.core.AuthenticationResultsHeader)
    renamed = type("Renamed", (), {"parse_value": classmethod(lambda cls, *a: None)})
    assert not verdicts._overridable(renamed)
