"""Review mode: the counselor decides waiting replies from the terminal or from the mailbox."""

from __future__ import annotations

import email
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from pathlib import Path

import dkim
import pytest
from sqlalchemy import select
from support import configs, linkedin_mail, servers
from support.configs import CONTACT, COUNSELOR, TRUSTED
from support.rows import message_row, reply_row
from typer.testing import CliRunner

from modbot import render, review, words
from modbot.cli import app
from modbot.config import Account, ImapSettings, SmtpSettings
from modbot.mailbox import Mailbox
from modbot.model import Mode, Person, PolicyRule, Recipient
from modbot.outbox import send_one
from modbot.poll import Context, Poller
from modbot.store import OutboxStatus, Store, schema

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
DOMAIN = "counsel.example.edu"
ACCOUNT = "counselor@127.0.0.1"
PASS = f"{TRUSTED}; dkim=pass header.d={DOMAIN}; dmarc=pass header.from={DOMAIN}"
DATA = Path(__file__).parents[1] / "data"
OTHER_TOKEN = "MR-" + "0" * 32
runner = CliRunner()


def settings_for(imap: ImapSettings, smtp: SmtpSettings, tmp_path: Path) -> Account:
    return configs.account(tmp_path, imap, smtp, policy={"mode": Mode.REVIEW})


@pytest.fixture
def settings(tmp_path: Path) -> Account:
    """Settings in review mode for tests that reach no mail server."""
    return settings_for(ImapSettings(host="127.0.0.1", username="counselor"),
                        SmtpSettings(host="127.0.0.1"), tmp_path)


@pytest.fixture
def db(settings: Account) -> Iterator[Store]:
    opened = Store.open(settings.database.url)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def templates() -> render.Templates:
    return render.Templates.load()


def wait(db: Store, n: int, name: str = "Jordan Rivera") -> int:
    """Record a notification whose reply waits for review; return the reply's number."""
    item = db.record(
        message_row(f"key{n}", ACCOUNT, uid=n, seen_at=NOW, person_name=name,
                    invitation_id=None, reasons=[f"{name} invited you."]),
        reply_row(f"<reply{n}@{DOMAIN}>", OutboxStatus.REVIEW, recipient_name=name,
                  recipient_email=f"person{n}@students.example.edu",
                  created_at=NOW - timedelta(hours=3)))
    assert item is not None
    return item


def status(db: Store, item: int) -> str:
    with db.engine.connect() as c:
        return str(c.execute(select(schema.outbox.c.status)
                             .where(schema.outbox.c.id == item)).scalar_one())


def review_email(db: Store, settings: Account, templates: render.Templates,
                 now: datetime = NOW) -> EmailMessage:
    message = review.build_review_email(db, settings, templates, now,
                                        render.make_message_id(DOMAIN))
    assert message is not None
    return message


def answer_to(mail: EmailMessage, body: str, *, sender: str = COUNSELOR,
              authres: str | None = PASS, in_reply_to: bool = True, token: str | None = None,
              extra: Mapping[str, str] | None = None) -> bytes:
    """The counselor's answer to ``mail`` as a mail client writes it, quoting the original."""
    part = mail.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    quoted = "\n".join(f"> {line}" for line in part.get_content().splitlines())
    text = f"{body}\n\nOn Mon, Nov 23, 2026 at 12:00 PM modbot <{COUNSELOR}> wrote:\n{quoted}\n"
    subject = f"Re: {mail['Subject']}"
    if token is not None:
        text, subject = (re.sub(r"MR-[0-9a-f]{32}", token, s) for s in (text, subject))
    answer = EmailMessage()
    if authres:
        answer["Authentication-Results"] = authres
        # The signature the trusted server reports on (it is not verified here).
        answer["DKIM-Signature"] = (f"v=1; a=rsa-sha256; d={DOMAIN}; s=s1; h=From:To:Subject; "
                                    "bh=Zml4dHVyZQ==; b=Zml4dHVyZQ==")
    answer["From"] = sender
    answer["To"] = COUNSELOR
    answer["Subject"] = subject
    answer["Date"] = format_datetime(LATER)
    answer["Message-ID"] = f"<{uuid.uuid4().hex}@{DOMAIN}>"
    if in_reply_to:
        answer["In-Reply-To"] = mail["Message-ID"]
    answer["References"] = mail["Message-ID"]
    for name, value in (extra or {}).items():
        answer[name] = value
    answer.set_content(text)
    return bytes(answer)


# --- deciding from the terminal ---------------------------------------------------------------


def test_waiting_shows_kind_person_recipient_age_and_reason(db: Store) -> None:
    """Each waiting reply is listed with what the counselor needs to decide it."""
    item = wait(db, 1)
    (row,) = review.waiting(db, ACCOUNT, NOW)
    assert (row.id, row.kind, row.person) == (item, "connection_invitation", "Jordan Rivera")
    assert row.recipient == "person1@students.example.edu"
    assert review.age_text(row.age) == "3 h"
    assert row.reason == "Jordan Rivera invited you."


