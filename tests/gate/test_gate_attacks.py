"""The authenticity gate tried as an attacker tries it: each class of attack, and its variants.

Every message here is signed with dkimpy by keys made for the test run, one for linkedin.com
(standing in for LinkedIn's) and one for the attacker's own domain, with the DNS lookup
injected. Each attack goes through the same pure stages a poll runs (``judging.judge``) and
must never end in a reply to an address the attacker chose.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import configs, linkedin_mail, servers
from support.linkedin_mail import (
    ATTACKER,
    DIRECTORY_CSV,
    EVIL,
    EVIL_KEY,
    INGRESS,
    JORDAN,
    LINKEDIN_KEY,
    LINKEDIN_SIGNS,
    MX,
    POLICY,
    SELECTOR,
    add_below_ingress,
    delivered,
    forged,
    gate_directory,
    genuine,
    invitation,
    lookup,
    reply_address,
    run,
    sign,
    trusted_pass,
)

from modbot.authenticity import check, own_domain_verdict
from modbot.config import PolicySettings
from modbot.directory.csv import CsvDirectory
from modbot.directory.index import Directory
from modbot.judging import judge
from modbot.model import Action, History, Mode, Verdict
from modbot.parse import parse
from modbot.poll import Poller


@pytest.fixture(scope="module")
def directory() -> Directory:
    """Jordan Rivera, Victoria Target (whom attackers aim at) and Maria Elena Lopez."""
    return gate_directory()


def test_genuine_invitation_is_answered_on_both_paths(directory: Directory) -> None:
    """The baseline: LinkedIn's own invitation reaches the inviter, verified here or by the MX."""
    signed = genuine()
    assert reply_address(run(delivered(signed), directory, trusted=False)) == JORDAN
    stored = delivered(signed, verdict=trusted_pass(signed))
    assert reply_address(run(stored, directory)) == JORDAN


# --- 1. a signature read differently from the verifier ----------------------------------------

EXTRA_TAGS = [
    [(b"D", b"linkedin.com")],
    [(b"z", b"=?utf-8?q?=3B_d=3Dlinkedin.com?=")],
    [(b"x2", b"=?us-ascii?q?x=3B_d=3Dlinkedin.com=3B?=")],
    [(b"i", b"@linkedin.com")],
    [(b"Dd", b"linkedin.com"), (b"Z", b"d=linkedin.com")],
]


@pytest.mark.parametrize("extra", EXTRA_TAGS)
@pytest.mark.parametrize("trusted", [False, True])
def test_attacker_signature_with_linkedin_in_other_tags(directory: Directory, trusted: bool,
                                                        extra: list[tuple[bytes, bytes]]) -> None:
    """A valid signature of the attacker's own domain is his, whatever its other tags say."""
    signed = sign(invitation(), EVIL, EVIL_KEY[0], extra=extra)
    verdict = (f"dkim=pass header.d={EVIL} header.s=x; dmarc=fail header.from=linkedin.com"
               if trusted else None)
    j = run(delivered(signed, verdict=verdict), directory, trusted=trusted)
    assert reply_address(j) is None
    assert j.authenticity.verdict is Verdict.SPOOF


@pytest.mark.parametrize("domain", ["linkedin.com.evil.example", "xn--linkedn-yxa.com",
                                    "evil.example"])
def test_lookalike_signing_domains_are_not_linkedin(directory: Directory, domain: str) -> None:
    """A domain that only contains or imitates linkedin.com proves nothing for LinkedIn."""
    linkedin_mail.KEYS[SELECTOR + b"._domainkey." + domain.encode() + b"."] = EVIL_KEY[1]
    signed = sign(invitation(), domain, EVIL_KEY[0])
    j = run(delivered(signed), directory, trusted=False)
    assert reply_address(j) is None


@pytest.mark.parametrize("extra", [*EXTRA_TAGS[:2], [(b"D", b"counsel.example.edu")]])
def test_review_answer_signed_by_another_domain_is_not_the_counselor(
        extra: list[tuple[bytes, bytes]]) -> None:
    """A counselor's-domain tag in the attacker's signature never makes his mail the counselor's."""
    extra = [(k, v.replace(b"linkedin.com", b"counsel.example.edu")) for k, v in extra]
    answer = (b"From: counselor@counsel.example.edu\nTo: counselor@counsel.example.edu\n"
              b"Subject: Re: replies waiting\nIn-Reply-To: <r1@counsel.example.edu>\n\n"
              b"approve all\n")
    signed = sign(answer, EVIL, EVIL_KEY[0], extra=extra, names=(b"From", b"To", b"Subject"))
    why = own_domain_verdict(parse(signed), "counsel.example.edu", trusted_authserv_ids=(MX,),
                             dkim_lookup=lookup)
    assert why is not None


