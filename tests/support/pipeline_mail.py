"""What the pipeline tests send through the college's Postfix (support/mta.py): LinkedIn's DNS,
genuine LinkedIn notifications signed as LinkedIn signs them, and the forgeries an attacker can
send to the same MX.

Every message is built from a fixture of tests/data: its own transport headers (Return-Path,
Received, Authentication-Results, placeholder DKIM-Signature) are taken off, lines end in CRLF,
and it is signed here with dkimpy by keys whose public halves the pipeline's DNS serves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from support.mta import MX, DkimKey, Peer, new_key

DATA = Path(__file__).parents[1] / "data"
# LinkedIn's mail hosts and an attacker's, in the documentation ranges the fixtures use.
LINKEDIN_HOST = Peer("mailb-cd.linkedin.com", "192.0.2.41")
ATTACKER_HOST = Peer("mail.evil.test", "198.51.100.66")
# What LinkedIn's DKIM h= covers (../shared/LINKEDIN.md section 1).
SIGNED = ("From", "Subject", "MIME-Version", "Content-Type", "To", "Date", "X-LinkedIn-Class",
          "X-LinkedIn-Template", "X-LinkedIn-fbl")
TRANSPORT = {b"x-fixture-source", b"return-path", b"received", b"authentication-results",
             b"dkim-signature"}
INVITATION = "invitation_current_jordan_rivera.eml"
MESSAGE = "message_sam_okafor_relay.eml"
JORDAN = "jrivera@students.example.edu"  # Jordan Rivera in faults.DIRECTORY
GENUINE = ("genuine_invitation", "genuine_message")
FORGED = ("forged_unsigned", "forged_signed_by_attacker", "forged_results_unparseable",
          "forged_results_parseable", "forged_extra_from", "forged_extra_reply_to",
          "forged_key_missing")


@dataclass(frozen=True)
class Keys:
    """LinkedIn's two signing domains, the attacker's own, and a selector nobody published."""

    linkedin: DkimKey
    mailb: DkimKey
    attacker: DkimKey
    unpublished: DkimKey  # d=linkedin.com, but its selector is not in DNS

    @classmethod
    def generate(cls) -> Keys:
        return cls(new_key("linkedin.com", "d2048-202308-00"),
                   new_key("mailb.linkedin.com", "d2048-202308-0e"),
                   new_key("evil.test", "s2025"),
                   new_key("linkedin.com", "d2048-202608-00"))

    def zone(self) -> dict[str, str]:
        """The TXT records the pipeline's DNS serves: keys, SPF and DMARC of both domains."""
        return {
            self.linkedin.name: self.linkedin.record,
            self.mailb.name: self.mailb.record,
            self.attacker.name: self.attacker.record,
            "linkedin.com": "v=spf1 ip4:192.0.2.0/24 -all",
            "bounce.linkedin.com": "v=spf1 ip4:192.0.2.0/24 -all",
            "_dmarc.linkedin.com": "v=DMARC1; p=reject; sp=reject; pct=100",
            "evil.test": "v=spf1 ip4:198.51.100.0/24 -all",
            "_dmarc.evil.test": "v=DMARC1; p=none",
        }


@dataclass(frozen=True)
class Case:
    """One message as a sender hands it to the college's MX, and what modbot must do with it."""

    name: str
    about: str  # one sentence, for the fixtures' README
    raw: bytes
    sender: str  # the envelope sender (MAIL FROM)
    peer: Peer
    answer_to: str | None = None  # where the reply goes; None: held, never answered

    @property
    def genuine(self) -> bool:
        return self.answer_to is not None


def bare(name: str) -> bytes:
    """Fixture ``name`` without its transport headers, with CRLF line ends, as LinkedIn sends it."""
    head, _, body = (DATA / name).read_bytes().partition(b"\n\n")
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\n"):
        if line[:1] not in (b" ", b"\t"):
            dropping = line.split(b":", 1)[0].strip().lower() in TRANSPORT
        if not dropping:
            kept.append(line)
    return (b"\n".join(kept) + b"\n\n" + body).replace(b"\n", b"\r\n")


