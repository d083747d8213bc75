"""Answers by email: the counselor decides from the mailbox, without a terminal.

``build_review_email`` lists the replies that wait for review (``modbot.review_queue``) with a
one-time token; ``handle_answer`` acts on the counselor's answer holding lines such as
"approve 2 5", "reject 3" or "approve all", through the store's ``answer_review``. The weekly digest
numbers the held items and gets a one-time token the same way (``register_digest``); an answer
to it holds lines such as "resolve 3 4", "resolve all" or "resume", acted on through
the store's ``answer_digest`` and ``resume``. The one email that tells the counselor
a reached cap paused the replies gets its own token too (``register_pause_alert``): "resume" in
an answer to it ends that pause, and no later one. The commands that do the same by hand
(``approve``, ``reject``, ``readdress``, ``waiting``, ``preview``, ``resolve``) live in
``modbot.review_queue`` and are importable from here too.

An answer is acted on only if it comes from ``counselor.email``, is authenticated for the
counselor's own domain (``authenticity.own_domain_verdict``: the topmost trusted
Authentication-Results, else a DKIM signature verified here through the injected lookup), is
In-Reply-To a review email, digest or pause alert and carries that email's token, unused and
unexpired; it then acts only on the items that email listed. Anything else is ignored, and each
reason is one sentence the digest can show.

This module must never read the clock (``now`` comes in), keep a token in clear (only its
SHA-256), send mail itself, or put the text of a message into a finding or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import textwrap
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import TYPE_CHECKING

from modbot import render, words
from modbot.config import Account
from modbot.errors import TemplateError
from modbot.model import Person, Recipient
from modbot.review_queue import (
    ReviewOutcome,
    Waiting,
    age_text,
    approve,
    preview,
    readdress,
    reject,
    resolve,
    waiting,
)
from modbot.store import ReviewMail, Store
from modbot.triage import message_ids as _message_ids
from modbot.triage import triage

if TYPE_CHECKING:
    from modbot.authenticity import DnsLookup

__all__ = [
    "ALERT_TOKEN",
    "DIGEST_TOKEN",
    "MAX_LISTED",
    "SENTINEL",
    "ReviewOutcome",
    "Waiting",
    "age_text",
    "approve",
    "build_review_email",
    "commands",
    "digest_commands",
    "handle_answer",
    "is_review_answer",
    "preview",
    "readdress",
    "refers_to_review_mail",
    "register_digest",
    "register_pause_alert",
    "reject",
    "resolve",
    "review_email_failed",
    "waiting",
]

MAX_LISTED = 50  # replies listed in one review email; the rest wait for the next one
SENTINEL = "modbot review"  # first line of every review email: where a quoted copy begins
_TOKEN = re.compile(r"\bMR-([0-9a-f]{32})\b")
_COMMAND = re.compile(r"^(approve|reject)\s+(all|\d+(?:\s*,?\s*\d+)*)\s*\.?$", re.IGNORECASE)
_RESOLVE = re.compile(r"^resolve\s+(all|#?\d+(?:\s*,?\s*#?\d+)*)\s*\.?$", re.IGNORECASE)
_RESUME = re.compile(r"^resume\s*\.?$", re.IGNORECASE)
DIGEST_TOKEN = timedelta(days=14)  # a digest may be answered until the one after next
ALERT_TOKEN = timedelta(days=14)  # a pause alert too: the next digest also offers "resume"
# Where a client starts quoting without ">": Outlook's separator or header block, Gmail's line.
_QUOTE_START = re.compile(r"^(?:-{2,}\s*original message|_{8,}|from:\s|on\s.*\swrote:$)",
                          re.IGNORECASE)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _email_text(items: Sequence[Waiting], token: str, expires: datetime, settings: Account,
                templates: render.Templates) -> str:
    count = f"{len(items)} repl{'y waits' if len(items) == 1 else 'ies wait'}"
    lines = [f"{SENTINEL}: {count} for your approval.", ""]
    for w in items:
        lines += [f"  #{w.id}  {words.kind_label(w.kind)}, {render.clean_text(w.person) or '-'}, "
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
        lines += ["", f"--- The reply to {words.kind_phrase(template)}, as #{w.id} gets it ---",
                  text]
    return "\n".join(lines) + "\n"


def build_review_email(store: Store, settings: Account, templates: render.Templates,
                       now: datetime, message_id: str) -> EmailMessage | None:
    """The review email to the counselor, or None if nothing waits or one went out recently.

    Records the email's Message-ID, the hash of a new token and the listed replies; if it then
    cannot be sent, call ``review_email_failed`` so the next poll tries again.
    """
    every = timedelta(hours=settings.review.every_hours)
    expires = now + timedelta(hours=settings.review.token_hours)
    items = waiting(store, settings.account, now)[:MAX_LISTED]
    if not items:
        return None
    token = secrets.token_hex(16)
    if not store.add_review_mail(settings.account, message_id, _hash(token),
                                 [w.id for w in items], now, expires, not_within=every):
        return None
    message = render.to_counselor(
        name="modbot", email=settings.counselor.email,
        subject=f"modbot: {len(items)} repl{'y' if len(items) == 1 else 'ies'} to review "
                f"[MR-{token}]",
        date=now, message_id=message_id, kind="review")
    message.set_content(_email_text(items, token, expires, settings, templates), charset="utf-8")
    return message


def register_digest(store: Store, settings: Account, message_id: str, items: Sequence[int],
                    now: datetime) -> str:
    """Record the digest ``message_id`` and the held items it numbers; return its one-time token.

    The digest shows the token; an answer carrying it may resolve those items. If the digest
    cannot be sent, call ``review_email_failed`` with its Message-ID.
    """
    return _register(store, settings, message_id, {"resolve": list(items)}, now, DIGEST_TOKEN)


def register_pause_alert(store: Store, settings: Account, message_id: str, pause_id: int,
                         now: datetime) -> str:
    """Record the pause alert ``message_id`` for the pause ``pause_id``; return its one-time
    token.

    The alert shows the token; an answer carrying it may end that pause (not a later one). If
    the alert surely was not sent, call ``review_email_failed`` with its Message-ID.
    """
    return _register(store, settings, message_id, {"pause": pause_id}, now, ALERT_TOKEN)


def _register(store: Store, settings: Account, message_id: str, items: object, now: datetime,
              valid: timedelta) -> str:
    token = secrets.token_hex(16)
    store.add_review_mail(settings.account, message_id, _hash(token), items, now, now + valid)
    return token


def review_email_failed(store: Store, message_id: str) -> None:
    """Forget a review email or digest that could not be sent (and so its token)."""
    store.forget_review_mail(message_id)


def is_review_answer(raw_headers: bytes, store: Store) -> bool:
    """Whether a header block answers or refers to a review email (one indexed query)."""
    return refers_to_review_mail(triage(raw_headers).answers, store)


def refers_to_review_mail(message_ids: Sequence[str], store: Store) -> bool:
    """Whether any of ``message_ids`` (``Triage.answers``) names a review email, digest or
    pause alert (one indexed query; none for no ids)."""
    ids = list(message_ids)
    if not ids:
        return False
    return store.is_review_mail(ids)


def _own_lines(text: str) -> Iterator[str]:
    """The answer's own lines, stripped, up to where a quotation of modbot's email begins."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(">") or SENTINEL in line.lower() or _QUOTE_START.match(line):
            return
        yield line