# --- 2. a trusted verdict read differently from the server that wrote it ----------------------

FORGED_VERDICTS = [
    # an envelope sender copied by the server, an encoded word that decodes to a DKIM pass
    "spf=pass smtp.mailfrom==?us-ascii?q?x=3B_dkim=3Dpass_header.d=3Dlinkedin.com_x?=@evil.example",
    # a HELO name inside a comment
    "spf=none (mx: helo=x; dkim=pass header.d=linkedin.com; dmarc=pass) smtp.helo=evil.example",
    # a quoted local part holding a semicolon
    'spf=pass smtp.mailfrom="a;dkim=pass header.d=linkedin.com"@evil.example',
    # nested comments
    "spf=none (a (b; dkim=pass header.d=linkedin.com) c) smtp.mailfrom=x@evil.example",
    # what authres refuses is no evidence, however it reads to a tolerant eye
    "none; dkim=pass header.d=linkedin.com",
    "dkim=pass header.d=linkedin.com (unclosed comment; dmarc=pass",
    "spf=pass smtp.mailfrom=a@evil.example; =?utf-8?q?dkim=3Dpass_header.d=3Dlinkedin.com?=",
    # names a verifier would not take for linkedin.com: a trailing dot, IDN, a longer domain
    "dkim=pass header.d=linkedin.com.; dmarc=pass header.from=linkedin.com",
    "dkim=pass header.d=xn--linkedn-yxa.com; dmarc=pass header.from=linkedin.com",
    "dkim=pass header.i=@linkedin.com.evil.example; dmarc=pass header.from=linkedin.com",
    "dkim=pass header.d=linked\u0131n.com; dmarc=pass header.from=linkedin.com",
    # folded across lines and written in capitals: still only the sender's tokens
    "spf=pass\r\n\tsmtp.mailfrom=\"x;\r\n DKIM=PASS header.d=linkedin.com\"@evil.example",
]


@pytest.mark.parametrize("verdict", FORGED_VERDICTS)
def test_attacker_tokens_in_a_trusted_verdict_stay_tokens(directory: Directory,
                                                          verdict: str) -> None:
    """Text the MX copied from the sender never becomes a result it did not give."""
    j = run(delivered(forged(), verdict=verdict), directory)
    assert reply_address(j) is None


@pytest.mark.parametrize("position", ["right-under", "further-down", "above-own-received"])
def test_verdict_below_the_ingress_is_the_sender_s(directory: Directory, position: str) -> None:
    """An Authentication-Results of the MX's own name below its ingress line is the sender's."""
    signed = forged()
    verdict = f"Authentication-Results: {MX}; dkim=pass header.d=linkedin.com; dmarc=pass " \
             "header.from=linkedin.com"
    stored = delivered(signed)
    if position == "right-under":
        stored = add_below_ingress(stored, verdict)
    elif position == "further-down":
        stored = stored.replace(b"From:", verdict.encode() + b"\nFrom:", 1)
    else:  # the sender adds a Received of the MX's name of his own, with the verdict above it
        stored = add_below_ingress(stored, verdict, INGRESS.decode().rstrip("\n"))
    assert reply_address(run(stored, directory)) is None


# --- 3. fields the signature does not cover -----------------------------------------------------

@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("reply_to", [ATTACKER, f"Jordan Rivera <{ATTACKER}>",
                                      f"=?utf-8?q?Jordan?= <{ATTACKER}>"])
def test_unsigned_reply_to_never_becomes_a_recipient(directory: Directory, trusted: bool,
                                                     reply_to: str) -> None:
    """A genuine invitation re-sent with the attacker's Reply-To is answered at the directory's."""
    signed = sign(invitation(headers=[f"Reply-To: {reply_to}"]), "linkedin.com",
                  LINKEDIN_KEY[0])
    stored = delivered(signed, verdict=trusted_pass(signed) if trusted else None)
    assert reply_address(run(stored, directory, trusted=trusted)) in (JORDAN, None)


def test_message_relay_swapped_for_a_personal_address_is_held(directory: Directory) -> None:
    """A LinkedIn message whose Reply-To is not LinkedIn's relay has nobody to answer."""
    message = invitation(template="email_member_message_v2",
                         subject="Jordan Rivera sent you a message",
                         headers=[f"Reply-To: Jordan Rivera <{ATTACKER}>"])
    message = message.replace(b"invitations@linkedin.com", b"inmail-hit-reply@linkedin.com")
    j = run(delivered(genuine(message)), directory, trusted=False)
    assert reply_address(j) is None