def written_by_attacker(raw: bytes) -> bytes:
    """``raw`` under a Message-ID of the attacker's making: a forger cannot know the one LinkedIn
    will give its next genuine notification."""
    forged, count = re.subn(rb"(?m)^Message-ID: <[^>]*>\r$",
                            b"Message-ID: <4242424.24242.1741010599999@ltx1-app41752.prod."
                            b"linkedin.com>\r", raw, count=1)
    assert count == 1, "the fixture has no Message-ID line"
    return forged


def as_linkedin(raw: bytes, keys: Keys) -> bytes:
    """``raw`` signed by linkedin.com and mailb.linkedin.com, in the order of LinkedIn's mail."""
    return keys.linkedin.sign(keys.mailb.sign(raw, SIGNED), SIGNED)


def on_top(raw: bytes, *lines: str) -> bytes:
    """``raw`` with header ``lines`` added above everything else (after it was signed)."""
    return "".join(f"{line}\r\n" for line in lines).encode() + raw


def cases(keys: Keys) -> Sequence[Case]:
    """Two genuine notifications and every forgery, each from the host that would send it."""
    message = bare(MESSAGE)
    invitation = bare(INVITATION)
    forged = written_by_attacker(invitation)
    bounce = "s-3kf81a9q2w7e@bounce.linkedin.com"
    attacker = "bounces@evil.test"
    forged_results = f"Authentication-Results: {MX}; none; dkim=pass header.d=linkedin.com"
    parseable = f"Authentication-Results: {MX}; dkim=pass header.d=linkedin.com"
    made = (
        Case("genuine_invitation",
             "Jordan Rivera's invitation as LinkedIn sends it, signed by linkedin.com and "
             "mailb.linkedin.com, from LinkedIn's host", as_linkedin(invitation, keys), bounce,
             LINKEDIN_HOST, answer_to=JORDAN),
        Case("genuine_message",
             "Sam Okafor's LinkedIn message as LinkedIn sends it, with the relay Reply-To",
             as_linkedin(message, keys), "s-7pq2w9e1k4z@bounce.linkedin.com", LINKEDIN_HOST,
             answer_to="c3f2a9e1-7b4d-4e8a-9f0c-2d5b6a7e8f90@reply.linkedin.com"),
        Case("forged_unsigned",
             "the invitation with no DKIM signature, from the attacker's host with LinkedIn's "
             "envelope sender", forged, bounce, ATTACKER_HOST),
        Case("forged_signed_by_attacker",
             "the invitation signed by the attacker's own domain (d=evil.test), envelope sender "
             "at evil.test", keys.attacker.sign(forged, SIGNED), attacker, ATTACKER_HOST),
        Case("forged_results_unparseable",
             f"the unsigned invitation carrying '{forged_results}', which OpenDKIM cannot parse "
             "and so leaves in place", on_top(forged, forged_results), attacker,
             ATTACKER_HOST),
        Case("forged_results_parseable",
             f"the unsigned invitation carrying '{parseable}', which OpenDKIM removes",
             on_top(forged, parseable), attacker, ATTACKER_HOST),
        Case("forged_extra_from",
             "a genuine signed invitation replayed with an unsigned second From on top",
             on_top(as_linkedin(invitation, keys),
                    "From: Sam Okafor <invitations@linkedin.com>"), bounce, ATTACKER_HOST),
        Case("forged_extra_reply_to",
             "a genuine signed LinkedIn message replayed with an unsigned second Reply-To on top",
             on_top(as_linkedin(message, keys),
                    "Reply-To: Sam Okafor <sam.okafor@evil.test>"),
             "s-7pq2w9e1k4z@bounce.linkedin.com", ATTACKER_HOST),
        Case("forged_key_missing",
             "the invitation signed for d=linkedin.com under a selector that is not in DNS",
             keys.unpublished.sign(forged, SIGNED), bounce, ATTACKER_HOST),
    )
    assert tuple(case.name for case in made) == GENUINE + FORGED
    return made
