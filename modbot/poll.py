"""One poll of one inbox: fetch what is new, judge it, record it, send, mark, advance.

The order is the safety argument (see README, "How a message is handled"):

1. new UIDs after the stored cursor (per UIDVALIDITY); header blocks in one batch; bodies only
   for LinkedIn candidates, always with ``BODY.PEEK`` so ``\\Seen`` never changes;
2. each candidate is judged (parse → authenticity → classify → recipients → policy); a message
   that breaks a stage is held with a one-sentence error and the loop goes on;
3. the message, its decision and any reply intent (with a fixed Message-ID) are recorded in
   one transaction before anything is sent;
4. due replies are marked ``sending``, sent, then marked ``sent`` (or retried, or held); a row
   left in ``sending`` by a crash is resolved from the Sent folder or held as "uncertain";
5. the keyword marks handled LinkedIn mail; the cursor advances only past recorded messages.

This module never reads the clock (``now`` comes in) and never logs message content.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from modbot import authenticity, classify, parse, render, store
from modbot.config import PolicySettings, Settings
from modbot.errors import (
    MaybeSentError,
    ModbotError,
    SendError,
    StoreError,
    TemporarySendError,
)
from modbot.mailbox import Mailbox
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
from modbot.recipients import Directory, resolve
from modbot.store import Store
from modbot.tls import client_context

log = logging.getLogger(__name__)

DnsLookup = Callable[[bytes], bytes | None]
BATCH = 200
MAX_SEND_ATTEMPTS = 6


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
        directory = Directory.from_csv(settings.directory.csv) if settings.directory.csv else None
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
    status: str | None


@dataclass
class PollReport:
    new_messages: int = 0
    candidates: int = 0
    handled: list[Handled] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def judge(raw: bytes, policy: PolicySettings, directory: Directory | None,
          history_for: Callable[[Classification, Recipient | None, Sequence[str]], History],
          dkim_lookup: DnsLookup | None) -> Judgement:
    """Run the pure stages on one message; a failure becomes a held judgement, never a crash."""
    try:
        notification = parse.parse(raw)
        found = authenticity.check(
            notification,
            trusted_authserv_ids=policy.trusted_authserv_ids,
            dkim_lookup=dkim_lookup,
        )
        classification = classify.classify(notification, found)
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


class Poller:
    """Polls one inbox with the stages wired together."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.store = ctx.store
        self.account = ctx.settings.account

    # --- history facts for the policy ----------------------------------------------------

    def _history_at(self, now: datetime) -> Callable[
            [Classification, Recipient | None, Sequence[str]], History]:
        policy = self.settings.policy

        def history_for(c: Classification, recipient: Recipient | None,
                        references: Sequence[str]) -> History:
            window = now - timedelta(days=policy.person_window_days)
            return History(
                replied_to_person=bool(recipient)
                and self.store.replied_to_person(recipient.email, window),  # type: ignore[union-attr]
                replied_to_invitation=bool(c.person.invitation_id)
                and self.store.replied_to_invitation(self.account, c.person.invitation_id or ""),
                replies_last_hour=self.store.replies_since(now - timedelta(hours=1)),
                replies_last_day=self.store.replies_since(now - timedelta(days=1)),
                is_reply_to_our_mail=self.store.is_our_message_id(references),
            )

        return history_for

    # --- the poll ------------------------------------------------------------------------

    async def poll(self, now: datetime) -> PollReport:
        """One full cycle. Raises ``ModbotError`` when the inbox or the store fails."""
        report = PollReport()
        poll_id = self.store.poll_started(self.account, now)
        try:
            mailbox = Mailbox(self.settings.imap, self.ctx.imap_tls)
            await asyncio.to_thread(mailbox.__enter__)
            try:
                await self._reconcile(mailbox, now)
                await self._fetch_and_judge(mailbox, now, report)
                await self._send_due(mailbox, now, report)
            finally:
                await asyncio.to_thread(mailbox.__exit__, None, None, None)
        except ModbotError as exc:
            report.errors.append(str(exc))
            self.store.poll_finished(poll_id, now, ok=False,
                                     new_messages=report.new_messages, error=str(exc))
            raise
        self.store.poll_finished(poll_id, now, ok=True, new_messages=report.new_messages)
        return report

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
        uidvalidity, uids = await self._new_uids(mailbox, now)
        report.new_messages = len(uids)
        history_for = self._history_at(now)
        for start in range(0, len(uids), BATCH):
            batch = sorted(uids[start:start + BATCH])
            headers = await asyncio.to_thread(mailbox.fetch_headers, batch)
            keys = {uid: store.message_key(_header_message_id(h), h) for uid, h in headers.items()}
            known = self.store.known_keys(self.account, list(keys.values()))
            candidates = [uid for uid in batch
                          if uid in headers and keys[uid] not in known
                          and parse.linkedin_candidate(headers[uid])]
            report.candidates += len(candidates)
            bodies = await asyncio.to_thread(mailbox.fetch_messages, candidates) if candidates \
                else {}
            marked: list[int] = []
            for uid in candidates:
                raw = bodies.get(uid)
                if raw is None:
                    continue  # vanished between the two fetches (expunged): nothing to answer
                judgement = await asyncio.to_thread(
                    judge, raw, self.settings.policy, self.ctx.directory, history_for,
                    self.ctx.dkim_lookup)
                handled = self._record(uid, uidvalidity, keys[uid], judgement, now)
                if handled is not None:
                    report.handled.append(handled)
                if judgement.classification.kind is not Kind.NOT_LINKEDIN:
                    marked.append(uid)
            if marked:
                await asyncio.to_thread(mailbox.add_keyword, marked, self.settings.imap.keyword)
            self.store.set_cursor(self.account, folder, uidvalidity, batch[-1], now)

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
            self.store.record(row, reply)
        except StoreError:
            if self.store.known_keys(self.account, [key]):
                return None  # recorded meanwhile by another poll: it is handled
            raise
        log.info("uid %s: %s -> %s (%s)", uid, c.kind.value, d.action.value, d.rule)
        recipient = d.recipient.email if d.recipient else None
        return Handled(uid, c.kind.value, d.action.value, d.rule, d.reasons, person.name,
                       recipient, status)

    # --- sending -------------------------------------------------------------------------

    async def _reconcile(self, mailbox: Mailbox, now: datetime) -> None:
        """Resolve replies a crash left between "sending" and "sent"."""
        sent_folder = self.settings.imap.sent_folder
        for item in self.store.in_flight():
            found = sent_folder is not None and await asyncio.to_thread(
                mailbox.find_message_id, sent_folder, item.message_id)
            if found:
                self.store.mark(item.id, store.SENT, now=now)
            else:
                self.store.mark(item.id, store.UNCERTAIN, now=now, error=(
                    "the reply may have been sent: the connection ended before the server "
                    "confirmed it; held so it is never sent twice"))

    async def _send_due(self, mailbox: Mailbox, now: datetime, report: PollReport) -> None:
        due = self.store.due(now)
        if not due:
            return
        try:
            async with Sender(self.settings.smtp, self.ctx.smtp_tls) as sender:
                for item in due:
                    await self._send_one(sender, mailbox, item, now, report)
        except SendError as exc:  # could not connect at all: nothing was marked "sending"
            report.errors.append(str(exc))
            log.warning("sending postponed: %s", exc)

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
        try:
            await sender.send(message)
        except MaybeSentError as exc:  # the line dropped after DATA: never resend blindly
            self.store.mark(item.id, store.UNCERTAIN, now=now, error=str(exc))
            report.errors.append(str(exc))
            return
        except TemporarySendError as exc:
            attempts = item.attempts + 1
            if attempts >= MAX_SEND_ATTEMPTS:
                self.store.mark(item.id, store.FAILED, now=now, error=str(exc))
            else:
                backoff = timedelta(minutes=2 ** attempts)
                self.store.mark(item.id, store.RETRY, now=now, error=str(exc),
                                next_attempt_at=now + backoff)
            report.errors.append(str(exc))
            return
        except SendError as exc:
            self.store.mark(item.id, store.FAILED, now=now, error=str(exc))
            report.errors.append(str(exc))
            return
        self.store.mark(item.id, store.SENT, now=now)
        report.sent.append(item.message_id)
        sent_folder = self.settings.imap.sent_folder
        if sent_folder:
            try:
                await asyncio.to_thread(mailbox.append, sent_folder, bytes(message))
            except ModbotError as exc:
                log.warning("could not keep a copy in %s: %s", sent_folder, exc)


async def poll_once(ctx: Context, now: datetime) -> PollReport:
    """One poll at ``now``, which the caller read from its clock."""
    return await Poller(ctx).poll(now)