def test_legacy_personal_reply_to_is_never_used(directory: Directory) -> None:
    """The ~2012 member@ invitation's personal Reply-To is no address, even when signed."""
    message = invitation(headers=[f"Reply-To: Jordan Rivera <{ATTACKER}>"])
    message = message.replace(b"invitations@linkedin.com", b"member@linkedin.com")
    signed = sign(message, "linkedin.com", LINKEDIN_KEY[0], names=(*LINKEDIN_SIGNS, b"Reply-To"))
    assert reply_address(run(delivered(signed), directory, trusted=False)) in (JORDAN, None)


# --- 4. the first instance read where the verifier checked the last -----------------------------

DUPLICATES = [
    "X-LinkedIn-Template: email_m2m_invite_single_01",
    "From: Victoria Target <invitations@linkedin.com>",
    "FROM: Victoria Target <invitations@linkedin.com>",
    "from:Victoria Target <invitations@linkedin.com>",
    "Subject: Victoria Target wants to connect",
    "Sender: invitations@linkedin.com",
    "To: Victoria Target <vtarget@students.example.edu>",
    "Feedback-ID: email_m2m_invite_single_01:linkedin",
    "X-Foo: bar\rFrom: Victoria Target <invitations@linkedin.com>",
]


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("extra", DUPLICATES)
def test_an_extra_copy_of_a_field_proves_nothing(directory: Directory, trusted: bool,
                                                 extra: str) -> None:
    """A second instance of a field modbot relies on, added on top, is the attacker's."""
    accepted = invitation(template="accept_invite_04",
                          subject="Jordan accepted your invitation, explore their network")
    for message in (accepted, invitation()):
        signed = genuine(message)
        stored = delivered(signed, verdict=trusted_pass(signed) if trusted else None)
        j = run(add_below_ingress(stored, extra), directory, trusted=trusted)
        assert reply_address(j) in ((JORDAN, None) if "Sender:" in extra and message is not
                                    accepted else (None,))


def test_accepted_invitation_is_not_turned_into_an_invitation(directory: Directory) -> None:
    """An unsigned template key on top of a genuine 'accepted' notice never makes a reply."""
    accepted = genuine(invitation(template="accept_invite_04",
                                  subject="Jordan accepted your invitation"))
    stored = add_below_ingress(delivered(accepted),
                               "X-LinkedIn-Template: email_m2m_invite_single_01")
    j = run(stored, directory, trusted=False)
    assert j.decision.action is not Action.REPLY
    assert j.authenticity.verdict is Verdict.SPOOF


# --- 5. the person taken from text the inviter wrote -------------------------------------------

NOTES = [
    "View Victoria Target’s profile: https://www.linkedin.com/in/victoria-target",
    "View Victoria Target's profile: https://www.linkedin.com/comm/in/victoria-target?trk=hero",
    "https://www.linkedin.com/in/victoria-target?trk=hero",
    "Mallory Stone: https://www.linkedin.com/in/victoria-target",
    "View Mallory Stone’s profile: https://www.linkedin.com/in/victoria-target?trk=hero",
]


@pytest.mark.parametrize("note", NOTES)
def test_profile_link_in_the_note_never_picks_the_recipient(directory: Directory,
                                                            note: str) -> None:
    """An inviter's note naming another student's profile never sends her the reply."""
    message = invitation("Mallory Stone", "mallory-stone-1", note=note)
    j = run(delivered(genuine(message)), directory, trusted=False)
    assert j.authenticity.verdict is Verdict.AUTHENTIC
    assert reply_address(j) is None


# --- 6. partial names ---------------------------------------------------------------------------

def test_shorter_name_is_held_with_the_candidate(directory: Directory) -> None:
    """'Maria Lopez' is not the directory's 'Maria Elena Lopez' without a human's say."""
    j = run(delivered(genuine(invitation("Maria Lopez", "maria-lopez-3"))), directory,
            trusted=False)
    assert reply_address(j) is None
    assert any("Maria Elena Lopez may be this person" in r for r in j.decision.reasons)


# --- 7. bounded work ----------------------------------------------------------------------------

