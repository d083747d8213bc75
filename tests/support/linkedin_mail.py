"""LinkedIn notification mail for the gate's tests: keys, signatures, stores, and judging.

Messages are signed with dkimpy by keys made for the test run, one standing in for
LinkedIn's (``d=linkedin.com``) and one for an attacker's own domain; ``lookup`` is the test's
DNS. ``delivered`` stores a message as the counselor's Postfix MX does; the judging helpers
run the pure stages a poll runs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import dkim
import dkim.crypto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from modbot.config import PolicySettings
from modbot.directory.csv import CsvDirectory
from modbot.directory.index import Directory
from modbot.judging import Judgement, judge
from modbot.model import Action, Mode

MX = "mx.counsel.example.edu"
SELECTOR = b"d2048-202308-00"
EVIL = "evil.example"
ATTACKER = "mallory@evil.example"
# What LinkedIn signs (LINKEDIN.md section 1): Reply-To is not among them.
LINKEDIN_SIGNS = (b"From", b"Subject", b"MIME-Version", b"Content-Type", b"To", b"Date",
                  b"X-LinkedIn-Class", b"X-LinkedIn-Template", b"X-LinkedIn-fbl")
DIRECTORY_CSV = Path(__file__).parents[1] / "data" / "gate_directory.csv"
JORDAN = "jrivera@students.example.edu"
INGRESS = (f"Received: from mailb-cd.linkedin.com (mailb-cd.linkedin.com [108.174.3.12])\n"
           f"\tby {MX} (Postfix) with ESMTPS id 4Z8q1T2kLmz9;\n"
           "\tMon, 3 Mar 2025 14:02:11 +0000 (UTC)\n").encode()

Lookup = Callable[[bytes], bytes | None]


# --- keys, signing, mail ------------------------------------------------------------------------

def new_key() -> tuple[bytes, bytes]:
    """A fresh RSA key: the PEM private key and its DNS TXT record."""
    # A throwaway key for one test run: 1024 bits is dkimpy's minimum and quick to make.
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


LINKEDIN_KEY, EVIL_KEY = new_key(), new_key()
KEYS = {SELECTOR + b"._domainkey.linkedin.com.": LINKEDIN_KEY[1],
        SELECTOR + b"._domainkey.evil.example.": EVIL_KEY[1],
        SELECTOR + b"._domainkey.counsel.example.edu.evil.example.": EVIL_KEY[1]}


def lookup(name: bytes) -> bytes | None:
    """The test's DNS: LinkedIn's key and the attacker's own, nothing else."""
    return KEYS.get(name)


def sign(message: bytes, domain: str, pem: bytes, *,
         extra: Sequence[tuple[bytes, bytes]] = (),
         names: Sequence[bytes] = LINKEDIN_SIGNS, length: bool = False) -> bytes:
    """``message`` with a DKIM-Signature on top, made as dkimpy makes one, plus ``extra`` tags."""
    signer = dkim.DKIM(message, linesep=b"\n")
    canon = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    signer.hasher = hashlib.sha256
    body = canon.canonicalize_body(signer.body)
    include = [n.lower() for n in names]
    fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"),
              (b"d", domain.encode()), (b"s", SELECTOR), *extra,
              *([(b"l", str(len(body)).encode())] if length else []),
              (b"h", b" : ".join(include)),
              (b"bh", base64.b64encode(hashlib.sha256(body).digest())), (b"b", b"0" * 60)]
    value = signer.gen_header(fields, include, canon, b"DKIM-Signature",
                              dkim.crypto.parse_pem_private_key(pem))
    return b"DKIM-Signature:" + value.replace(b"\r\n", b"\n") + message