def test_approve_queues_under_the_same_message_id(db: Store) -> None:
    """An approved reply is queued for the next poll and keeps its fixed Message-ID."""
    item = wait(db, 1)
    outcome = review.approve(db, ACCOUNT, [item], NOW)
    assert outcome.approved == (item,)
    (due,) = db.due(ACCOUNT, NOW)
    assert (due.id, due.message_id) == (item, f"<reply1@{DOMAIN}>")


def test_reject_never_sends_and_resolves_the_notification(db: Store) -> None:
    """A rejected reply is never due and its notification no longer waits for anyone."""
    item = wait(db, 1)
    assert review.reject(db, ACCOUNT, None, NOW).rejected == (item,)
    assert status(db, item) == OutboxStatus.REJECTED
    assert db.due(ACCOUNT, NOW) == []
    assert db.open_items(ACCOUNT) == []


def test_numbers_that_do_not_wait_are_reported(db: Store) -> None:
    """A number that names no waiting reply is left alone and said so in one sentence."""
    item = wait(db, 1)
    review.approve(db, ACCOUNT, [item], NOW)
    outcome = review.reject(db, ACCOUNT, [item, 99], NOW)
    assert outcome.rejected == ()
    assert outcome.findings == (
        f"Number {item} does not wait for review, so it was left alone.",
        "Number 99 does not wait for review, so it was left alone.")
    assert status(db, item) == OutboxStatus.QUEUED


def test_readdress_changes_where_a_waiting_reply_goes(db: Store) -> None:
    """A corrected address replaces the recipient of a waiting reply."""
    item = wait(db, 1)
    assert review.readdress(db, ACCOUNT, item, " jordan.rivera@students.example.edu ")
    assert review.waiting(db, ACCOUNT, NOW)[0].recipient == "jordan.rivera@students.example.edu"


@pytest.mark.parametrize("address", [
    "a@example.edu, b@example.edu", "Jordan <j@example.edu>", "no-at-sign", "j@localhost",
    "jörg@example.edu", "j@example.edu\r\nBcc: x@example.edu",
])
def test_readdress_refuses_anything_but_one_plain_address(db: Store, address: str) -> None:
    """Lists, display names, bare hosts, non-ASCII and header breaks are refused."""
    item = wait(db, 1)
    with pytest.raises(ValueError):
        review.readdress(db, ACCOUNT, item, address)
    assert review.waiting(db, ACCOUNT, NOW)[0].recipient == "person1@students.example.edu"