def _numbers(words: str) -> list[int | str]:
    return [w.lower() if w.isalpha() else int(w.lstrip("#"))
            for w in words.replace(",", " ").split()]


def digest_commands(text: str) -> tuple[list[int | str], bool]:
    """(resolve numbers or "all", whether to resume) from the answer to a digest."""
    resolve_: list[int | str] = []
    resume = False
    for line in _own_lines(text):
        match = _RESOLVE.match(line)
        if match:
            resolve_.extend(_numbers(match.group(1)))
        resume = resume or bool(_RESUME.match(line))
    return resolve_, resume


def commands(text: str) -> tuple[list[int | str], list[int | str]]:
    """(approve, reject) numbers or "all" from the answer's own lines, above any quotation."""
    approve_: list[int | str] = []
    reject_: list[int | str] = []
    for line in _own_lines(text):
        match = _COMMAND.match(line)
        if match:
            target = approve_ if match.group(1).lower() == "approve" else reject_
            target.extend(_numbers(match.group(2)))
    return approve_, reject_


def _ignored(findings: list[str], what: str = "a review email") -> ReviewOutcome:
    return ReviewOutcome(False, findings=tuple(
        f"An answer to {what} was ignored: {f}." for f in findings))


def _answered(row: ReviewMail) -> tuple[str, list[int] | None, int | None]:
    """What ``row`` recorded, in words, with the held items a digest numbered and the pause an
    alert told of: ("a review email", None, None), ("the digest", items, None) or
    ("the pause alert", None, pause)."""
    items = row.items
    if not isinstance(items, dict):
        return "a review email", None, None
    if "pause" in items:
        return "the pause alert", None, int(items["pause"])
    return "the digest", [int(i) for i in items["resolve"]], None


