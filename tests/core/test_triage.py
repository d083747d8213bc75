"""One read of a header block: its key, whether to fetch it, and what it answers."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import default

import pytest

from modbot.triage import Triage, message_ids, references, triage

INVITATION = (b"From: LinkedIn <invitations@linkedin.com>\r\n"
              b"Message-ID: <n1.ABC@lva1-app.prod.linkedin.com> \r\n"
              b"Subject: Jordan wants to connect\r\n\r\n")


def test_notification_gives_key_and_candidate_without_references() -> None:
    """A LinkedIn notification is a candidate with its Message-ID and no references."""
    assert triage(INVITATION) == Triage("<n1.ABC@lva1-app.prod.linkedin.com>", True)


def test_unrelated_mail_is_no_candidate() -> None:
    """Mail that neither claims LinkedIn nor answers anything is left unfetched."""
    header = b"From: Dean <dean@counsel.example.edu>\r\nMessage-ID: <d1@x.edu>\r\n\r\n"
    assert triage(header) == Triage("<d1@x.edu>", False)


def test_missing_message_id_is_none() -> None:
    """Without a Message-ID the key falls back to the header bytes (None here)."""
    assert triage(b"From: someone@example.org\r\n\r\n").message_id is None


def test_answer_names_what_it_answers_both_ways() -> None:
    """An answer lists the Message-IDs of In-Reply-To and References, found by pattern for
    review mail and as the policy reads the fields for modbot's replies."""
    header = (b"From: Counselor <counselor@counsel.example.edu>\r\n"
              b"Message-ID: <a1@mail.example.edu>\r\n"
              b"In-Reply-To: <r1@counsel.example.edu>\r\n"
              b"References: <n1@linkedin.com>\r\n <r1@counsel.example.edu>\r\n\r\n")
    got = triage(header)
    assert got.candidate
    assert got.answers == ("<r1@counsel.example.edu>", "<n1@linkedin.com>",
                           "<r1@counsel.example.edu>")
    assert got.references == ("<r1@counsel.example.edu>", "<n1@linkedin.com>",
                              "<r1@counsel.example.edu>")


def test_ids_written_together_are_found_by_pattern_only() -> None:
    """References without spaces between its ids is one entry for the policy, two answers."""
    got = triage(b"From: a@example.org\r\nReferences: <a@x><b@y>\r\n\r\n")
    assert got.answers == ("<a@x>", "<b@y>")
    assert got.references == ("<a@x><b@y>",)


@pytest.mark.parametrize("header", [
    b"Message-ID: <a@b>\r\nMessage-ID: <c@d>\r\n\r\n",
    b"Message-ID:\r\n <folded@example.org>\r\n\r\n",
    b"Message-ID: =?utf-8?q?=3Cx=40y=3E?=\r\n\r\n",
    b"Message-ID: <\xff@example.org>\r\n\r\n",
    b"Content-Type:;i*\r\nMessage-ID: <m@x>\r\n\r\n",
])
def test_message_id_is_read_as_the_store_keys_it(header: bytes) -> None:
    """The Message-ID is the stdlib's reading under the default policy, as messages already
    recorded were keyed, so nothing recorded is handled twice."""
    try:
        value = BytesHeaderParser(policy=default).parsebytes(header).get("message-id")
        expected = str(value).strip() if value else None
    except Exception:  # the stdlib raises on some tiny inputs: the bytes are the key then
        expected = None
    assert triage(header).message_id == expected


def test_message_ids_are_bounded() -> None:
    """At most 50 ids are taken from an answer's fields, however many it lists."""
    assert len(message_ids([" ".join(f"<{i}@x>" for i in range(500))])) == 50


def test_references_keep_in_reply_to_whole() -> None:
    """In-Reply-To values stay whole while References entries are split on white space."""
    assert references(["<a@x> (comment)"], ["<b@y> <c@z>"]) == \
        ["<a@x> (comment)", "<b@y>", "<c@z>"]