def test_preview_is_the_text_that_would_be_sent(db: Store, settings: Account,
                                                templates: render.Templates) -> None:
    """`show` prints exactly the plain text the reply carries when it is sent."""
    item = wait(db, 1)
    found = review.preview(db, settings, templates, item)
    assert found is not None
    sent = render.reply_message(
        templates, template="connection_invitation", counselor=settings.counselor,
        recipient=Recipient("Jordan Rivera", "person1@students.example.edu", "outbox"),
        person=Person(name="Jordan Rivera"), message_id=f"<reply1@{DOMAIN}>", date=NOW)
    parsed = email.message_from_bytes(sent.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(preferencelist=("plain",))
    assert isinstance(body, EmailMessage)
    assert found == ("person1@students.example.edu", body.get_content().rstrip("\n"))


# --- the review email -------------------------------------------------------------------------


def test_no_review_email_when_nothing_waits(db: Store, settings: Account,
                                            templates: render.Templates) -> None:
    """With no waiting reply there is nothing to send."""
    assert review.build_review_email(db, settings, templates, NOW, f"<r@{DOMAIN}>") is None


def test_review_email_at_most_once_per_interval(db: Store, settings: Account,
                                                templates: render.Templates) -> None:
    """A second review email waits until 24 hours after the first."""
    wait(db, 1)
    review_email(db, settings, templates)
    assert review.build_review_email(db, settings, templates, NOW + timedelta(hours=23),
                                     f"<r2@{DOMAIN}>") is None
    assert review.build_review_email(db, settings, templates, NOW + timedelta(hours=24),
                                     f"<r3@{DOMAIN}>") is not None


def test_unsent_review_email_is_built_again(db: Store, settings: Account,
                                            templates: render.Templates) -> None:
    """A review email that could not be sent does not hold back the next attempt."""
    wait(db, 1)
    first = review_email(db, settings, templates)
    review.review_email_failed(db, first["Message-ID"])
    assert review.build_review_email(db, settings, templates, LATER, f"<r2@{DOMAIN}>")


def test_token_is_stored_only_as_its_hash(db: Store, settings: Account,
                                          templates: render.Templates) -> None:
    """The database holds the SHA-256 of the token, never the token itself."""
    wait(db, 1)
    mail = review_email(db, settings, templates)
    token = re.findall(r"MR-([0-9a-f]{32})", str(mail["Subject"]))[0]
    with db.engine.connect() as c:
        (row,) = c.execute(select(schema.review_mails)).all()
    assert token not in repr(tuple(row))
    assert row.token_hash == review._hash(token)


def test_review_email_lists_numbers_and_the_reply_text(db: Store, settings: Account,
                                                       templates: render.Templates) -> None:
    """The email names each waiting reply by number and shows what it says."""
    first, second = wait(db, 1), wait(db, 2, "Sam Okafor")
    mail = review_email(db, settings, templates)
    assert mail["To"].addresses[0].addr_spec == COUNSELOR
    assert mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_content()
    assert f"#{first}" in text and f"#{second}" in text and "Sam Okafor" in text
    assert CONTACT in text


@pytest.mark.parametrize("lines", [slice(None), slice(1, None)], ids=["whole", "no-first-line"])
def test_review_email_never_reads_as_a_decision(db: Store, settings: Account,
                                                templates: render.Templates,
                                                lines: slice) -> None:
    """The review email's own text, quoted without '>', holds no approve or reject line."""
    wait(db, 1)
    text = review_email(db, settings, templates).get_content()
    assert review.commands("\n".join(text.splitlines()[lines])) == ([], [])


@pytest.mark.parametrize(("text", "expected"), [
    ("approve 2 5", ([2, 5], [])),
    ("Reject 3.", ([], [3])),
    ("approve all", (["all"], [])),
    ("approve 2, 5\nreject 3", ([2, 5], [3])),
    ("Thanks!\n\n  approve 2", ([2], [])),
    ("please approve 2", ([], [])),
    ("> approve 2", ([], [])),
    ("On Mon, Nov 23, 2026 modbot wrote:\napprove 2", ([], [])),
    ("-----Original Message-----\napprove 2", ([], [])),
])
def test_commands(text: str, expected: tuple[list[object], list[object]]) -> None:
    """Only the answer's own whole lines above any quotation are decisions."""
    assert review.commands(text) == expected


# --- answers, offline -------------------------------------------------------------------------


def test_named_number_wins_over_all(db: Store, settings: Account,
                                    templates: render.Templates) -> None:
    """"approve all" with "reject N" approves every listed reply but N, which is rejected."""
    first, second = wait(db, 1), wait(db, 2, "Sam Okafor")
    mail = review_email(db, settings, templates)
    outcome = review.handle_answer(db, settings, answer_to(mail, f"approve all\nreject {second}"),
                                   LATER, None)
    assert (outcome.approved, outcome.rejected) == ((first,), (second,))


def test_all_means_only_what_the_email_listed(db: Store, settings: Account,
                                              templates: render.Templates) -> None:
    """A reply that began waiting after the email was sent is not approved by "all"."""
    first = wait(db, 1)
    mail = review_email(db, settings, templates)
    newer = wait(db, 2, "Sam Okafor")
    outcome = review.handle_answer(db, settings, answer_to(mail, "approve all"), LATER, None)
    assert outcome.approved == (first,)
    assert status(db, newer) == OutboxStatus.REVIEW


def test_number_not_in_the_email_is_reported(db: Store, settings: Account,
                                             templates: render.Templates) -> None:
    """A number the email did not list is named in a finding and nothing happens to it."""
    wait(db, 1)
    mail = review_email(db, settings, templates)
    outcome = review.handle_answer(db, settings, answer_to(mail, "approve 99"), LATER, None)
    assert outcome.approved == ()
    assert "Number 99 was not in that review email, so nothing was done with it." in \
        outcome.findings


def test_automatic_answer_is_ignored(db: Store, settings: Account,
                                     templates: render.Templates) -> None:
    """An out-of-office reply, however authentic, decides nothing."""
    item = wait(db, 1)
    mail = review_email(db, settings, templates)
    raw = answer_to(mail, "approve all", extra={"Auto-Submitted": "auto-replied"})
    outcome = review.handle_answer(db, settings, raw, LATER, None)
    assert not outcome.acted and "Auto-Submitted" in outcome.findings[0]
    assert status(db, item) == OutboxStatus.REVIEW


def test_display_name_spelling_the_counselor_is_not_the_counselor(
        db: Store, settings: Account, templates: render.Templates) -> None:
    """Encoded words that decode to the counselor's address around another one do not count."""
    item = wait(db, 1)
    mail = review_email(db, settings, templates)
    # Decoded, this reads "counselor@counsel.example.edu ( <jrivera@...> )": a comment after it.
    spelled = (b"From: =?utf-8?q?counselor=40counsel=2Eexample=2Eedu_=28?= "
               b"<jrivera@students.example.edu> =?utf-8?q?=29?=")
    raw = answer_to(mail, "approve all").replace(f"From: {COUNSELOR}".encode(), spelled, 1)
    outcome = review.handle_answer(db, settings, raw, LATER, None)
    assert not outcome.acted and "does not come from" in outcome.findings[0]
    assert status(db, item) == OutboxStatus.REVIEW


def test_answer_without_decisions_keeps_the_token(db: Store, settings: Account,
                                                  templates: render.Templates) -> None:
    """An answer with no decision line uses nothing up; a later answer still counts."""
    item = wait(db, 1)
    mail = review_email(db, settings, templates)
    first = review.handle_answer(db, settings, answer_to(mail, "Will look tomorrow."), LATER, None)
    assert not first.acted
    assert review.handle_answer(db, settings, answer_to(mail, "approve all"), LATER,
                                None).approved == (item,)


def test_expired_token_is_ignored(db: Store, settings: Account,
                                  templates: render.Templates) -> None:
    """An answer arriving after the token's 72 hours decides nothing."""
    item = wait(db, 1)
    mail = review_email(db, settings, templates)
    outcome = review.handle_answer(db, settings, answer_to(mail, "approve all"),
                                   NOW + timedelta(hours=72), None)
    assert not outcome.acted and "expired" in outcome.findings[0]
    assert status(db, item) == OutboxStatus.REVIEW


@pytest.fixture(scope="module")
def key() -> tuple[bytes, bytes]:
    """A throwaway RSA key: PEM private key and DNS TXT record."""
    return linkedin_mail.new_key()


@pytest.mark.parametrize(("signer", "approved"), [(DOMAIN, True), ("example.edu", True),
                                                  ("students.example.edu", False)])
def test_dkim_checked_here_for_the_counselors_domain(
        db: Store, settings: Account, templates: render.Templates, key: tuple[bytes, bytes],
        signer: str, approved: bool) -> None:
    """Without trusted results a verified signature of the counselor's domain (or parent) counts."""
    item = wait(db, 1)
    mail = review_email(db, settings, templates)
    raw = answer_to(mail, "approve all", authres=None)
    headers = [b"from", b"to", b"subject", b"date", b"in-reply-to", b"message-id"]
    signed = dkim.sign(raw, b"sel", signer.encode(), key[0], include_headers=headers) + raw

    def lookup(name: bytes) -> bytes | None:
        return key[1] if name == f"sel._domainkey.{signer}.".encode() else None

    outcome = review.handle_answer(db, settings, signed, LATER, lookup)
    assert outcome.approved == ((item,) if approved else ())


def test_is_review_answer_only_for_answers(db: Store, settings: Account,
                                           templates: render.Templates) -> None:
    """The cheap header check knows answers to review emails from everything else."""
    wait(db, 1)
    mail = review_email(db, settings, templates)
    answer = answer_to(mail, "approve all")
    assert review.is_review_answer(answer.split(b"\n\n", 1)[0] + b"\n\n", db)
    assert not review.is_review_answer(bytes(mail), db)
    assert not review.is_review_answer((DATA / "reply_from_student.eml").read_bytes(), db)


# --- answers to the digest, offline -----------------------------------------------------------


def held_item(db: Store, n: int, name: str = "Priya Natarajan") -> int:
    """Record an invitation held for want of an address; return its number (message row)."""
    db.record(message_row(f"held{n}", ACCOUNT, uid=100 + n, seen_at=NOW, person_name=name,
                          invitation_id=None, address_source=None, action="hold",
                          policy_rule=PolicyRule.NO_ADDRESS,
                          reasons=["no address to reply to"]), None)
    return next(i.id for i in db.open_items(ACCOUNT) if i.message_key == f"held{n}")


def plain(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def open_numbers(db: Store, account: str = ACCOUNT) -> list[int]:
    return [i.id for i in db.open_items(account)]


def digest_mail(db: Store, settings: Account, templates: render.Templates,
                now: datetime = NOW) -> EmailMessage:
    """The weekly digest as the daemon builds it, its token recorded for its numbered items."""
    from modbot import digest

    message_id = render.make_message_id(DOMAIN)
    data = digest.gather(db, settings, now)
    reference = review.register_digest(db, settings, message_id, digest.listed(data), now)
    return digest.build(data, templates, settings.counselor, now=now, message_id=message_id,
                        reference=reference)


@pytest.mark.parametrize(("text", "expected"), [
    ("resolve 3 4", ([3, 4], False)),
    ("Resolve #3, #4.", ([3, 4], False)),
    ("resolve all\nresume", (["all"], True)),
    ("thanks!\nresolve 3", ([3], False)),
    ("> resolve 3", ([], False)),
    ('Answer with "resolve 3"', ([], False)),
])
def test_digest_commands(text: str, expected: tuple[list[object], bool]) -> None:
    """Only whole "resolve" and "resume" lines above any quotation count."""
    assert review.digest_commands(text) == expected


def test_answer_to_the_digest_resolves_the_named_items(
        db: Store, settings: Account, templates: render.Templates) -> None:
    """"resolve N" closes item N, listed in that digest, and leaves the others held."""
    first, second = held_item(db, 1), held_item(db, 2, "Kim Ito")
    mail = digest_mail(db, settings, templates)
    outcome = review.handle_answer(db, settings, answer_to(mail, f"resolve {first}"), LATER,
                                   None)
    assert outcome.acted and outcome.resolved == (first,)
    assert outcome.findings[0] == "The counselor's answer to the digest resolved 1 held item."
    assert open_numbers(db) == [second]


def test_resolve_all_means_only_what_the_digest_listed(
        db: Store, settings: Account, templates: render.Templates) -> None:
    """An item held after the digest went out is not closed by "resolve all"."""
    first = held_item(db, 1)
    mail = digest_mail(db, settings, templates)
    newer = held_item(db, 2, "Kim Ito")
    outcome = review.handle_answer(db, settings, answer_to(mail, "resolve all"), LATER, None)
    assert outcome.resolved == (first,)
    assert open_numbers(db) == [newer]


def test_resolving_a_reply_waiting_for_review_rejects_it(
        db: Store, settings: Account, templates: render.Templates) -> None:
    """An item the counselor dealt with by hand is never sent afterwards."""
    reply = wait(db, 1)
    mail = digest_mail(db, settings, templates)
    review.handle_answer(db, settings, answer_to(mail, "resolve all"), LATER, None)
    assert status(db, reply) == OutboxStatus.REJECTED
    assert open_numbers(db) == []


def test_number_not_in_the_digest_is_reported(
        db: Store, settings: Account, templates: render.Templates) -> None:
    """A number the digest did not list is named in a finding and nothing happens to it."""
    held_item(db, 1)
    mail = digest_mail(db, settings, templates)
    outcome = review.handle_answer(db, settings, answer_to(mail, "resolve 99"), LATER, None)
    assert "Number 99 was not in that digest, so nothing was done with it." in outcome.findings
    assert len(open_numbers(db)) == 1


def test_resume_from_the_digest_ends_the_pause(
        db: Store, settings: Account, templates: render.Templates) -> None:
    """"resume" in an answer to the digest starts automatic replies again."""
    db.start_pause(settings.account, "the hourly cap of 20 replies is reached", NOW,
                   f"<alert@{DOMAIN}>")
    mail = digest_mail(db, settings, templates)
    assert "answer this email with the word resume" in plain(mail)
    outcome = review.handle_answer(db, settings, answer_to(mail, "resume"), LATER, None)
    assert outcome.acted and outcome.resumed
    assert db.active_pause(settings.account) is None


@pytest.mark.parametrize(("forgery", "finding"), [
    ({"sender": "jrivera@students.example.edu"}, f"does not come from {COUNSELOR}"),
    ({"authres": f"{TRUSTED}; dkim=pass header.d=students.example.edu"},
     f"reports no DKIM pass for {DOMAIN}"),
    ({"token": OTHER_TOKEN}, "does not carry that digest's reference"),
    ({"in_reply_to": False}, "not In-Reply-To a review email, digest or pause alert"),
], ids=["sender", "other-domain", "token", "not-in-reply-to"])
def test_forged_answer_to_the_digest_is_ignored(
        db: Store, settings: Account, templates: render.Templates,
        forgery: dict[str, object], finding: str) -> None:
    """An answer to the digest passes the same checks as an answer to a review email."""
    held_item(db, 1)
    mail = digest_mail(db, settings, templates)
    outcome = review.handle_answer(db, settings, answer_to(mail, "resolve all", **forgery),
                                   LATER, None)
    assert not outcome.acted
    assert [f for f in outcome.findings if finding in f], outcome.findings
    assert len(open_numbers(db)) == 1


def test_digest_reference_is_used_once(db: Store, settings: Account,
                                       templates: render.Templates) -> None:
    """A second answer to the same digest is ignored: its token decides once."""
    first, second = held_item(db, 1), held_item(db, 2, "Kim Ito")
    mail = digest_mail(db, settings, templates)
    review.handle_answer(db, settings, answer_to(mail, f"resolve {first}"), LATER, None)
    again = review.handle_answer(db, settings, answer_to(mail, f"resolve {second}"), LATER,
                                 None)
    assert not again.acted and "already used" in again.findings[0]
    assert open_numbers(db) == [second]


# --- answering the pause alert ---------------------------------------------------------------


def pause_alert(db: Store, settings: Account, now: datetime = NOW) -> EmailMessage:
    """Pause the replies as a reached cap does; return the alert as delivery sends it."""
    from modbot.delivery import alert_message

    pause = db.start_pause(settings.account, "the hourly cap of 20 replies is reached", now,
                           render.make_message_id(DOMAIN))
    reference = review.register_pause_alert(db, settings, pause.alert_message_id, pause.id, now)
    return alert_message(settings, pause, now, reference)


def test_pause_alert_says_to_answer_it_with_resume(db: Store, settings: Account) -> None:
    """The alert tells the counselor to answer it with "resume", and IT what to run; no line of
    it reads as the command itself when a client quotes it without ">"."""
    mail = pause_alert(db, settings)
    text = plain(mail)
    assert 'answer this email with "resume"' in " ".join(text.split())
    assert "    modbot resume\n" in text and re.search(r"MR-[0-9a-f]{32}", str(mail["Subject"]))
    assert review.digest_commands(text) == ([], False)


def test_resume_from_the_pause_alert_ends_the_pause(db: Store, settings: Account) -> None:
    """"resume" in an authentic answer to the pause alert starts automatic replies again."""
    mail = pause_alert(db, settings)
    outcome = review.handle_answer(db, settings, answer_to(mail, "resume"), LATER, None)
    assert outcome.acted and outcome.resumed, outcome.findings
    assert outcome.findings[0] == ("The counselor's answer to the pause alert started automatic "
                                   "replies again.")
    assert db.active_pause(settings.account) is None


@pytest.mark.parametrize(("forgery", "finding"), [
    ({"sender": "jrivera@students.example.edu"}, f"does not come from {COUNSELOR}"),
    ({"authres": f"{TRUSTED}; dkim=pass header.d=students.example.edu"},
     f"reports no DKIM pass for {DOMAIN}"),
    ({"token": OTHER_TOKEN}, "does not carry that pause alert's reference"),
    ({"in_reply_to": False}, "not In-Reply-To a review email, digest or pause alert"),
    ({"extra": {"Auto-Submitted": "auto-replied"}}, "sent automatically"),
], ids=["sender", "other-domain", "token", "not-in-reply-to", "auto-submitted"])
def test_forged_answer_to_the_pause_alert_is_ignored(
        db: Store, settings: Account, forgery: dict[str, object], finding: str) -> None:
    """An answer to the pause alert passes the same checks as an answer to the digest."""
    mail = pause_alert(db, settings)
    outcome = review.handle_answer(db, settings, answer_to(mail, "resume", **forgery), LATER,
                                   None)
    assert not outcome.acted and not outcome.resumed
    assert [f for f in outcome.findings if finding in f], outcome.findings
    assert db.active_pause(settings.account) is not None


def test_pause_alert_reference_is_used_once(db: Store, settings: Account) -> None:
    """A second "resume" to the same alert is ignored, even when replies paused again since."""
    mail = pause_alert(db, settings)
    review.handle_answer(db, settings, answer_to(mail, "resume"), LATER, None)
    db.start_pause(settings.account, "the daily cap of 100 replies is reached", LATER,
                   render.make_message_id(DOMAIN))
    again = review.handle_answer(db, settings, answer_to(mail, "resume"), LATER, None)
    assert not again.acted and "already used" in again.findings[0]
    assert db.active_pause(settings.account) is not None


def test_old_pause_alert_does_not_end_a_newer_pause(db: Store, settings: Account) -> None:
    """An answer to the alert of a pause already ended leaves a later pause, which has its own
    alert, in force."""
    mail = pause_alert(db, settings)
    db.resume(settings.account, NOW + timedelta(minutes=10))
    db.start_pause(settings.account, "the daily cap of 100 replies is reached",
                   NOW + timedelta(minutes=20), render.make_message_id(DOMAIN))
    outcome = review.handle_answer(db, settings, answer_to(mail, "resume"), LATER, None)
    assert not outcome.resumed and "after that pause had ended" in outcome.findings[0]
    assert db.active_pause(settings.account) is not None


def test_answer_to_the_pause_alert_without_resume_does_nothing(db: Store,
                                                                settings: Account) -> None:
    """An answer that says something else keeps the token for a later "resume"."""
    mail = pause_alert(db, settings)
    first = review.handle_answer(db, settings, answer_to(mail, "resolve all"), LATER, None)
    assert not first.acted and "held no resume line" in first.findings[0]
    assert review.handle_answer(db, settings, answer_to(mail, "resume"), LATER, None).resumed


def test_pause_alert_without_a_reference_points_to_the_digest(db: Store,
                                                               settings: Account) -> None:
    """An alert built without a token says to answer the next digest, or ask IT."""
    from modbot.delivery import alert_message

    pause = db.start_pause(settings.account, "the hourly cap of 20 replies is reached", NOW,
                           render.make_message_id(DOMAIN))
    text = " ".join(plain(alert_message(settings, pause, NOW)).split())
    assert 'answer the next weekly digest with "resume"' in text
    assert "ask IT to run this on the server: modbot resume" in text


# --- the command line -------------------------------------------------------------------------


def write_config(settings: Account, tmp_path: Path) -> Path:
    return configs.write_config(tmp_path, imap={"password_env": None},
                                database={"url": settings.database.url})


def test_cli_lists_waiting_replies(db: Store, settings: Account, tmp_path: Path) -> None:
    """`modbot review` shows a table with the number, the kind in words, the person and the
    recipient of each reply."""
    item = wait(db, 1, "Jo [bold]Rivera")
    result = runner.invoke(app, ["--config", str(write_config(settings, tmp_path)), "review"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert str(item) in result.output
    assert "Jo [bold]Rivera" in result.output  # printed as written, never as markup
    assert words.kind_label("connection_invitation") in result.output
    assert "connection invitation" not in result.output  # the identifier, spaced out


def test_cli_approve_all(db: Store, settings: Account, tmp_path: Path) -> None:
    """`modbot review approve --all` queues every waiting reply."""
    first, second = wait(db, 1), wait(db, 2, "Sam Okafor")
    config = str(write_config(settings, tmp_path))
    result = runner.invoke(app, ["--config", config, "review", "approve", "--all"])
    assert result.exit_code == 0, result.output
    assert "2 replies approved" in result.output
    assert [i.id for i in db.due(ACCOUNT, NOW)] == [first, second]


def test_cli_resolve_unknown_number_fails(db: Store, settings: Account,
                                          tmp_path: Path) -> None:
    """`modbot resolve 99` for no such item says so and exits 1, resolving what it can."""
    item = held_item(db, 1)
    config = str(write_config(settings, tmp_path))
    result = runner.invoke(app, ["--config", config, "resolve", str(item), "99"])
    assert result.exit_code == 1
    assert "1 item resolved" in result.output
    assert "Number 99 is not a held item" in result.output
    assert open_numbers(db) == []


def test_cli_reject_unknown_number_fails(db: Store, settings: Account, tmp_path: Path) -> None:
    """Rejecting a number that does not wait says so and exits 1."""
    config = str(write_config(settings, tmp_path))
    result = runner.invoke(app, ["--config", config, "review", "reject", "7"])
    assert result.exit_code == 1
    assert "Number 7 does not wait for review" in result.output


def test_cli_show_prints_the_reply(db: Store, settings: Account, tmp_path: Path) -> None:
    """`modbot review show ID` prints the recipient and the reply with the contact route."""
    item = wait(db, 1)
    config = str(write_config(settings, tmp_path))
    result = runner.invoke(app, ["--config", config, "review", "show", str(item)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("To: person1@students.example.edu\n")
    assert CONTACT in result.output


def test_cli_edit_changes_the_address(db: Store, settings: Account, tmp_path: Path) -> None:
    """`modbot review edit ID --to ADDRESS` readdresses the waiting reply."""
    item = wait(db, 1)
    config = str(write_config(settings, tmp_path))
    result = runner.invoke(app, ["--config", config, "review", "edit", str(item),
                                 "--to", "jordan@students.example.edu"])
    assert result.exit_code == 0, result.output
    (item_,) = db.items(ACCOUNT, OutboxStatus.REVIEW)
    assert item_.recipient_email == "jordan@students.example.edu"


def test_cli_edit_help_says_why_only_the_address(tmp_path: Path) -> None:
    """`edit --help` tells the counselor that the words cannot change for one person."""
    result = runner.invoke(app, ["review", "edit", "--help"])
    assert result.exit_code == 0
    assert "--to" in result.output and "same reply" in result.output


# --- end to end on Dovecot and aiosmtpd -------------------------------------------------------


@pytest.fixture
def context(imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, tmp_path: Path,
            ca_file: Path) -> Context:
    """A poll context in review mode whose inbox holds two notifications that need a reply."""
    settings = settings_for(imap_user.imap_settings(sent_folder="Sent"),
                            smtp_server.smtp_settings(), tmp_path)
    ctx = configs.poll_context(settings, ca_file)
    for name in ("invitation_current_jordan_rivera.eml", "message_sam_okafor_relay.eml"):
        imap_user.append("INBOX", (DATA / name).read_bytes())
    return ctx


async def mailed_review(ctx: Context, smtp: servers.SmtpServer) -> EmailMessage:
    """Poll, build the review email, send it through aiosmtpd, and return what arrived."""
    await Poller(ctx).poll(NOW)
    assert len(review.waiting(ctx.store, ctx.settings.account, NOW)) == 2
    message = review.build_review_email(ctx.store, ctx.settings, ctx.templates, NOW,
                                        render.make_message_id(DOMAIN))
    assert message is not None
    await send_one(message, ctx.settings.smtp, ctx.smtp_tls)
    (arrived,) = smtp.messages
    assert arrived.recipients == (COUNSELOR,)
    parsed = email.message_from_bytes(arrived.data, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def answers_in_inbox(ctx: Context) -> list[bytes]:
    """What modbot's Mailbox finds in the inbox that answers a review email."""
    with Mailbox(ctx.settings.imap, ctx.imap_tls) as mailbox:
        mailbox.select("INBOX")
        headers = mailbox.fetch_headers(mailbox.uids_after(0))
        uids = [uid for uid, h in sorted(headers.items()) if review.is_review_answer(h, ctx.store)]
        found = mailbox.fetch_messages(uids)
    return [found[uid] for uid in uids]


async def test_answer_from_the_mailbox_approves_and_the_poll_sends(
        context: Context, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer) -> None:
    """An authentic "approve all" answer queues both replies and the next poll sends them."""
    mail = await mailed_review(context, smtp_server)
    fixed = {i.recipient_email: i.message_id
             for i in context.store.items(context.settings.account, OutboxStatus.REVIEW)}
    imap_user.append("INBOX", answer_to(mail, "approve all"))
    (raw,) = answers_in_inbox(context)
    outcome = review.handle_answer(context.store, context.settings, raw, LATER, None)
    assert outcome.acted and len(outcome.approved) == 2
    await Poller(context).poll(LATER + timedelta(minutes=5))
    replies = smtp_server.messages[1:]
    sent = {r.recipients[0]: email.message_from_bytes(r.data)["Message-ID"] for r in replies}
    assert sent == fixed


@pytest.mark.parametrize(("forgery", "finding"), [
    ({"sender": "jrivera@students.example.edu"}, f"does not come from {COUNSELOR}"),
    ({"authres": None}, "no trusted Authentication-Results"),
    ({"authres": f"mx.attacker.example; dkim=pass header.d={DOMAIN}"},
     "no trusted Authentication-Results"),
    ({"authres": f"{TRUSTED}; dkim=pass header.d=students.example.edu"},
     f"reports no DKIM pass for {DOMAIN}"),
    ({"token": OTHER_TOKEN}, "does not carry that review email's reference"),
    ({"in_reply_to": False}, "not In-Reply-To a review email"),
], ids=["sender", "unauthenticated", "untrusted", "other-domain", "token", "not-in-reply-to"])
async def test_forged_answer_is_ignored_and_reported(
        context: Context, imap_user: servers.ImapUser, smtp_server: servers.SmtpServer,
        forgery: dict[str, object], finding: str) -> None:
    """An answer failing one check decides nothing and the finding says which check."""
    mail = await mailed_review(context, smtp_server)
    imap_user.append("INBOX", answer_to(mail, "approve all", **forgery))
    (raw,) = answers_in_inbox(context)
    outcome = review.handle_answer(context.store, context.settings, raw, LATER, None)
    assert not outcome.acted
    assert [f for f in outcome.findings if finding in f], outcome.findings
    assert len(review.waiting(context.store, context.settings.account, LATER)) == 2


async def test_reused_token_is_ignored(context: Context, imap_user: servers.ImapUser,
                                       smtp_server: servers.SmtpServer) -> None:
    """A second answer with the same token is ignored, so one token decides once."""
    mail = await mailed_review(context, smtp_server)
    first, second = (w.id for w in review.waiting(context.store, context.settings.account, NOW))
    imap_user.append("INBOX", answer_to(mail, f"approve {first}"))
    imap_user.append("INBOX", answer_to(mail, f"approve {second}"))
    outcomes = [review.handle_answer(context.store, context.settings, raw, LATER, None)
                for raw in answers_in_inbox(context)]
    assert [o.approved for o in outcomes] == [(first,), ()]
    assert "already used" in outcomes[1].findings[0]
    left = review.waiting(context.store, context.settings.account, LATER)
    assert [w.id for w in left] == [second]


async def test_answer_to_the_mailed_digest_resolves_at_the_next_poll(
        imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, tmp_path: Path,
        ca_file: Path) -> None:
    """The daemon mails the digest; the counselor answers "resolve N" from the mailbox; the next
    poll closes item N and leaves nothing held."""
    from modbot.daemon import send_digest_if_due

    settings = settings_for(imap_user.imap_settings(), smtp_server.smtp_settings(), tmp_path)
    ctx = configs.poll_context(settings, ca_file)
    imap_user.append("INBOX", (DATA / "invitation_current_priya_natarajan.eml").read_bytes())
    await Poller(ctx).poll(NOW)
    (item,) = open_numbers(ctx.store, settings.account)
    assert await send_digest_if_due(ctx, NOW, force=True)
    (arrived,) = smtp_server.messages
    mail = email.message_from_bytes(arrived.data, policy=default_policy)
    assert isinstance(mail, EmailMessage)
    assert f"[#{item} · No address found] Priya Natarajan" in plain(mail)
    imap_user.append("INBOX", answer_to(mail, f"resolve {item}"))
    await Poller(ctx).poll(LATER)
    assert open_numbers(ctx.store, settings.account) == []


async def test_answer_to_the_mailed_pause_alert_resumes_at_the_next_poll(
        imap_user: servers.ImapUser, smtp_server: servers.SmtpServer, tmp_path: Path,
        ca_file: Path) -> None:
    """The poll mails the pause alert through aiosmtpd; the counselor answers "resume" from the
    mailbox; the next poll ends the pause and records the answer as handled."""
    settings = settings_for(imap_user.imap_settings(), smtp_server.smtp_settings(), tmp_path)
    ctx = configs.poll_context(settings, ca_file)
    ctx.store.start_pause(settings.account, "the hourly cap of 20 replies is reached", NOW,
                          render.make_message_id(DOMAIN))
    await Poller(ctx).poll(NOW)
    (arrived,) = smtp_server.messages
    mail = email.message_from_bytes(arrived.data, policy=default_policy)
    assert isinstance(mail, EmailMessage) and mail["Subject"].startswith("modbot has paused")
    imap_user.append("INBOX", answer_to(mail, "resume"))
    report = await Poller(ctx).poll(LATER)
    assert ctx.store.active_pause(settings.account) is None
    (handled,) = report.handled
    assert handled.rule == PolicyRule.REVIEW_ANSWER
    assert handled.reasons[0].endswith("replies again.")