def handle_answer(store: Store, settings: Account, raw: bytes, now: datetime,
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
    row = store.review_mail(settings.account, replied)
    tokens = {_hash(t) for t in _TOKEN.findall(f"{n.subject}\n{n.text}"[:200000])}
    what, listed, pause = ("a review email", None, None) if row is None else _answered(row)
    that = what.replace("a ", "that ", 1).replace("the ", "that ", 1)
    if row is None:
        problems.append("it is not In-Reply-To a review email, digest or pause alert")
    elif not any(hmac.compare_digest(t, row.token_hash) for t in tokens):
        problems.append(f"it does not carry {that}'s reference")
    elif row.used_at is not None:
        problems.append(f"{that}'s reference was already used")
    elif row.expires_at <= now:
        problems.append(f"{that}'s reference has expired")
    if problems or row is None:
        return _ignored(problems, what)
    if listed is not None:
        return _act_on_digest(store, settings, row, listed, n.text, now)
    if pause is not None:
        return _act_on_alert(store, settings, row, pause, n.text, now)
    wanted_approve, wanted_reject = commands(n.text)
    if not wanted_approve and not wanted_reject:
        return ReviewOutcome(False, findings=("An answer to a review email held no approve or "
                                              "reject line, so nothing was done.",))
    return _act(store, row, wanted_approve, wanted_reject, now)


def _act(store: Store, row: ReviewMail, wanted_approve: list[int | str],
         wanted_reject: list[int | str], now: datetime) -> ReviewOutcome:
    listed = {int(i) for i in row.items}
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
    decided = store.answer_review(row, to_approve & listed, to_reject & listed, now)
    if decided is None:
        return _ignored(["that review email's reference was already used"])
    approved, rejected, missing = decided
    findings += [f"Number {i} no longer waited, so the answer did not change it."
                 for i in missing]
    summary = (f"The counselor's answer to a review email approved {len(approved)} and "
               f"rejected {len(rejected)} of the waiting replies.")
    return ReviewOutcome(True, approved, rejected, (summary, *findings))


def _act_on_digest(store: Store, settings: Account, row: ReviewMail, listed: list[int], text: str,
                   now: datetime) -> ReviewOutcome:
    """Resolve the digest's items the answer names ("all": every one it numbered), resume."""
    wanted, resume = digest_commands(text)
    if not wanted and not resume:
        return ReviewOutcome(False, findings=("An answer to the digest held no resolve or "
                                              "resume line, so nothing was done.",))
    named = {w for w in wanted if isinstance(w, int)}
    chosen = set(listed) if "all" in wanted else named & set(listed)
    findings = [f"Number {i} was not in that digest, so nothing was done with it."
                for i in sorted(named - set(listed))]
    answered = store.answer_digest(row, chosen, now)
    if answered is None:
        return _ignored(["that digest's reference was already used"], "the digest")
    resolved, missing = answered
    findings += [f"Number {i} was no longer held, so the answer did not change it."
                 for i in missing]
    resumed = bool(resume and store.resume(settings.account, now))
    if resume and not resumed:
        findings.append("Automatic replies were not paused, so there was nothing to resume.")
    summary = (f"The counselor's answer to the digest resolved {len(resolved)} held "
               f"item{'' if len(resolved) == 1 else 's'}"
               + (" and started automatic replies again." if resumed else "."))
    return ReviewOutcome(True, resolved=resolved, resumed=resumed,
                         findings=(summary, *findings))


def _act_on_alert(store: Store, settings: Account, row: ReviewMail, pause: int, text: str,
                  now: datetime) -> ReviewOutcome:
    """End the pause the alert told of, if the answer says "resume" and that pause still holds."""
    wanted, resume = digest_commands(text)
    if not resume:
        return ReviewOutcome(False, findings=("An answer to the pause alert held no resume "
                                              "line, so nothing was done.",))
    findings = ["The pause alert lists no held items; resolve them by answering the digest."
                ] if wanted else []
    if not store.use_review_mail(row, now):
        return _ignored(["that pause alert's reference was already used"],
                        "the pause alert")
    active = store.active_pause(settings.account)
    # A newer pause has its own alert: an old one's answer must not end it unseen.
    resumed = active is not None and active.id == pause \
        and store.resume(settings.account, now) > 0
    if not resumed:
        return ReviewOutcome(True, findings=(
            "The counselor's answer to the pause alert came after that pause had ended, so "
            "nothing was resumed.", *findings))
    return ReviewOutcome(True, resumed=True, findings=(
        "The counselor's answer to the pause alert started automatic replies again.",
        *findings))