def costly(signatures: int = 8, names: int = 3000, fields: int = 40_000) -> bytes:
    """The costly message: many signatures naming LinkedIn's real selector, each with a right
    body hash (anyone can compute one) and a huge h= over many tiny fields, so a verifier gets
    past the body and its key lookup to hash the header fields again and again."""
    head, _, body_part = invitation().partition(b"\n\n")
    message = head + b"\n" + b"x: 1\n" * fields + b"\n" + body_part
    body = dkim.DKIM(message).body
    canon = dkim.CanonicalizationPolicy.from_c_value(b"simple/simple")
    bh = base64.b64encode(hashlib.sha256(canon.canonicalize_body(body)).digest()).decode()
    h = ":".join(f"x-{n}" for n in range(names))  # each absent: every name is a full scan
    sigs = "".join(f"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=linkedin.com; "
                   f"s={SELECTOR.decode()}; h=from:{h}; bh={bh}; b=AAAA\n"
                   for _ in range(signatures))
    return sigs.encode() + message


@pytest.mark.parametrize(("signatures", "names", "fields"), [
    (8, 3000, 40_000), (8, 60, 900), (40, 60, 900), (3, 63, 999)])
def test_no_message_costs_more_than_five_seconds(directory: Directory, signatures: int,
                                                 names: int, fields: int) -> None:
    """The work of verifying one message is bounded before dkimpy starts (5 s at most)."""
    data = costly(signatures, names, fields)
    start = time.perf_counter()
    j = run(data, directory, trusted=False)
    assert time.perf_counter() - start < 5
    assert reply_address(j) is None


# --- a property: only signed fields and the directory choose the recipient --------------------

FIELD_NAMES = ["From", "Reply-To", "Sender", "X-LinkedIn-Template", "X-LinkedIn-Class",
               "Subject", "To", "Feedback-ID", "List-Unsubscribe", "Return-Path",
               "Authentication-Results", "DKIM-Signature", "Received", "Message-ID",
               "Content-Type", "from", "REPLY-TO", "X-Linkedin-Template"]
VALUES = [ATTACKER, f"Victoria Target <{ATTACKER}>", "Victoria Target <invitations@linkedin.com>",
          "vtarget@students.example.edu", "email_m2m_invite_single_01",
          f"{MX}; dkim=pass header.d=linkedin.com; dmarc=pass header.from=linkedin.com",
          "v=1; a=rsa-sha256; d=linkedin.com; s=x; h=From:Reply-To; bh=AA; b=AA",
          f"from x ([203.0.113.9]) by {MX}", "=?utf-8?q?Victoria_Target?= <" + ATTACKER + ">",
          "<x@reply.linkedin.com>", "text/plain", "Victoria Target wants to connect"]
MUTATION = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(FIELD_NAMES), st.sampled_from(VALUES),
              st.sampled_from(["top-of-sender", "bottom"])),
    st.tuples(st.just("duplicate"), st.sampled_from(["From", "X-LinkedIn-Template", "Subject",
                                                     "To", "Date"]),
              st.just(""), st.sampled_from(["top-of-sender", "bottom"])),
)


def mutate(stored: bytes, mutations: Sequence[tuple[str, str, str, str]]) -> bytes:
    """``stored`` with fields added or copied where a sender can put them: below the ingress."""
    head, _, body = stored.partition(b"\n\n")
    for kind, name, value, where in mutations:
        if kind == "duplicate":
            found = re.search(rf"^{name}:[^\n]*(?:\n[ \t][^\n]*)*".encode(), head, re.MULTILINE)
            if found is None:
                continue
            line = found.group(0)
        else:
            line = f"{name}: {value}".encode()
        if where == "bottom":
            head = head + b"\n" + line
        else:
            head = head.replace(INGRESS.rstrip(b"\n"), INGRESS.rstrip(b"\n") + b"\n" + line, 1)
    return head + b"\n\n" + body


SIGNED = genuine()
OTHER = forged()
BASES = {
    "linkedin, verified here": (delivered(SIGNED), False),
    "linkedin, the MX's verdict": (delivered(SIGNED, verdict=trusted_pass(SIGNED)), True),
    "attacker's own signature": (delivered(OTHER), False),
    "attacker's own signature, MX verdict": (
        delivered(OTHER, verdict=f"dkim=pass header.d={EVIL}; dmarc=fail "
                                 "header.from=linkedin.com"), True),
}


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BASES)), st.lists(MUTATION, min_size=1, max_size=4))
def test_recipient_only_ever_comes_from_signed_fields_and_the_directory(
        base: str, mutations: list[tuple[str, str, str, str]]) -> None:
    """Whatever fields a sender adds or copies, a reply goes to the signed inviter's entry."""
    stored, trusted = BASES[base]
    j = run(mutate(stored, mutations), CsvDirectory.from_csv(DIRECTORY_CSV), trusted=trusted)
    allowed = {JORDAN} if base.startswith("linkedin") else set()
    assert reply_address(j) in allowed | {None}


