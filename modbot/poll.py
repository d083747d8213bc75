"""One poll of one inbox: fetch what is new, judge it, record it, send, mark, advance.

The order is the safety argument (see README, "How a message is handled"):

1. new UIDs after the stored cursor (per UIDVALIDITY); header blocks (cut at 256 KB) and sizes
   in one batch; bodies only for LinkedIn candidates within ``imap.max_message_bytes``, fetched in
   runs of bounded size, always with ``BODY.PEEK`` so ``\\Seen`` never changes;
2. each candidate is judged (parse → authenticity → classify → recipients → policy); a message
   that breaks a stage, or is too large to read, is held with a one-sentence reason and the loop
   goes on; while replies are paused (a cap was reached) every reply becomes a hold;
3. the message, its decision and any reply intent (with a fixed Message-ID) are recorded in
   one transaction before anything is sent;
4. the keyword marks handled LinkedIn mail (again, for mail recorded by a poll that died before
   marking it); the cursor advances only past recorded messages;
5. due replies are marked ``sending``, sent, copied to the Sent folder, then marked ``sent`` (or
   retried with a bounded backoff kept in the row, or held); a row left in ``sending`` by a crash
   is resolved from the Sent folder or held as "uncertain", never sent again.

``Poller.checkpoint`` names each of these steps as the poll passes it; it does nothing in a real
poll, and the crash tests kill the process there.

This module never reads the clock (``now`` comes in) and never logs message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import format_datetime
from typing import Any

from modbot import authenticity, classify, parse, render, review, store
from modbot.config import PolicySettings, Settings
from modbot.errors import (
    MaybeSentError,
    ModbotError,
    SendError,
    StoreError,
    TemporarySendError,
)
from modbot.mailbox import HEADER_LIMIT, Mailbox, Summary
from modbot.model import (
    Action,
    Authenticity,
    Classification,
    Decision,
    History,
    Kind,
    Mode,
    Person,
    Recipient,
    Unresolved,
    Verdict,
)
from modbot.outbox import Sender
from modbot.policy import REPLY_KINDS, Facts, decide
from modbot.recipients import Directory, normalize_profile_url, open_directory, resolve
from modbot.store import Store
from modbot.tls import client_context

log = logging.getLogger(__name__)

DnsLookup = Callable[[bytes], bytes | None]
Checkpoint = Callable[[str], None]
BATCH = 200
MAX_SEND_ATTEMPTS = 6  # then the reply is held as failed for the counselor
MAX_BACKOFF = timedelta(hours=1)
CAP_RULES = frozenset({"hourly-cap", "daily-cap"})
# The steps a poll passes, in order, as named to ``Poller.checkpoint``: bodies fetched; one
# message judged; its decision and reply intent recorded; keywords set; cursor advanced; a reply
# marked "sending"; the server confirmed it; its copy is in the Sent folder; the poll finished.
STEPS = ("fetched", "judged", "recorded", "marked", "advanced", "sending", "sent", "copied",
         "done")


def backoff(attempts: int) -> timedelta:
    """How long a temporarily refused reply waits before attempt ``attempts + 1``.

    2, 4, 8, 16, 32 minutes, never more than an hour: kept in the outbox row, so it holds
    across polls and restarts.
    """
    return min(timedelta(minutes=2 ** attempts), MAX_BACKOFF)


def dns_txt_lookup(name: bytes, timeout: float = 3.0) -> bytes | None:
    """DKIM key lookup over DNS with a bounded wait (dkimpy's ``dnsfunc`` signature)."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout
    try:
        answer = resolver.resolve(name.decode("ascii", "replace").rstrip("."), "TXT")
    except dns.exception.DNSException:
        return None
    for record in answer:
        return b"".join(record.strings)
    return None


@dataclass
class Context:
    """Everything a poll needs, built once when the daemon or a command starts."""

    settings: Settings
    store: Store
    templates: render.Templates
    imap_tls: ssl.SSLContext
    smtp_tls: ssl.SSLContext
    directory: Directory | None
    dkim_lookup: DnsLookup | None = dns_txt_lookup

    @classmethod
    def build(cls, settings: Settings, *, store_: Store | None = None,
              dkim_lookup: DnsLookup | None = dns_txt_lookup) -> Context:
        directory = open_directory(settings.directory)
        return cls(
            settings=settings,
            store=store_ or Store.open(settings.database.url),
            templates=render.Templates.load(settings.templates.dir),
            imap_tls=client_context(settings.imap.ca_file),
            smtp_tls=client_context(settings.smtp.ca_file),
            directory=directory,
            dkim_lookup=dkim_lookup,
        )


@dataclass(frozen=True)
class Judgement:
    """What the pure stages made of one message."""

    message_id: str | None
    authenticity: Authenticity
    classification: Classification
    decision: Decision
    address_source: str | None
    error: str | None = None


@dataclass
class Handled:
    uid: int
    kind: str
    action: str
    rule: str
    reasons: tuple[str, ...]
    person: str | None
    recipient: str | None
    status: str | None  # the reply's outbox status, as it stood at the end of the poll
    outbox_id: int | None = None


@dataclass
class PollReport:
    new_messages: int = 0
    candidates: int = 0
    handled: list[Handled] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def judge(raw: bytes, policy: PolicySettings, directory: Directory | None,
          history_for: Callable[[Classification, Recipient | None, Sequence[str]], History],
          dkim_lookup: DnsLookup | None, rules: Sequence[classify.Rule] = ()) -> Judgement:
    """Run the pure stages on one message; a failure becomes a held judgement, never a crash."""
    try:
        notification = parse.parse(raw)
        found = authenticity.check(
            notification,
            trusted_authserv_ids=policy.trusted_authserv_ids,
            dkim_lookup=dkim_lookup,
        )
        classification = classify.classify(notification, found, rules)
        if classification.kind in REPLY_KINDS:
            resolution = resolve(classification, found, directory)
        else:
            resolution = Unresolved("no reply is needed for this kind")
        references = [
            *notification.headers.get("in-reply-to", ()),
            *" ".join(notification.headers.get("references", ())).split(),
        ]
        recipient = resolution if isinstance(resolution, Recipient) else None
        history = history_for(classification, recipient, references)
        decision = decide(Facts(classification, found, resolution, history,
                                notification.header("auto-submitted"), policy))
        source = resolution.source if isinstance(resolution, Recipient) else None
        return Judgement(notification.message_id, found, classification, decision, source)
    except Exception as exc:  # one bad message must never stop the loop
        reason = f"could not be processed ({type(exc).__name__}); held for the counselor"
        unknown = Authenticity(False, Verdict.UNKNOWN, ())
        classification = Classification(Kind.UNKNOWN_LINKEDIN, "error", Person(), None, ())
        decision = Decision(Action.HOLD, "processing-error", (reason,))
        return Judgement(None, unknown, classification, decision, None, error=reason)


def _header_message_id(header_bytes: bytes) -> str | None:
    try:
        headers = BytesHeaderParser(policy=default_policy).parsebytes(header_bytes)
        value = headers.get("message-id")
        return str(value).strip() if value else None
    except Exception:  # a header the stdlib cannot parse: fall back to hashing the bytes
        return None


# Told (messages done, messages in this poll) as the poll goes, e.g. for a progress bar.
Progress = Callable[[int, int], None]


def no_checkpoint(step: str) -> None:
    """The checkpoint of every real poll: it does nothing."""


def too_large(summary: Summary, limit: int) -> Judgement:
    """The held judgement of a candidate whose body is never fetched because of its size."""
    if summary.header_truncated:
        reason = (f"its header block is longer than {HEADER_LIMIT // 1024} KB, which no "
                  "LinkedIn notification has; held for the counselor without reading it")
    else:
        reason = (f"it is {summary.size / 1e6:.1f} MB, over the {limit / 1e6:g} MB limit "
                  "(imap.max_message_bytes); held for the counselor without reading it")
    unknown = Authenticity(False, Verdict.UNKNOWN, ())
    classification = Classification(Kind.UNKNOWN_LINKEDIN, "too-large", Person(), None, ())
    return Judgement(None, unknown, classification,
                     Decision(Action.HOLD, "too-large", (reason,)), None, error=reason)


def _by_size(uids: Sequence[int], sizes: dict[int, int], budget: int) -> Iterator[list[int]]:
    """Split ``uids`` into runs whose sizes add up to at most ``budget`` (or one message)."""
    chunk: list[int] = []
    total = 0
    for uid in uids:
        if chunk and total + sizes[uid] > budget:
            yield chunk
            chunk, total = [], 0
        chunk.append(uid)
        total += sizes[uid]
    if chunk:
        yield chunk


def alert_message(settings: Settings, pause: store.Pause, now: datetime) -> EmailMessage:
    """The one email that tells the counselor that replies are paused, and how to resume."""
    counselor = settings.counselor
    message = EmailMessage()
    message["From"] = Address(counselor.name, addr_spec=counselor.email)
    message["To"] = Address(counselor.name, addr_spec=counselor.email)
    message["Subject"] = "modbot has paused its replies"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = pause.alert_message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(
        f"modbot stopped sending automatic replies at {pause.started_at:%Y-%m-%d %H:%M} UTC.\n\n"
        f"Why: {pause.reason}\n\n"
        "Reaching a cap usually means a burst of mail that deserves a look: a flood of "
        "invitations, a forwarding loop, or a class that all wrote at once. Until you resume, "
        "every notification that would have been answered is recorded and held for you; "
        "nothing is lost and nothing is sent. `modbot held` lists what waits, and the weekly "
        "digest shows it too.\n\n"
        "To start automatic replies again, run:\n\n    modbot resume\n\n"
        "This is the only message about this pause.\n"
    )
    return message


class Poller:
    """Polls one inbox with the stages wired together.

    What it reads and sends is its account's own (cursors, messages, caps, the person window,
    the outbox), so the pollers of several accounts can share one store.

    ``checkpoint`` is called with the name of each step as the poll passes it (see ``STEPS``).
    It exists for the reliability tests, which kill the process at a chosen step to show that a
    crash anywhere loses and repeats nothing; every real poll uses ``no_checkpoint``.
    """

    def __init__(self, ctx: Context, *, checkpoint: Checkpoint = no_checkpoint,
                 progress: Progress | None = None) -> None:
        self.ctx = ctx
        self.progress = progress
        self.settings = ctx.settings
        self.store = ctx.store
        self.account = ctx.settings.account
        self.checkpoint = checkpoint
        self._copies = True  # whether to keep copies in the Sent folder during this send run

    # --- history facts for the policy ----------------------------------------------------

    def _history_at(self, now: datetime) -> Callable[
            [Classification, Recipient | None, Sequence[str]], History]:
        policy = self.settings.policy

        def history_for(c: Classification, recipient: Recipient | None,
                        references: Sequence[str]) -> History:
            answered = self.store.is_our_message_id(references)
            if c.kind not in REPLY_KINDS:  # the reply facts decide only for kinds with a reply
                return History(is_reply_to_our_mail=answered)
            window = now - timedelta(days=policy.person_window_days)
            last_hour, last_day = self.store.replies_in_windows(
                now - timedelta(hours=1), now - timedelta(days=1), self.account)
            return History(
                replied_to_person=self._replied_to_person(c, recipient, window),
                replied_to_invitation=bool(c.person.invitation_id)
                and self.store.replied_to_invitation(self.account, c.person.invitation_id or ""),
                replies_last_hour=last_hour,
                replies_last_day=last_day,
                is_reply_to_our_mail=answered,
            )

        return history_for

    def _replied_to_person(self, c: Classification, recipient: Recipient | None,
                           since: datetime) -> bool:
        """Answered since ``since`` at this address, or under this LinkedIn profile.

        The profile counts too because LinkedIn's relay gives every message its own reply
        address: a person whose auto-responder answers our reply would otherwise come back as a
        "new" person with each LinkedIn message, and be answered every time (a mail loop).
        """
        if recipient is not None and self.store.replied_to_person(recipient.email, since,
                                                                  self.account):
            return True
        key = normalize_profile_url(c.person.profile_url) if c.person.profile_url else None
        if key is None:
            return False
        fragment = key.partition("/")[2]
        return any(normalize_profile_url(url) == key for url in
                   self.store.replied_profile_urls(self.account, fragment, since))

    # --- the poll ------------------------------------------------------------------------

    async def poll(self, now: datetime) -> PollReport:
        """One full cycle. Raises ``ModbotError`` when the inbox or the store fails."""
        report = PollReport()
        poll_id = self.store.poll_started(self.account, now)
        try:
            retention = timedelta(days=self.settings.policy.retention_days)
            self.store.purge(self.account, now - retention, now)
            mailbox = Mailbox(self.settings.imap, self.ctx.imap_tls)
            await asyncio.to_thread(mailbox.__enter__)
            try:
                await self._reconcile(mailbox, now)
                await self._fetch_and_judge(mailbox, now, report)
                await self._send_due(mailbox, now, report)
                self._final_statuses(report)
            finally:
                await asyncio.to_thread(mailbox.__exit__, None, None, None)
        except ModbotError as exc:
            report.errors.append(str(exc))
            # The store may be what failed (locked, disk full): the original error is the news.
            with contextlib.suppress(StoreError):
                self.store.poll_finished(poll_id, now, ok=False,
                                         new_messages=report.new_messages, error=str(exc))
            raise
        self.store.poll_finished(poll_id, now, ok=True, new_messages=report.new_messages)
        self.checkpoint("done")
        return report

    def _final_statuses(self, report: PollReport) -> None:
        """Tell each handled reply's status after sending, not the "queued" of its intent."""
        ids = [h.outbox_id for h in report.handled if h.outbox_id is not None]
        if not ids:
            return
        statuses = self.store.statuses(ids)
        for handled in report.handled:
            if handled.outbox_id in statuses:
                handled.status = statuses[handled.outbox_id]

    async def _new_uids(self, mailbox: Mailbox, now: datetime) -> tuple[int, list[int]]:
        folder = self.settings.imap.folder
        state = await asyncio.to_thread(mailbox.select, folder)
        last = self.store.cursor(self.account, folder, state.uidvalidity)
        if last is not None:
            return state.uidvalidity, await asyncio.to_thread(mailbox.uids_after, last)
        if self.store.has_any_cursor(self.account, folder):
            # UIDVALIDITY changed: every UID may now name another message. Re-scan the folder;
            # Message-ID keys in the store keep anything handled from being handled twice.
            log.warning("UIDVALIDITY of %s changed; re-scanning by Message-ID", folder)
            return state.uidvalidity, await asyncio.to_thread(mailbox.uids_after, 0)
        look_back = self.settings.policy.look_back_days
        if look_back > 0:
            since = (now - timedelta(days=look_back)).date()
            return state.uidvalidity, await asyncio.to_thread(mailbox.uids_since, since)
        top = (state.uidnext or 1) - 1
        self.store.set_cursor(self.account, folder, state.uidvalidity, top, now)
        return state.uidvalidity, []

    async def _fetch_and_judge(self, mailbox: Mailbox, now: datetime,
                               report: PollReport) -> None:
        folder = self.settings.imap.folder
        limit = self.settings.imap.max_message_bytes
        uidvalidity, uids = await self._new_uids(mailbox, now)
        report.new_messages = len(uids)
        if self.progress is not None:
            self.progress(0, len(uids))
        history_for = self._history_at(now)
        for start in range(0, len(uids), BATCH):
            batch = sorted(uids[start:start + BATCH])
            summaries = await asyncio.to_thread(mailbox.fetch_summaries, batch)
            keys = {uid: store.message_key(_header_message_id(s.header), s.header)
                    for uid, s in summaries.items()}
            known = self.store.known_kinds(self.account, list(keys.values()))
            # Recorded by a poll that died before setting the keyword: set it now.
            marked = [uid for uid, key in keys.items()
                      if known.get(key, Kind.NOT_LINKEDIN.value) != Kind.NOT_LINKEDIN.value]
            candidates = [uid for uid in batch
                          if uid in summaries and keys[uid] not in known
                          and parse.linkedin_candidate(summaries[uid].header)]
            report.candidates += len(candidates)
            fetchable = {uid: summaries[uid].size <= limit
                         and not summaries[uid].header_truncated for uid in candidates}
            sizes = {uid: summaries[uid].size if fetchable[uid] else 0 for uid in candidates}
            # One FETCH holds at most about one limit's worth of mail, so memory stays bounded.
            for chunk in _by_size(candidates, sizes, limit):
                wanted = [uid for uid in chunk if fetchable[uid]]
                bodies = await asyncio.to_thread(mailbox.fetch_messages, wanted) if wanted \
                    else {}
                self.checkpoint("fetched")
                for uid in chunk:
                    if fetchable[uid]:
                        raw = bodies.get(uid)
                        if raw is None:
                            continue  # expunged between the two fetches: nothing to answer
                        if review.is_review_answer(summaries[uid].header, self.store):
                            judgement = await asyncio.to_thread(self._review_answer, raw, now)
                        else:
                            judgement = await asyncio.to_thread(
                                judge, raw, self.settings.policy, self.ctx.directory,
                                history_for, self.ctx.dkim_lookup,
                                self.settings.classify.compiled_rules)
                    else:
                        judgement = too_large(summaries[uid], limit)
                    judgement = self._pause_if_capped(judgement, now)
                    self.checkpoint("judged")
                    handled = self._record(uid, uidvalidity, keys[uid], judgement, now)
                    self.checkpoint("recorded")
                    if handled is not None:
                        report.handled.append(handled)
                    if judgement.classification.kind is not Kind.NOT_LINKEDIN:
                        marked.append(uid)
            if marked:
                await asyncio.to_thread(mailbox.add_keyword, marked, self.settings.imap.keyword)
                self.checkpoint("marked")
            self.store.set_cursor(self.account, folder, uidvalidity, batch[-1], now)
            self.checkpoint("advanced")
            if self.progress is not None:
                self.progress(min(start + BATCH, len(uids)), len(uids))

    def _review_answer(self, raw: bytes, now: datetime) -> Judgement:
        """Act on the counselor's answer to a review email; record it as handled mail."""
        outcome = review.handle_answer(self.store, self.settings, raw, now,
                                       self.ctx.dkim_lookup)
        if outcome.acted:
            reason = (f"the counselor approved {len(outcome.approved)} and rejected "
                      f"{len(outcome.rejected)} waiting replies by email")
        else:
            reason = "an answer to a review email was ignored"
        unknown = Authenticity(False, Verdict.UNKNOWN, ())
        classification = Classification(Kind.NOT_LINKEDIN, "review-answer", Person(), None, ())
        action = Action.LOG if outcome.acted else Action.HOLD
        decision = Decision(action, "review-answer", (reason, *outcome.findings))
        return Judgement(None, unknown, classification, decision, None)

    def _pause_if_capped(self, j: Judgement, now: datetime) -> Judgement:
        """Hold every reply while paused; start the pause when a cap is first reached."""
        d = j.decision
        if d.action is Action.REPLY and d.mode is not Mode.SHADOW:
            pause = self.store.active_pause(self.account)
            if pause is not None:
                reason = (f"replies are paused since {pause.started_at:%Y-%m-%d %H:%M} UTC "
                          "because a cap was reached; `modbot resume` starts them again")
                return replace(j, decision=Decision(Action.HOLD, "replies-paused",
                                                    (reason, *d.reasons)))
        elif d.rule in CAP_RULES and self.store.active_pause(self.account) is None:
            self.store.start_pause(self.account, d.reasons[0], now,
                                   render.make_message_id(self.settings.counselor.domain))
            log.warning("a reply cap was reached; automatic replies are paused")
        return j

    def _record(self, uid: int, uidvalidity: int, key: str, j: Judgement,
                now: datetime) -> Handled | None:
        c, d = j.classification, j.decision
        person = c.person
        row: dict[str, Any] = {
            "account": self.account, "message_key": key, "folder": self.settings.imap.folder,
            "uidvalidity": uidvalidity, "uid": uid, "seen_at": now, "kind": c.kind.value,
            "authentic": j.authenticity.authentic, "classify_rule": c.rule[:64],
            "person_name": person.name, "profile_url": person.profile_url,
            "invitation_id": person.invitation_id, "address_source": j.address_source,
            "action": d.action.value, "policy_rule": d.rule, "reasons": d.reasons,
            "error": j.error,
        }
        reply: dict[str, Any] | None = None
        status: str | None = None
        if d.action is Action.REPLY and d.recipient is not None:
            status = {Mode.AUTO: store.QUEUED, Mode.REVIEW: store.REVIEW,
                      Mode.SHADOW: store.SHADOW}[d.mode]
            redirect = self.settings.policy.redirect_all_to
            reply = {
                "message_id": render.make_message_id(self.settings.counselor.domain),
                "template": d.template or c.kind.value, "recipient_name": d.recipient.name,
                "recipient_email": d.recipient.email, "redirected_to": redirect,
                "status": status, "created_at": now,
            }
        try:
            outbox_id = self.store.record(row, reply)
        except StoreError:
            if self.store.known_keys(self.account, [key]):
                return None  # recorded meanwhile by another poll: it is handled
            raise
        log.info("uid %s: %s -> %s (%s)", uid, c.kind.value, d.action.value, d.rule)
        recipient = d.recipient.email if d.recipient else None
        return Handled(uid, c.kind.value, d.action.value, d.rule, d.reasons, person.name,
                       recipient, status, outbox_id)

    # --- sending -------------------------------------------------------------------------

    async def _reconcile(self, mailbox: Mailbox, now: datetime) -> None:
        """Resolve replies a crash left between "sending" and "sent"."""
        sent_folder = self.settings.imap.sent_folder
        for item in self.store.in_flight(self.account):
            found = sent_folder is not None and await asyncio.to_thread(
                mailbox.find_message_id, sent_folder, item.message_id)
            if found:
                self.store.mark(item.id, store.SENT, now=now)
            else:
                self.store.mark(item.id, store.UNCERTAIN, now=now, error=(
                    "the reply may have been sent: the connection ended before the server "
                    "confirmed it; held so it is never sent twice"))

    async def _send_due(self, mailbox: Mailbox, now: datetime, report: PollReport) -> None:
        alert = self.store.alert_due(self.account)
        due = self.store.due(now, self.account)
        if not due and alert is None:
            return
        self._copies = True
        try:
            async with Sender(self.settings.smtp, self.ctx.smtp_tls) as sender:
                if alert is not None:
                    await self._send_alert(sender, alert, now, report)
                for item in due:
                    await self._send_one(sender, mailbox, item, now, report)
        except SendError as exc:  # could not connect at all: nothing was marked "sending"
            report.errors.append(str(exc))
            log.warning("sending postponed: %s", exc)

    async def _send_alert(self, sender: Sender, alert: store.Pause, now: datetime,
                          report: PollReport) -> None:
        # Claimed before sending: a crash or an unconfirmed send loses the alert, never doubles it.
        self.store.mark_alert(alert.id, now=now, attempted=True)
        try:
            await sender.send(alert_message(self.settings, alert, now))
        except MaybeSentError as exc:
            report.errors.append(str(exc))
        except SendError as exc:
            self.store.mark_alert(alert.id, now=now, released=True)  # surely not sent: retry
            report.errors.append(str(exc))
        else:
            self.store.mark_alert(alert.id, now=now, sent=True)

    async def _send_one(self, sender: Sender, mailbox: Mailbox, item: store.OutboxItem,
                        now: datetime, report: PollReport) -> None:
        counselor = self.settings.counselor
        recipient = Recipient(item.recipient_name or "", item.recipient_email, "outbox")
        try:
            message = render.reply_message(
                self.ctx.templates, template=item.template, counselor=counselor,
                recipient=recipient, person=Person(name=item.person_name),
                message_id=item.message_id, date=now, redirect_to=item.redirected_to)
        except (ModbotError, ValueError) as exc:  # a broken template or unusable address
            self.store.mark(item.id, store.FAILED, now=now,
                            error=f"the reply could not be built: {exc}")
            report.errors.append(str(exc))
            return
        self.store.mark(item.id, store.SENDING, now=now, count_attempt=True)
        self.checkpoint("sending")
        try:
            await sender.send(message)
        except MaybeSentError as exc:  # the line dropped after DATA: never resend blindly
            self.store.mark(item.id, store.UNCERTAIN, now=now, error=str(exc))
            report.errors.append(str(exc))
            return
        except TemporarySendError as exc:
            attempts = item.attempts + 1
            if attempts >= MAX_SEND_ATTEMPTS:
                self.store.mark(item.id, store.FAILED, now=now, error=(
                    f"gave up after {attempts} attempts: {exc}"))
            else:
                self.store.mark(item.id, store.RETRY, now=now, error=str(exc),
                                next_attempt_at=now + backoff(attempts))
            report.errors.append(str(exc))
            return
        except SendError as exc:
            self.store.mark(item.id, store.FAILED, now=now, error=str(exc))
            report.errors.append(str(exc))
            return
        self.checkpoint("sent")
        # The copy goes to the Sent folder before "sent" is recorded: a crash in between is then
        # resolved by finding the copy there, and a copy exists only for a confirmed send.
        sent_folder = self.settings.imap.sent_folder
        if sent_folder and self._copies:
            try:
                await asyncio.to_thread(mailbox.append, sent_folder, bytes(message))
            except ModbotError as exc:
                self._copies = False  # the connection is gone; do not wait on it per reply
                log.warning("could not keep a copy in %s: %s", sent_folder, exc)
            self.checkpoint("copied")
        self.store.mark(item.id, store.SENT, now=now)
        report.sent.append(item.message_id)


async def poll_once(ctx: Context, now: datetime, progress: Progress | None = None) -> PollReport:
    """One poll at ``now``, which the caller read from its clock."""
    return await Poller(ctx, progress=progress).poll(now)