def invitation(name: str = "Jordan Rivera", vanity: str = "jordan-rivera-42", *,
               note: str = "", template: str = "email_m2m_invite_single_01",
               subject: str = "I’ve sent you a connection request",
               headers: Sequence[str] = ()) -> bytes:
    """A 2025-shaped invitation from ``name`` (LINKEDIN.md section 7), unsigned."""
    profile = f"https://www.linkedin.com/comm/in/{vanity}?midToken=AQ&trk=eml-{template}-hero"
    accept = ("https://www.linkedin.com/comm/mynetwork/invite-accept/invitationId/"
              f"70{abs(hash(vanity)) % 10**15:015d}/sharedKey/k1/?inviterVanityName={vanity}")
    note_text = f"{note}\n\n" if note else ""
    note_html = f"<p>{note}</p>" if note else ""
    text = (f"Hi Morgan, I’d like to join your professional network\n\n{note_text}"
            f"{name}\nNursing student\n\nAccept: {accept}\n\n"
            f"View {name}’s profile: {profile}\n\n"
            "This email was intended for Morgan Lee (Career Counselor)\n")
    html = (f"<html><body><p>Hi Morgan, I’d like to join your professional network</p>"
            f"{note_html}<a href=\"{profile}\"><b>{name}</b></a><p>Nursing student</p>"
            f"<a href=\"{accept}\">Accept</a>"
            "<p>This email was intended for Morgan Lee (Career Counselor)</p></body></html>")
    boundary = "----=_Part_4811007_14433021.1741010531250"
    head = [*headers,
            f"From: {name} <invitations@linkedin.com>",
            "Message-ID: <10531250.531250.1741010531250@ltx1-app41752.prod.linkedin.com>",
            f"Subject: {subject}",
            "MIME-Version: 1.0",
            f"Content-Type: multipart/alternative; boundary=\"{boundary}\"",
            "To: Morgan Lee <morgan.lee@counsel.example.edu>",
            "Date: Mon, 3 Mar 2025 14:02:11 +0000",
            "X-LinkedIn-Class: EMAIL-DEFAULT",
            f"X-LinkedIn-Template: {template}",
            "X-LinkedIn-fbl: m2-aFx7sd0kq9lQm3vZcR8pTnYwE1uBoHgJ",
            f"Feedback-ID: {template}:linkedin"]
    body = (f"--{boundary}\nContent-Type: text/plain;charset=UTF-8\n"
            f"Content-Transfer-Encoding: 8bit\n\n{text}\n"
            f"--{boundary}\nContent-Type: text/html;charset=UTF-8\n"
            f"Content-Transfer-Encoding: 8bit\n\n{html}\n--{boundary}--\n")
    return ("\n".join(head) + "\n\n" + body).encode()


def genuine(message: bytes | None = None) -> bytes:
    """``message`` (a Jordan Rivera invitation by default) as LinkedIn signs it."""
    return sign(message or invitation(), "linkedin.com", LINKEDIN_KEY[0])


def delivered(signed: bytes, *, verdict: str | None = None) -> bytes:
    """``signed`` as the counselor's MX stored it: its ingress line, and its verdict above."""
    top = f"Authentication-Results: {MX}; {verdict}\n".encode() if verdict else b""
    return top + INGRESS + signed


def add_below_ingress(stored: bytes, *fields: str) -> bytes:
    """What a sender can do: put fields anywhere below the MX's ingress line (here: first)."""
    added = "".join(f"{f}\n" for f in fields).encode()
    return stored.replace(INGRESS, INGRESS + added, 1)


TRUSTED_PASS = ("dkim=pass header.d=linkedin.com header.s=d2048-202308-00 header.b={b}; "
                "spf=pass smtp.mailfrom=s-1@bounce.linkedin.com; "
                "dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=linkedin.com")


def trusted_pass(signed: bytes) -> str:
    """The verdict the MX writes for a genuine LinkedIn signature on top of ``signed``."""
    b = re.search(rb"\bb=([A-Za-z0-9+/]{8})", re.sub(rb"\s+", b"", signed.split(b"\n\n")[0]))
    assert b is not None
    return TRUSTED_PASS.format(b=b.group(1).decode())


# --- judging -------------------------------------------------------------------------------------

def gate_directory() -> Directory:
    """Jordan Rivera, Victoria Target (whom attackers aim at) and Maria Elena Lopez."""
    return CsvDirectory.from_csv(DIRECTORY_CSV)


POLICY = PolicySettings(mode=Mode.AUTO, trusted_authserv_ids=(MX,))


def run(raw: bytes, directory: Directory, *, trusted: bool = True) -> Judgement:
    """The pure stages a poll runs on ``raw``, DNS answered by the test's zone."""
    policy = POLICY if trusted else PolicySettings(mode=Mode.AUTO)
    return judge(raw, policy, directory, lookup)


def reply_address(j: Judgement) -> str | None:
    """Where a reply would go, or None when the decision is not to reply."""
    if j.decision.action is not Action.REPLY or j.decision.recipient is None:
        return None
    return j.decision.recipient.email




FAKE_LINKEDIN_SIGNATURE = (
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=linkedin.com;\n"
    b"\ts=d2048-202308-00; h=From:Subject:MIME-Version:Content-Type:To:Date:X-LinkedIn-Class:\n"
    b"\t X-LinkedIn-Template:X-LinkedIn-fbl; bh=Zm9yZ2Vk; b=Zm9yZ2VkIHNpZ25hdHVyZQ==\n")


def forged(message: bytes | None = None) -> bytes:
    """``message`` signed by the attacker's own domain, with a copied LinkedIn signature field
    that verifies nowhere: what a forger sends so that any misread verdict finds a signature."""
    return FAKE_LINKEDIN_SIGNATURE + sign(message or invitation(), EVIL, EVIL_KEY[0])