def test_check_reads_the_same_with_and_without_decoding() -> None:
    """The gate's verdict is the same whatever a display-decoding of the headers would show."""
    signed = genuine()
    found = check(parse(delivered(signed)), trusted_authserv_ids=(), dkim_lookup=lookup)
    assert found.verdict is Verdict.AUTHENTIC
    assert "reply-to" not in found.signed and "from" in found.signed


# --- end to end: the attacks appended to Dovecot, the replies counted at aiosmtpd --------------

@pytest.mark.integration
async def test_attacks_get_no_reply_over_real_servers(
        imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, ca_file: Path,
        tmp_path: Path) -> None:
    """A real poll answers the genuine invitation at the directory's address, and nothing else."""
    settings = configs.account(tmp_path, imap_user.imap_settings(), smtp_server.smtp_settings(),
                               people=DIRECTORY_CSV, policy=POLICY)
    ctx = configs.poll_context(settings, ca_file, dkim_lookup=lookup)
    signed = genuine()
    attacks = [
        delivered(sign(invitation(headers=[f"Reply-To: {ATTACKER}"]), "linkedin.com",
                       LINKEDIN_KEY[0])).replace(b"10531250.531250", b"1.1"),
        add_below_ingress(delivered(signed, verdict=trusted_pass(signed)),
                          "From: Victoria Target <invitations@linkedin.com>")
        .replace(b"10531250.531250", b"2.2"),
        delivered(sign(invitation(), EVIL, EVIL_KEY[0], extra=[(b"D", b"linkedin.com")]))
        .replace(b"10531250.531250", b"3.3"),
        delivered(genuine(invitation("Mallory Stone", "mallory-stone-1", note=NOTES[0])))
        .replace(b"10531250.531250", b"4.4"),
    ]
    for raw in [*attacks, delivered(signed)]:
        imap_user.append("INBOX", raw)
    await Poller(ctx).poll(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    assert [m.recipients for m in smtp_server.messages] == [(JORDAN,)]


def test_classify_shows_where_a_reply_would_go(tmp_path: Path) -> None:
    """`modbot classify --json` names the address a reply would be written to, or null."""
    from typer.testing import CliRunner

    from modbot.cli import app

    relay = "5d1e8b2a-0c9f-4a7e@reply.linkedin.com"
    message = invitation(template="email_member_message_v2",
                         subject="Jordan Rivera sent you a message",
                         headers=[f"Reply-To: Jordan Rivera <{relay}>"])
    message = message.replace(b"invitations@linkedin.com", b"inmail-hit-reply@linkedin.com")
    signed = genuine(message)
    stored = delivered(signed, verdict=trusted_pass(signed))
    (tmp_path / "message.eml").write_bytes(stored)
    (tmp_path / "swapped.eml").write_bytes(stored.replace(relay.encode(), ATTACKER.encode()))
    result = CliRunner().invoke(app, ["classify", "--json", "--trust", MX,
                                      str(tmp_path / "message.eml"),
                                      str(tmp_path / "swapped.eml")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["to"] for line in lines] == [relay, None]
    assert "reply-to" not in lines[0]["authenticity"]["signed_fields"]


def test_trusted_name_below_the_border_is_the_sender_s(directory: Directory) -> None:
    """Where the trusted server writes no Received of its own name (a shared vendor id trusted
    by mistake), a line of that name the sender wrote below the border proves nothing."""
    border = ("Received: from mail.evil.example (mail.evil.example [6.6.6.6])\n"
              "\tby mx1.college.example with ESMTPS id 4Z8q1T2kLmz9;\n"
              "\tMon, 3 Mar 2025 14:02:11 +0000 (UTC)\n")
    sender = ("Authentication-Results: ppops.net; dkim=pass header.d=linkedin.com; "
              "dmarc=pass header.from=linkedin.com\n"
              "Received: from x (x [6.6.6.6]) by mx0a-00000000.ppops.net with ESMTP id 2;\n"
              "\tMon, 3 Mar 2025 14:02:09 +0000\n")
    stored = (border + sender).encode() + forged()
    policy = PolicySettings(mode=Mode.AUTO, trusted_authserv_ids=("ppops.net",))
    j = judge(stored, policy, directory, lambda *_: History(), lookup)
    assert reply_address(j) is None
    assert j.authenticity.verdict is not Verdict.AUTHENTIC
