"""Sending one account's due replies and its pause alert, and resolving replies a crash left
half-sent.

The order per reply is the safety argument: the reply is built; its row is marked ``sending``;
the SMTP server confirms it; a copy goes to the Sent folder; the row is marked ``sent``. A
temporary refusal is retried with a bounded backoff kept in the row; a permanent one, or too many
attempts, is held for the counselor. A line that drops after DATA is held as "may have been
sent", and a row a crash left in ``sending`` is resolved from the Sent folder or held the same
way: never sent twice. Marking a reply ``sending`` is a compare-and-set only one process can
win, so two daemons that both see a reply due send it once; and the daemon's lock is checked
(``fence``) right before each send, so a daemon that lost its account sends nothing more for it.
``modbot.poll`` imports this module only when something is due. The
alert carries a one-time token (``modbot.review.register_pause_alert``), so the counselor can
answer it with "resume", checked exactly as an answer to the digest is.

This module never reads the clock (``now`` comes in) and never logs message content.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage

from modbot import render
from modbot.config import Account
from modbot.errors import MaybeSentError, ModbotError, SendError, TemporarySendError
from modbot.mailbox import Mailbox
from modbot.model import Person, Recipient
from modbot.outbox import Prepared, Sender, prepare
from modbot.review import ALERT_TOKEN, register_pause_alert, review_email_failed
from modbot.store import OutboxItem, OutboxStatus, Pause, Store

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 6  # then the reply is held as failed for the counselor
MAX_BACKOFF = timedelta(hours=1)
UNCONFIRMED = ("the reply may have been sent: the connection ended before the server "
               "confirmed it; held so it is never sent twice")


def backoff(attempts: int) -> timedelta:
    """How long a temporarily refused reply waits before attempt ``attempts + 1``.

    2, 4, 8, 16, 32 minutes, never more than an hour: kept in the outbox row, so it holds
    across polls and restarts.
    """
    return min(timedelta(minutes=2 ** attempts), MAX_BACKOFF)


def alert_message(settings: Account, pause: Pause, now: datetime,
                  reference: str | None = None) -> EmailMessage:
    """The one email that tells the counselor that replies are paused, and how to resume.

    With ``reference``, the one-time token recorded for the alert's Message-ID, an answer
    "resume" to it starts the replies again; without, the counselor is told to answer the next
    digest or ask IT.
    """
    counselor = settings.counselor
    if reference:
        expires = now + ALERT_TOKEN
        # The word is quoted, so no wrapped line of this text reads as the command itself.
        how = (f'To start automatic replies again, answer this email with "resume" as the '
               f"first line. Only an answer from {counselor.email} counts, and only once. IT "
               "can also run this on the server:\n\n    modbot resume\n\n"
               f"Reference: MR-{reference} (valid until {expires:%Y-%m-%d %H:%M} UTC).\n\n")
    else:
        how = ('To start automatic replies again, answer the next weekly digest with "resume", '
               "or ask IT to run this on the server:\n\n    modbot resume\n\n")
    message = render.to_counselor(
        name=counselor.name, email=counselor.email,
        subject="modbot has paused its replies" + (f" [MR-{reference}]" if reference else ""),
        date=now, message_id=pause.alert_message_id)
    message.set_content(
        f"modbot stopped sending automatic replies at {pause.started_at:%Y-%m-%d %H:%M} UTC.\n\n"
        f"Why: {pause.reason}\n\n"
        "Reaching a cap usually means a burst of mail that deserves a look: a flood of "
        "invitations, a forwarding loop, or a class that all wrote at once. Until you resume, "
        "every notification that would have been answered is recorded and held for you; "
        "nothing is lost and nothing is sent. The weekly digest lists what waits (IT sees it "
        "with `modbot held`).\n\n"
        f"{how}"
        "This is the only message about this pause.\n"
    )
    return message


async def reconcile(store_: Store, account: str, mailbox: Mailbox, sent_folder: str | None,
                    now: datetime) -> None:
    """Resolve replies a crash left between "sending" and "sent": sent if their copy is in the
    Sent folder, otherwise held as "may have been sent"."""
    for item in store_.in_flight(account):
        found = sent_folder is not None and await asyncio.to_thread(
            mailbox.find_message_id, sent_folder, item.message_id)
        if found:
            store_.mark(item.id, OutboxStatus.SENT, now=now)
        else:
            store_.mark(item.id, OutboxStatus.UNCERTAIN, now=now, error=UNCONFIRMED)


class Delivery:
    """One send run: the alert, then each due reply, over one SMTP connection.

    ``sent`` and ``errors`` tell what happened; ``checkpoint`` is the poll's (see
    ``modbot.poll.STEPS``).
    """

    def __init__(self, settings: Account, store_: Store, templates: render.Templates,
                 mailbox: Mailbox, checkpoint: Callable[[str], None],
                 fence: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.fence = fence or (lambda: None)
        self.store = store_
        self.templates = templates
        self.mailbox = mailbox
        self.checkpoint = checkpoint
        self.sent: list[str] = []
        self.errors: list[str] = []
        self._copies = True  # whether to keep copies in the Sent folder during this run
        self._confirmed: int | None = None  # confirmed by the server, not yet recorded as sent

    async def run(self, smtp_tls: ssl.SSLContext, alert: Pause | None,
                  due: Sequence[OutboxItem], now: datetime) -> None:
        """Send the alert (if any), then each reply in ``due``, over one connection; a reply's
        "sent" is recorded in the same transaction as the next one's "sending"."""
        try:
            async with Sender(self.settings.smtp, smtp_tls) as sender:
                if alert is not None:
                    await self._send_alert(sender, alert, now)
                await self._send_replies(sender, due, now)
        except SendError as exc:  # could not connect at all: nothing was marked "sending"
            self.errors.append(str(exc))
            log.warning("sending postponed: %s", exc)

    async def _send_replies(self, sender: Sender, due: Sequence[OutboxItem],
                            now: datetime) -> None:
        try:
            for item in due:
                await self._send_one(sender, item, self._build(item, now), now)
        finally:
            self._record_confirmed(now)

    async def _send_alert(self, sender: Sender, alert: Pause, now: datetime) -> None:
        # Claimed before sending: a crash or an unconfirmed send loses the alert, never doubles it.
        self.fence()
        if not self.store.claim_alert(alert.id, now=now):
            return  # another daemon claimed it
        reference = register_pause_alert(self.store, self.settings, alert.alert_message_id,
                                         alert.id, now)
        try:
            await sender.send(alert_message(self.settings, alert, now, reference))
        except MaybeSentError as exc:  # it may have arrived: its token stays answerable
            self.errors.append(str(exc))
        except SendError as exc:
            self.store.mark_alert(alert.id, now=now, released=True)  # surely not sent: retry
            review_email_failed(self.store, alert.alert_message_id)  # and a new token then
            self.errors.append(str(exc))
        else:
            self.store.mark_alert(alert.id, now=now, sent=True)

    def _build(self, item: OutboxItem, now: datetime) -> Prepared | str:
        """The reply ready for the wire, or why it cannot be built."""
        try:
            return prepare(render.reply_message(
                self.templates, template=item.template, counselor=self.settings.counselor,
                recipient=Recipient(item.recipient_name or "", item.recipient_email, "outbox"),
                person=Person(name=item.person_name), message_id=item.message_id, date=now,
                redirect_to=item.redirected_to))
        except (ModbotError, ValueError) as exc:  # a broken template or unusable address
            return str(exc)

    def _record_confirmed(self, now: datetime, sending: int | None = None) -> bool:
        """Record the reply confirmed last as sent, with ``sending`` as being sent; False if
        ``sending`` was no longer due (another process claimed it)."""
        confirmed, self._confirmed = self._confirmed, None
        if confirmed is not None or sending is not None:
            return self.store.hand_over(sent=confirmed, sending=sending, now=now)
        return True

    async def _send_one(self, sender: Sender, item: OutboxItem, built: Prepared | str,
                        now: datetime) -> None:
        if isinstance(built, str):
            self._record_confirmed(now)
            self.store.mark(item.id, OutboxStatus.FAILED, now=now,
                            error=f"the reply could not be built: {built}")
            self.errors.append(built)
            return
        self.fence()
        if not self._record_confirmed(now, sending=item.id):
            return  # claimed by another daemon, or settled by the counselor meanwhile
        self.checkpoint("sending")
        try:
            self.fence()
        except ModbotError:
            self.store.unclaim(item.id)  # surely not sent: due again for whoever holds it
            raise
        try:
            await sender.send(built)
        except MaybeSentError as exc:  # the line dropped after DATA: never resend blindly
            self.store.mark(item.id, OutboxStatus.UNCERTAIN, now=now, error=str(exc))
            self.errors.append(str(exc))
            return
        except TemporarySendError as exc:
            attempts = item.attempts + 1
            if attempts >= MAX_SEND_ATTEMPTS:
                self.store.mark(item.id, OutboxStatus.FAILED, now=now, error=(
                    f"gave up after {attempts} attempts: {exc}"))
            else:
                self.store.mark(item.id, OutboxStatus.RETRY, now=now, error=str(exc),
                                next_attempt_at=now + backoff(attempts))
            self.errors.append(str(exc))
            return
        except SendError as exc:
            self.store.mark(item.id, OutboxStatus.FAILED, now=now, error=str(exc))
            self.errors.append(str(exc))
            return
        self.checkpoint("sent")
        # The copy goes to the Sent folder before "sent" is recorded: a crash in between is then
        # resolved by finding the copy there, and a copy exists only for a confirmed send.
        sent_folder = self.settings.imap.sent_folder
        if sent_folder and self._copies:
            try:
                await asyncio.to_thread(self.mailbox.append, sent_folder, built.data)
            except ModbotError as exc:
                self._copies = False  # the connection is gone; do not wait on it per reply
                log.warning("could not keep a copy in %s: %s", sent_folder, exc)
            self.checkpoint("copied")
        self._confirmed = item.id  # recorded with the next reply's "sending", or at the end
        self.sent.append(item.message_id)
