"""Review by email: the counselor approves or rejects waiting replies from the mailbox.

``build_review_email`` lists the replies that wait for review (``modbot.review_queue``) with a
one-time token; ``handle_answer`` acts on the counselor's answer holding lines such as
"approve 2 5", "reject 3" or "approve all", through ``review_queue.decide``. The commands that do
the same by hand (``approve``, ``reject``, ``readdress``, ``waiting``, ``preview``) live in
``modbot.review_queue`` and are importable from here too.

An answer is acted on only if it comes from ``counselor.email``, is authenticated for the
counselor's own domain (``authenticity.own_domain_verdict``: the topmost trusted
Authentication-Results, else a DKIM signature verified here through the injected lookup), is
In-Reply-To a review email and carries that email's token, unused and unexpired; it then acts
only on the replies that email listed. Anything else is ignored, and each reason is one sentence
the digest can show.

This module must never read the clock (``now`` comes in), keep a token in clear (only its
SHA-256), send mail itself, or put the text of a message into a finding or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import textwrap
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime, getaddresses
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update

from modbot import render
from modbot.config import Settings
from modbot.errors import TemplateError
from modbot.model import Person, Recipient
from modbot.review_queue import (
    ReviewOutcome,
    Waiting,
    age_text,
    approve,
    decide,
    preview,
    readdress,
    reject,
    waiting,
)
from modbot.store import Store, review_mails

if TYPE_CHECKING:
    from modbot.authenticity import DnsLookup

__all__ = [
    "MAX_LISTED",
    "SENTINEL",
    "ReviewOutcome",
    "Waiting",
    "age_text",
    "approve",
    "build_review_email",
    "commands",
    "handle_answer",
    "is_review_answer",
    "preview",
    "readdress",
    "reject",
    "review_email_failed",
    "waiting",
]

MAX_LISTED = 50  # replies listed in one review email; the rest wait for the next one
SENTINEL = "modbot review"  # first line of every review email: where a quoted copy begins
_TOKEN = re.compile(r"\bMR-([0-9a-f]{32})\b")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")
_COMMAND = re.compile(r"^(approve|reject)\s+(all|\d+(?:\s*,?\s*\d+)*)\s*\.?$", re.IGNORECASE)
# Where a client starts quoting without ">": Outlook's separator or header block, Gmail's line.
_QUOTE_START = re.compile(r"^(?:-{2,}\s*original message|_{8,}|from:\s|on\s.*\swrote:$)",
                          re.IGNORECASE)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _email_text(items: Sequence[Waiting], token: str, expires: datetime, settings: Settings,
                templates: render.Templates) -> str:
    count = f"{len(items)} repl{'y waits' if len(items) == 1 else 'ies wait'}"
    lines = [f"{SENTINEL}: {count} for your approval.", ""]
    for w in items:
        lines += [f"  #{w.id}  {w.kind.replace('_', ' ')}, {render.clean_text(w.person) or '-'}, "
                  f"waiting {age_text(w.age)}", f"      to {w.redirected_to or w.recipient}",
                  f"      {render.clean_text(w.reason, 200) or ''}"]
    first = items[0].id
    # Every example is quoted, so no wrapped line of this text can read as a decision.
    lines += ["", *textwrap.wrap(
        f'To decide here, answer this email with one decision per line at the top, such as '
        f'"approve {first}", "reject {first}" or "approve all". Decisions count only for the '
        f"replies listed above, only from {settings.counselor.email}, and only once.", 76),
        f"Reference: MR-{token} (valid until {expires:%Y-%m-%d %H:%M} UTC)."]
    for template in dict.fromkeys(w.template for w in items):
        w = next(w for w in items if w.template == template)
        try:
            text = render.reply_text(
                templates, template=template, counselor=settings.counselor,
                recipient=Recipient(w.recipient_name or "", w.recipient, "outbox"),
                person=Person(name=w.person))
        except TemplateError as exc:
            text = f"(this reply cannot be written: {exc})"
        lines += ["", f"--- The {template.replace('_', ' ')} reply, as #{w.id} gets it ---", text]
    return "\n".join(lines) + "\n"


def build_review_email(store: Store, settings: Settings, templates: render.Templates,
                       now: datetime, message_id: str) -> EmailMessage | None:
    """The review email to the counselor, or None if nothing waits or one went out recently.

    Records the email's Message-ID, the hash of a new token and the listed replies; if it then
    cannot be sent, call ``review_email_failed`` so the next poll tries again.
    """
    every = timedelta(hours=settings.review.every_hours)
    expires = now + timedelta(hours=settings.review.token_hours)
    items = waiting(store, now)[:MAX_LISTED]
    if not items:
        return None
    token = secrets.token_hex(16)
    with store.transaction() as c:
        last = c.execute(select(func.max(review_mails.c.sent_at))
                         .where(review_mails.c.account == settings.account)).scalar_one_or_none()
        if last is not None and last > now - every:
            return None
        c.execute(review_mails.insert().values(
            account=settings.account, message_id=message_id, token_hash=_hash(token),
            items=json.dumps([w.id for w in items]), sent_at=now, expires_at=expires))
    message = render.new_message()
    message["From"] = message["To"] = Address("modbot", addr_spec=settings.counselor.email)
    message["Subject"] = f"modbot: {len(items)} repl{'y' if len(items) == 1 else 'ies'} to " \
                         f"review [MR-{token}]"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: made by a program
    message["X-Auto-Response-Suppress"] = "All"  # no out-of-office answer quoting the token
    message["X-Modbot-Kind"] = "review"
    message.set_content(_email_text(items, token, expires, settings, templates), charset="utf-8")
    return message


def review_email_failed(store: Store, message_id: str) -> None:
    """Forget a review email that could not be sent, so the next poll builds a new one."""
    with store.transaction() as c:
        c.execute(delete(review_mails).where(review_mails.c.message_id == message_id))


def _message_ids(values: Sequence[str]) -> list[str]:
    return _MESSAGE_ID.findall(" ".join(values)[:20000])[:50]


def is_review_answer(raw_headers: bytes, store: Store) -> bool:
    """Whether a header block answers or refers to a review email (one indexed query)."""
    lowered = raw_headers.lower()
    if b"in-reply-to:" not in lowered and b"references:" not in lowered:
        return False  # most notifications: no header to parse and no query to make
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw_headers)
        values = [str(v) for name in ("in-reply-to", "references")
                  for v in headers.get_all(name, [])]
    except Exception:  # an unreadable header block is not an answer worth fetching
        return False
    ids = _message_ids(values)
    if not ids:
        return False
    with store.transaction() as c:
        return c.execute(select(review_mails.c.id).where(
            review_mails.c.message_id.in_(ids)).limit(1)).first() is not None


def commands(text: str) -> tuple[list[int | str], list[int | str]]:
    """(approve, reject) numbers or "all" from the answer's own lines, above any quotation."""
    approve_: list[int | str] = []
    reject_: list[int | str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(">") or SENTINEL in line.lower() or _QUOTE_START.match(line):
            break
        match = _COMMAND.match(line)
        if match:
            target = approve_ if match.group(1).lower() == "approve" else reject_
            words = match.group(2).replace(",", " ").split()
            target.extend(w.lower() if w.isalpha() else int(w) for w in words)
    return approve_, reject_


def _ignored(findings: list[str]) -> ReviewOutcome:
    return ReviewOutcome(False, findings=tuple(
        f"An answer to a review email was ignored: {f}." for f in findings))


def handle_answer(store: Store, settings: Settings, raw: bytes, now: datetime,
                  dkim_lookup: DnsLookup | None) -> ReviewOutcome:
    """Act on the counselor's answer to a review email if every check holds.

    Bad or forged mail never raises: it comes back ignored, with findings. ``StoreError`` can.
    """
    from modbot import parse  # the stages, only for an answer to judge
    from modbot.authenticity import own_domain_verdict

    n = parse.parse(raw)
    problems: list[str] = []
    # Raw values, not decoded ones: an encoded-word in a display name must not add an address.
    try:
        raw_from = BytesHeaderParser(policy=compat32).parsebytes(raw).get_all("from", [])
    except Exception:  # the stdlib raises on some tiny inputs; then there is no sender
        raw_from = []
    senders = [a.lower() for _, a in getaddresses([str(v) for v in raw_from])]
    if senders != [settings.counselor.email.lower()]:
        problems.append(f"it does not come from {settings.counselor.email}")
    if (n.header("auto-submitted") or "no").strip().lower() != "no":
        problems.append("it was sent automatically (Auto-Submitted)")
    why = own_domain_verdict(n, settings.counselor.domain,
                             trusted_authserv_ids=settings.policy.trusted_authserv_ids,
                             dkim_lookup=dkim_lookup)
    if why:
        problems.append(why)
    replied = _message_ids(n.headers.get("in-reply-to", ()))
    with store.transaction() as c:
        row = c.execute(select(review_mails).where(
            review_mails.c.account == settings.account,
            review_mails.c.message_id.in_(replied))).first() if replied else None
    tokens = {_hash(t) for t in _TOKEN.findall(f"{n.subject}\n{n.text}"[:200000])}
    if row is None:
        problems.append("it is not In-Reply-To a review email")
    elif not any(hmac.compare_digest(t, row.token_hash) for t in tokens):
        problems.append("it does not carry that review email's reference")
    elif row.used_at is not None:
        problems.append("that review email's reference was already used")
    elif row.expires_at <= now:
        problems.append("that review email's reference has expired")
    if problems or row is None:
        return _ignored(problems)
    wanted_approve, wanted_reject = commands(n.text)
    if not wanted_approve and not wanted_reject:
        return ReviewOutcome(False, findings=("An answer to a review email held no approve or "
                                              "reject line, so nothing was done.",))
    return _act(store, row, wanted_approve, wanted_reject, now)


def _act(store: Store, row: Any, wanted_approve: list[int | str], wanted_reject: list[int | str],
         now: datetime) -> ReviewOutcome:
    listed = set(json.loads(row.items))
    named_a = {w for w in wanted_approve if isinstance(w, int)}
    named_r = {w for w in wanted_reject if isinstance(w, int)}
    # A number named outright wins over "all": "approve all" with "reject 3" spares 3.
    rest = listed - named_a - named_r
    all_a, all_r = "all" in wanted_approve, "all" in wanted_reject
    to_approve = (named_a - named_r) | (rest if all_a and not all_r else set())
    to_reject = (named_r - named_a) | (rest if all_r and not all_a else set())
    findings = [f"Number {i} was both approved and rejected, so it still waits."
                for i in sorted(named_a & named_r)]
    if all_a and all_r:
        findings.append("The answer said both approve all and reject all, so the replies it "
                        "did not name still wait.")
    findings += [f"Number {i} was not in that review email, so nothing was done with it."
                 for i in sorted((to_approve | to_reject) - listed)]
    with store.transaction() as c:
        if not c.execute(update(review_mails).where(review_mails.c.id == row.id,
                                                    review_mails.c.used_at.is_(None))
                         .values(used_at=now)).rowcount:
            return _ignored(["that review email's reference was already used"])
        approved, rejected, missing = decide(c, to_approve & listed, to_reject & listed, now)
    findings += [f"Number {i} no longer waited, so the answer did not change it."
                 for i in missing]
    summary = (f"The counselor's answer to a review email approved {len(approved)} and "
               f"rejected {len(rejected)} of the waiting replies.")
    return ReviewOutcome(True, approved, rejected, (summary, *findings))
