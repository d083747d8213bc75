"""One poll of one inbox: fetch what is new, judge it, record it, send, mark, advance.

The order is the safety argument (see README, "How a message is handled"):

1. new UIDs after the stored cursor (per UIDVALIDITY); header blocks (cut at 256 KB) and sizes
   in one batch, each read once (``modbot.triage``); bodies only for LinkedIn candidates within
   ``imap.max_message_bytes``, fetched in runs of bounded size, always with ``BODY.PEEK`` so
   ``\\Seen`` never changes;
2. the counselor's answers to modbot's own mail (review email, digest, pause alert) are acted
   on (``modbot.review``); every other candidate is judged (parse → authenticity → classify →
   recipients → policy) with what the store knows, read once per batch and handed over as a
   value (``history.Past``: earlier replies, answers to modbot's replies, a cap's pause, which
   the policy turns into holds); a message that breaks a stage, or is too large to read, is
   held with a one-sentence reason and the loop goes on;
3. the message, its decision and any reply intent (with a fixed Message-ID) are recorded in
   one transaction before anything is sent (the rows come from ``modbot.recording``);
4. the keyword marks handled LinkedIn mail (again, for mail recorded by a poll that died before
   marking it); the cursor advances only past recorded messages;
5. due replies are marked ``sending``, sent, copied to the Sent folder, then marked ``sent`` (or
   retried with a bounded backoff kept in the row, or held); a row left in ``sending`` by a crash
   is resolved from the Sent folder or held as "uncertain", never sent again
   (``modbot.delivery``).

The stages of 2 and 5 live in ``modbot.judging`` and ``modbot.delivery`` and are imported only
when there is mail to judge or a reply to send, so that a poll with nothing new starts and runs
fast. The daemon's poller keeps its IMAP connection open between polls and remembers the cursor
it wrote; after any failure it forgets both and looks again for replies a crash left half-sent.

``Poller.checkpoint`` names each of these steps as the poll passes it; it does nothing in a real
poll, and the crash tests kill the process there.

This module never reads the clock (``now`` comes in), never builds a stored row itself and
never logs message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from modbot.config import Account
from modbot.dns import DnsLookup, txt_lookup
from modbot.errors import MailboxError, ModbotError, StoreError
from modbot.history import Answered, Past
from modbot.loaded import files_of, shared
from modbot.mailbox import Mailbox
from modbot.model import (
    CAP_RULES,
    Kind,
    Mode,
)
from modbot.records import message_key
from modbot.store import Pause, Store
from modbot.tls import client_context

if TYPE_CHECKING:
    import ssl

    from modbot.directory.index import Directory
    from modbot.judging import Judgement
    from modbot.recording import Place, Records
    from modbot.render import Templates
    from modbot.triage import Triage

log = logging.getLogger(__name__)

Checkpoint = Callable[[str], None]
BATCH = 200
PURGE_EVERY = timedelta(hours=1)
# A kept connection unused for longer is replaced rather than trusted: servers end idle
# sessions after 30 minutes at the earliest (RFC 9051), NAT boxes often much sooner and silently.
KEEP_OPEN_FOR = timedelta(minutes=10)
# The steps a poll passes, in order, as named to ``Poller.checkpoint``: bodies fetched; one
# message judged; its decision and reply intent recorded; keywords set; cursor advanced; a reply
# marked "sending"; the server confirmed it; its copy is in the Sent folder; the poll finished.
STEPS = ("fetched", "judged", "recorded", "marked", "advanced", "sending", "sent", "copied",
         "done")


class Context:
    """Everything a poll needs, built once when the daemon or a command starts.

    The templates, the directory and the SMTP TLS context are loaded at first use, so that a
    poll with nothing new never pays for them; ``load_all`` loads them at once, for a daemon
    that should refuse to start with a broken template or directory rather than fail at the
    first mail. Contexts whose accounts name the same template folder, or the same directory,
    share one loaded copy (``modbot.loaded``).
    """

    def __init__(self, settings: Account, store_: Store, imap_tls: ssl.SSLContext, *,
                 dkim_lookup: DnsLookup | None = txt_lookup) -> None:
        self.settings = settings
        self.store = store_
        self.imap_tls = imap_tls
        self.dkim_lookup = dkim_lookup

    @classmethod
    def build(cls, settings: Account, *, store_: Store | None = None,
              dkim_lookup: DnsLookup | None = txt_lookup) -> Context:
        return cls(settings, store_ or Store.open(settings.database.url),
                   client_context(settings.imap.ca_file), dkim_lookup=dkim_lookup)

    @cached_property
    def templates(self) -> Templates:
        from modbot.render import Templates, default_templates_dir

        folder = self.settings.templates.dir or default_templates_dir()
        return shared(("templates", folder, files_of(folder)), lambda: Templates.load(folder))

    @cached_property
    def directory(self) -> Directory | None:
        from modbot.directory.combined import open_directory

        settings = self.settings.directory
        return shared(("directory", settings, files_of(settings.csv)),
                       lambda: open_directory(settings))

    @cached_property
    def smtp_tls(self) -> ssl.SSLContext:
        return client_context(self.settings.smtp.ca_file)

    def load_all(self) -> None:
        """Load and compile what is otherwise loaded at first use, so a problem shows now."""
        self.templates.compile_all()
        for name in ("directory", "smtp_tls"):
            getattr(self, name)


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


# Told (messages done, messages in this poll) as the poll goes, e.g. for a progress bar.
Progress = Callable[[int, int], None]


def no_checkpoint(step: str) -> None:
    """The checkpoint of every real poll: it does nothing."""


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


class Poller:
    """Polls one inbox with the stages wired together.

    What it reads and sends is its account's own (cursors, messages, caps, the person window,
    the outbox), so the pollers of several accounts can share one store.

    ``checkpoint`` is called with the name of each step as the poll passes it (see ``STEPS``).
    It exists for the reliability tests, which kill the process at a chosen step to show that a
    crash anywhere loses and repeats nothing; every real poll uses ``no_checkpoint``.
    ``fence``, the daemon's lock check, is called right before each send.
    """

    def __init__(self, ctx: Context, *, checkpoint: Checkpoint = no_checkpoint,
                 progress: Progress | None = None, keep_open: bool = False,
                 fence: Callable[[], None] | None = None) -> None:
        self.ctx = ctx
        self.fence = fence  # raises StoreError once this process may no longer send
        self.progress = progress
        self.settings = ctx.settings
        self.store = ctx.store
        self.account = ctx.settings.account
        self.checkpoint = checkpoint
        self.keep_open = keep_open
        self._mailbox: Mailbox | None = None
        self._used_at: datetime | None = None
        # What this poller knows without asking the store; forgotten after any failure.
        self._cursor: tuple[int, int] | None = None  # (uidvalidity, last UID) of the folder
        self._recheck = True  # look for half-sent replies and an unsent alert
        self._alert_due = False
        self._purged_at: datetime | None = None
        self._poll_id: int | None = None
        # What the store knows while a poll judges mail (``_past``).
        self._answered: Answered | None = None  # what the account answered, during a poll
        self._paused: Pause | None = None
        self._ours: frozenset[str] = frozenset()

    # --- what the store knows, for the policy -------------------------------------------

    def _past(self, uids: Sequence[int], seen: Mapping[int, Triage], now: datetime) -> None:
        """Read what judging a batch needs from the store: what the account answered (once per
        poll; ``_keep`` adds each reply this poll queues), whether its replies are paused, and
        which Message-IDs the batch refers to are modbot's replies."""
        if self._answered is None:
            window = timedelta(days=self.settings.policy.person_window_days)
            self._answered = Answered(self.store.replied(self.account, now - window), now,
                                      window)
        self._paused = self.store.active_pause(self.account)
        named = {r.strip() for uid in uids for r in seen[uid].references if r.strip()}
        self._ours = frozenset(self._ours_among(sorted(named)))

    def _ours_among(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are modbot's replies: one query when none is, which is the rule,
        and a few more, halving, to find the ones that are."""
        if not ids or not self.store.is_our_message_id(ids):
            return set()
        if len(ids) == 1:
            return set(ids)
        half = len(ids) // 2
        return self._ours_among(ids[:half]) | self._ours_among(ids[half:])

    def _known(self) -> Past:
        """What the store knows now, as a value for the pure stages."""
        return Past(self._answered, self._ours,
                    self._paused.started_at if self._paused is not None else None)

    # --- the poll ------------------------------------------------------------------------

    async def poll(self, now: datetime) -> PollReport:
        """One full cycle. Raises ``ModbotError`` when the inbox or the store fails.

        A poll that finds nothing new and nothing due costs one IMAP round trip on a kept
        connection and two small statements; only a poll with work records its start first, so
        that one which dies midway shows in the digest as unfinished.
        """
        report = PollReport()
        self._poll_id = None
        try:
            uidvalidity, uids = await self._look(now)
            report.new_messages = len(uids)
            if self._recheck:  # at start and after a failure: what a crash may have left
                await self._reconcile(now)
            if self._purged_at is None or now - self._purged_at >= PURGE_EVERY:
                retention = timedelta(days=self.settings.policy.retention_days)
                self.store.purge(self.account, now - retention, now)
                self._purged_at = now
            if uids:
                await self._fetch_and_judge(uidvalidity, uids, now, report)
            await self._send_due(now, report)
            self._final_statuses(report)
        except BaseException as exc:
            self._recheck, self._cursor = True, None
            await self._disconnect()
            if isinstance(exc, ModbotError):
                report.errors.append(str(exc))
                # The store may be what failed (locked, disk full): the original error is news.
                with contextlib.suppress(StoreError):
                    self._finished(now, report, error=str(exc))
            raise
        if not self.keep_open:
            await self._disconnect()
        self._finished(now, report)
        self.checkpoint("done")
        return report

    async def close(self) -> None:
        """Log out of a kept connection."""
        await self._disconnect()

    @property
    def connection(self) -> Mailbox | None:
        """The IMAP connection kept open between polls, if any."""
        return self._mailbox

    def _started(self, now: datetime) -> None:
        """Record that a poll with work began (once per poll)."""
        if self._poll_id is None:
            self._poll_id = self.store.poll_started(self.account, now)

    def _finished(self, now: datetime, report: PollReport, error: str | None = None) -> None:
        if self._poll_id is None:
            self.store.record_poll(self.account, now, ok=error is None,
                                   new_messages=report.new_messages, error=error)
        else:
            self.store.poll_finished(self._poll_id, now, ok=error is None,
                                     new_messages=report.new_messages, error=error)

    def _final_statuses(self, report: PollReport) -> None:
        """Tell each handled reply's status after sending, not the "queued" of its intent."""
        ids = [h.outbox_id for h in report.handled if h.outbox_id is not None]
        if not ids:
            return
        statuses = self.store.statuses(ids)
        for handled in report.handled:
            if handled.outbox_id in statuses:
                handled.status = statuses[handled.outbox_id]

    # --- the connection and the cursor ---------------------------------------------------

    async def _connect(self, now: datetime) -> Mailbox:
        if self._used_at is not None and now - self._used_at > KEEP_OPEN_FOR:
            await self._disconnect()
        if self._mailbox is None:
            mailbox = Mailbox(self.settings.imap, self.ctx.imap_tls)
            await asyncio.to_thread(mailbox.__enter__)
            self._mailbox = mailbox
        self._used_at = now
        return self._mailbox

    async def _disconnect(self) -> None:
        mailbox, self._mailbox = self._mailbox, None
        if mailbox is not None:
            await asyncio.to_thread(mailbox.__exit__, None, None, None)

    async def _look(self, now: datetime) -> tuple[int, list[int]]:
        """The folder's UIDVALIDITY and the UIDs after the cursor.

        A kept connection the server has ended meanwhile is replaced once, silently: that is
        how idle IMAP sessions end, not a failure.
        """
        kept = self._mailbox is not None
        mailbox = await self._connect(now)
        try:
            return await self._new_uids(mailbox, now)
        except MailboxError:
            if not kept:
                raise
        await self._disconnect()
        return await self._new_uids(await self._connect(now), now)

    async def _new_uids(self, mailbox: Mailbox, now: datetime) -> tuple[int, list[int]]:
        folder = self.settings.imap.folder
        known = self._cursor

        def select_and_search() -> tuple[int, int | None, list[int] | None]:
            state = mailbox.select(folder)
            if known is not None and known[0] == state.uidvalidity:
                return state.uidvalidity, state.uidnext, mailbox.uids_after(known[1])
            return state.uidvalidity, state.uidnext, None

        # One worker-thread hop in the steady state, where this poller knows the cursor.
        uidvalidity, uidnext, uids = await asyncio.to_thread(select_and_search)
        if uids is not None:
            return uidvalidity, uids
        last = self.store.cursor(self.account, folder, uidvalidity)
        if last is not None:
            self._cursor = (uidvalidity, last)
            return uidvalidity, await asyncio.to_thread(mailbox.uids_after, last)
        if self.store.has_any_cursor(self.account, folder):
            # UIDVALIDITY changed: every UID may now name another message. Re-scan the folder;
            # Message-ID keys in the store keep anything handled from being handled twice.
            log.warning("UIDVALIDITY of %s changed; re-scanning by Message-ID", folder)
            return uidvalidity, await asyncio.to_thread(mailbox.uids_after, 0)
        look_back = self.settings.policy.look_back_days
        if look_back > 0:
            since = (now - timedelta(days=look_back)).date()
            return uidvalidity, await asyncio.to_thread(mailbox.uids_since, since)
        self._advance(uidvalidity, (uidnext or 1) - 1, now)
        return uidvalidity, []

    def _advance(self, uidvalidity: int, last_uid: int, now: datetime) -> None:
        """Move the cursor, in the store and in this poller's memory of it."""
        self._cursor = None  # unknown until the store has it
        self.store.set_cursor(self.account, self.settings.imap.folder, uidvalidity, last_uid,
                              now)
        self._cursor = (uidvalidity, last_uid)

    # --- judging and recording -----------------------------------------------------------

    async def _fetch_and_judge(self, uidvalidity: int, uids: list[int], now: datetime,
                               report: PollReport) -> None:
        from modbot import recording
        from modbot.judging import judge, too_large
        from modbot.triage import triage

        self._started(now)
        mailbox = await self._connect(now)
        folder, limit = self.settings.imap.folder, self.settings.imap.max_message_bytes
        if self.progress is not None:
            self.progress(0, len(uids))
        self._answered = None
        for start in range(0, len(uids), BATCH):
            batch = sorted(uids[start:start + BATCH])
            summaries = await asyncio.to_thread(mailbox.fetch_summaries, batch)
            seen = {uid: triage(s.header) for uid, s in summaries.items()}
            keys = {uid: message_key(seen[uid].message_id, s.header)
                    for uid, s in summaries.items()}
            known = self.store.known_kinds(self.account, list(keys.values()))
            # Recorded by a poll that died before setting the keyword: set it now.
            marked = [uid for uid, key in keys.items()
                      if known.get(key, Kind.NOT_LINKEDIN.value) != Kind.NOT_LINKEDIN.value]
            candidates = [uid for uid in batch
                          if uid in summaries and keys[uid] not in known and seen[uid].candidate]
            report.candidates += len(candidates)
            answers = self._answers(candidates, seen)
            judged = [uid for uid in candidates if uid not in answers]
            if judged:
                self._past(judged, seen, now)
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
                    place = recording.Place(self.account, folder, uidvalidity, uid, keys[uid])
                    raw = bodies.get(uid) if fetchable[uid] else None
                    if fetchable[uid] and raw is None:
                        continue  # expunged between the two fetches: nothing to answer
                    if raw is not None and uid in answers:  # modbot's own mail, answered
                        records = await asyncio.to_thread(self._answer, raw, place, now)
                        self._paused = self.store.active_pause(self.account)  # "resume"?
                        self.checkpoint("judged")
                        self._keep(uid, records, report)
                        continue  # mail that is not LinkedIn's gets no keyword
                    if raw is not None:
                        judgement = await asyncio.to_thread(
                            judge, raw, self.settings.policy, self.ctx.directory,
                            self.ctx.dkim_lookup, self.settings.classify.compiled_rules,
                            past=self._known())
                    else:
                        judgement = too_large(summaries[uid], limit)
                    self._pause_if_capped(judgement, now)
                    self.checkpoint("judged")
                    self._keep(uid, self._records(judgement, place, now), report)
                    if judgement.classification.kind is not Kind.NOT_LINKEDIN:
                        marked.append(uid)
            if marked:
                await asyncio.to_thread(mailbox.add_keyword, marked, self.settings.imap.keyword)
                self.checkpoint("marked")
            self._advance(uidvalidity, batch[-1], now)
            self.checkpoint("advanced")
            if self.progress is not None:
                self.progress(min(start + BATCH, len(uids)), len(uids))

    def _answers(self, candidates: Sequence[int], seen: Mapping[int, Triage]) -> set[int]:
        """The candidates that answer a review email, digest or pause alert: one query for the
        batch, and one per candidate only when the batch holds such an answer."""
        from modbot.review import refers_to_review_mail

        named = {uid: seen[uid].answers for uid in candidates if seen[uid].answers}
        every = list(dict.fromkeys(i for ids in named.values() for i in ids))
        if not every or not refers_to_review_mail(every, self.store):
            return set()
        return {uid for uid, ids in named.items() if refers_to_review_mail(ids, self.store)}

    def _answer(self, raw: bytes, place: Place, now: datetime) -> Records:
        """Act on the counselor's answer to modbot's own mail; the rows that record it."""
        from modbot import recording, review

        outcome = review.handle_answer(self.store, self.settings, raw, now,
                                       self.ctx.dkim_lookup)
        if outcome.acted:  # the first finding says what the answer did
            reasons = outcome.findings
        else:
            reasons = ("an answer to a review email or digest was ignored", *outcome.findings)
        return recording.answer_records(place, now, acted=outcome.acted, reasons=reasons)

    def _pause_if_capped(self, j: Judgement, now: datetime) -> None:
        """Start the pause when a cap is first reached (in review or automatic mode); from then
        on the policy holds every reply of the account until the counselor resumes them."""
        d = j.decision
        if d.rule in CAP_RULES and d.mode is not Mode.SHADOW and self._paused is None:
            from modbot.render import make_message_id

            self._paused = self.store.start_pause(
                self.account, d.reasons[0], now, make_message_id(self.settings.counselor.domain))
            self._alert_due = True
            log.warning("a reply cap was reached; automatic replies are paused")

    def _records(self, j: Judgement, place: Place, now: datetime) -> Records:
        """The rows that record ``j``, with a new Message-ID for a reply."""
        from modbot import recording
        from modbot.render import make_message_id

        message_id = make_message_id(self.settings.counselor.domain) \
            if recording.replies(j) else None
        return recording.records(j, place, now, reply_message_id=message_id,
                                 redirect_all_to=self.settings.policy.redirect_all_to)

    def _keep(self, uid: int, records: Records, report: PollReport) -> None:
        """Record one message in the store and in the report; count a queued reply at once."""
        message, reply = records.message, records.reply
        try:
            outbox_id = self.store.record(message, reply)
        except StoreError:
            if not self.store.known_keys(self.account, [message.message_key]):
                raise
            outbox_id = None  # recorded meanwhile by another poll: it is handled
        else:
            if records.queued is not None and self._answered is not None:
                self._answered.add(records.queued)
            # At DEBUG: the daemon logs one line per poll at INFO. Identifiers only.
            log.debug("uid %s: %s -> %s (%s)", uid, message.kind, message.action,
                      message.policy_rule)
            report.handled.append(Handled(
                uid, message.kind, message.action, message.policy_rule, message.reasons,
                message.person_name, reply.recipient_email if reply is not None else None,
                records.status, outbox_id))
        self.checkpoint("recorded")

    # --- sending -------------------------------------------------------------------------

    async def _reconcile(self, now: datetime) -> None:
        """Resolve replies a crash left half-sent; note whether an alert waits to be sent."""
        if self.store.in_flight(self.account):
            from modbot.delivery import reconcile

            self._started(now)
            await reconcile(self.store, self.account, await self._connect(now),
                            self.settings.imap.sent_folder, now)
        self._alert_due = self.store.alert_due(self.account) is not None
        self._recheck = False

    async def _send_due(self, now: datetime, report: PollReport) -> None:
        alert = self.store.alert_due(self.account) if self._alert_due else None
        due = self.store.due(self.account, now)
        self._alert_due = False
        if not due and alert is None:
            return
        from modbot.delivery import Delivery

        self._started(now)
        delivery = Delivery(self.settings, self.store, self.ctx.templates,
                            await self._connect(now), self.checkpoint, self.fence)
        try:
            await delivery.run(self.ctx.smtp_tls, alert, due, now)
        finally:
            report.sent.extend(delivery.sent)
            report.errors.extend(delivery.errors)
            # An alert given back for a retry is looked for again at the next poll.
            self._alert_due = alert is not None and bool(delivery.errors)


async def poll_once(ctx: Context, now: datetime, progress: Progress | None = None) -> PollReport:
    """One poll at ``now``, which the caller read from its clock."""
    return await Poller(ctx, progress=progress).poll(now)

