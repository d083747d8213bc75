"""The IMAP edge: find and read new notifications without disturbing the counselor's mailbox.

What it is for: connect with verified TLS and a timeout, select the watched folder and report its
UIDVALIDITY, list UIDs after the stored cursor, fetch headers in batches and whole messages for the
candidates, mark handled messages with modbot's keyword where the server allows keywords, keep a
copy of sent replies, look a reply up by Message-ID in the Sent folder, and wait in IDLE (RFC 2177)
for the server to report new mail.

What it must never do:

- set or clear ``\\Seen``, or any flag but modbot's own keyword: messages are read with
  ``BODY.PEEK[...]``, never with ``RFC822`` or ``BODY[...]``, which mark them read;
- log envelopes, headers or bodies, or put them (or the password) into an error message; this
  includes imapclient's own DEBUG log, which is why ``Mailbox`` keeps it at WARNING;
- wait forever: imapclient has no timeout of its own, so every connection gets the configured one.

Every failure leaves as ``MailboxError`` (``MailboxAuthError`` when the login is refused) with one
sentence. The calls block; the daemon runs them with ``asyncio.to_thread``. A ``Mailbox`` is one
connection, for one thread at a time (``abort`` alone may be called from another thread).
"""

from __future__ import annotations

import contextlib
import datetime
import imaplib
import re
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, LoginError, ProtocolError

from modbot import logs
from modbot.config import ImapSettings
from modbot.errors import MailboxAuthError, MailboxError
from modbot.model import HEADER_LIMIT, Summary

__all__ = ["FETCH_BATCH", "HEADER_LIMIT", "FolderState", "Mailbox", "Summary"]

FETCH_BATCH = 500  # UIDs per FETCH: one round trip per batch, never one per message

_HEADER_ITEM = b"BODY.PEEK[HEADER]"
_HEADER_KEY = b"BODY[HEADER]"
_MESSAGE_ITEM = b"BODY.PEEK[]"
_MESSAGE_KEY = b"BODY[]"
_SUMMARY_ITEMS = (b"BODY.PEEK[HEADER]<0.%d>" % HEADER_LIMIT, b"RFC822.SIZE")
_PARTIAL_HEADER_KEY = b"BODY[HEADER]<0>"
_SIZE_KEY = b"RFC822.SIZE"
_MESSAGE_ID_ITEM = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
_MESSAGE_ID_KEY = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"

# imapclient sends every command and response to these loggers at DEBUG ("imapclient.imaplib"
# carries the raw protocol): FETCH answers hold names, addresses, subjects and whole messages.
_IMAPCLIENT_LOGGERS = ("imapclient", "imapclient.imaplib", "imapclient.imapclient")
_BYTES_REPR = re.compile(r"""\bb(['"])(.*?)\1""")
_SPACE = re.compile(r"\s+")
_NOT_REFUSALS = ("[UNAVAILABLE]", "[SERVERBUG]", "[LIMIT]", "[INUSE]")
# An IDLE wait that returns empty within half its timeout this many times in a row means the
# connection ended: a healthy one either answers or stays silent for the whole wait (a lone TLS
# record without data, such as a key update, can wake one wait, not three).
_ENDED_AFTER_EMPTY_WAKEUPS = 3


@dataclass(frozen=True)
class FolderState:
    """What SELECT reported about a folder.

    ``keywords_allowed`` is true when ``PERMANENTFLAGS`` contains ``\\*``, i.e. the server stores
    new keywords such as ``$ModbotDone``.
    """

    uidvalidity: int
    uidnext: int | None
    exists: int
    keywords_allowed: bool


def keep_imapclient_quiet() -> None:
    """Hold imapclient's loggers at WARNING or above, whatever level the application logs at.

    At DEBUG imapclient logs the whole protocol exchange, so a counselor who turns on debug
    logging to look at modbot would otherwise write students' names, addresses and messages into
    the log. A level set lower (or left unset, which inherits the root's) is raised to WARNING.
    """
    logs.hold_at_warning(*_IMAPCLIENT_LOGGERS)


class Mailbox:
    """One IMAP connection, used as a context manager::

        with Mailbox(settings.imap, context) as mailbox:
            state = mailbox.select(settings.imap.folder)
            new = mailbox.uids_after(cursor)
    """

    def __init__(self, settings: ImapSettings, ssl_context: ssl.SSLContext) -> None:
        self._settings = settings
        self._ssl_context = ssl_context
        self._client: IMAPClient | None = None
        self._selected: str | None = None
        self._state: FolderState | None = None
        self._permanent_flags: frozenset[str] = frozenset()
        self._where = f"{settings.host}:{settings.port}"
        self._idling = False
        self._empty_wakeups = 0

    # connection -------------------------------------------------------------------------------

    def __enter__(self) -> Mailbox:
        keep_imapclient_quiet()
        settings = self._settings
        implicit_tls = settings.security == "tls"
        with self._errors("connecting to"):
            client = IMAPClient(
                settings.host,
                settings.port,
                ssl=implicit_tls,
                ssl_context=self._ssl_context if implicit_tls else None,
                timeout=settings.timeout_seconds,
            )
        try:
            if settings.security == "starttls":
                self._start_tls(client)
            if settings.auth == "oauth2":
                from modbot.oauth import imap_token  # refreshed, if need be, at every login

                token = imap_token(settings, self._ssl_context)
                with self._errors("logging in to"):
                    client.oauth2_login(settings.username, token)
            elif settings.password is not None:
                with self._errors("logging in to"):
                    client.login(settings.username, settings.password.get_secret_value())
        except BaseException:
            _close_quietly(client)
            raise
        self._client = client
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._idling:
            with contextlib.suppress(MailboxError):
                self.idle_done()
        client, self._client = self._client, None
        self._selected = self._state = None
        if client is not None:
            try:
                client.logout()
            except Exception:
                _close_quietly(client)

    def _start_tls(self, client: IMAPClient) -> None:
        with self._errors("starting TLS with"):
            offered = client.has_capability("STARTTLS")
        if not offered:
            raise MailboxError(
                f"The IMAP server {self._where} does not offer STARTTLS, so modbot will not log "
                "in over the unencrypted connection."
            )
        with self._errors("starting TLS with"):
            client.starttls(self._ssl_context)

    # folder -----------------------------------------------------------------------------------

    def select(self, folder: str, *, readonly: bool = False) -> FolderState:
        """Open ``folder`` read-write (to set keywords; ``\\Seen`` is never touched), or with
        ``readonly`` as EXAMINE does, e.g. only to wait in IDLE."""
        client = self._connected()
        with self._errors(f"selecting folder {folder!r} on"):
            answer = client.select_folder(folder, readonly=readonly)
        return self._remember(folder, answer)

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid`` in the selected folder, ascending.

        ``UID SEARCH UID n:*`` answers with the highest existing UID even when it is below ``n``
        (``*`` is the last message), so the answer is filtered here.
        """
        client = self._selected_client()
        first = max(last_uid, 0) + 1
        with self._errors("searching new messages on"):
            found = client.search(["UID", f"{first}:*"])
        return sorted({int(uid) for uid in found if int(uid) > last_uid})

    def uids_since(self, day: datetime.date) -> list[int]:
        """UIDs of messages that arrived on or after ``day`` (internal date), ascending."""
        client = self._selected_client()
        with self._errors("searching recent messages on"):
            found = client.search(["SINCE", day])
        return sorted({int(uid) for uid in found})

    # reading ----------------------------------------------------------------------------------

    def fetch_headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw header block of each message, fetched in batches; vanished UIDs are absent."""
        return self._fetch(uids, _HEADER_ITEM, _HEADER_KEY, "fetching headers from")

    def fetch_summaries(self, uids: Sequence[int]) -> dict[int, Summary]:
        """Each message's header block (at most ``HEADER_LIMIT`` bytes) and size, in batches.

        Vanished UIDs are absent. Nothing is marked read (``BODY.PEEK``).
        """
        client = self._selected_client()
        result: dict[int, Summary] = {}
        for batch in _batches(uids):
            with self._errors("fetching headers from"):
                answer = client.fetch(batch, list(_SUMMARY_ITEMS))
            for uid, data in answer.items():
                header = data.get(_PARTIAL_HEADER_KEY, data.get(_HEADER_KEY))
                size = data.get(_SIZE_KEY)
                if isinstance(header, bytes) and isinstance(size, int):
                    result[int(uid)] = Summary(header, size)
        return result

    def fetch_messages(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The whole raw message of each UID, without marking it read; vanished UIDs are absent."""
        return self._fetch(uids, _MESSAGE_ITEM, _MESSAGE_KEY, "fetching messages from")

    def flags(self, uids: Sequence[int]) -> dict[int, tuple[str, ...]]:
        """The stored flags and keywords of each message, e.g. ``("\\Seen", "$ModbotDone")``.

        ``\\Recent`` is left out: it describes this connection, not the message.
        """
        client = self._selected_client()
        result: dict[int, tuple[str, ...]] = {}
        for batch in _batches(uids):
            with self._errors("reading flags from"):
                answer = client.get_flags(batch)
            for uid, flags in answer.items():
                texts = (_text(flag) for flag in flags)
                result[int(uid)] = tuple(flag for flag in texts if flag.lower() != "\\recent")
        return result

    # writing ----------------------------------------------------------------------------------

    def add_keyword(self, uids: Sequence[int], keyword: str) -> bool:
        """Set ``keyword`` on the messages; False, sending nothing, if the folder cannot keep it."""
        client = self._selected_client()
        allowed = self._state is not None and self._state.keywords_allowed
        if not (allowed or keyword in self._permanent_flags):
            return False
        for batch in _batches(uids):
            with self._errors("setting the keyword on"):
                client.add_flags(batch, [keyword], silent=True)
        return True

    def append(self, folder: str, message: bytes, flags: Sequence[str] = ("\\Seen",)) -> None:
        """Store ``message`` in ``folder`` with ``flags``, creating the folder if it is missing."""
        client = self._connected()
        with self._errors(f"storing a message in folder {folder!r} on"):
            if not client.folder_exists(folder):
                try:
                    client.create_folder(folder)
                except imaplib.IMAP4.error:
                    # Created meanwhile by another client: fine. Otherwise APPEND will say why.
                    if not client.folder_exists(folder):
                        raise
            client.append(folder, message, flags=tuple(flags))

    def find_message_id(self, folder: str, message_id: str) -> bool:
        """Whether ``folder`` holds a message whose Message-ID is ``message_id``.

        Used to learn whether a reply reached the Sent folder. A missing folder answers False. The
        search needs ``folder`` selected; it is opened read-only and the folder selected before is
        selected again afterwards.
        """
        if not message_id.isascii() or any(c in message_id for c in "\r\n\0"):
            raise ValueError("a Message-ID is ASCII on one line")
        wanted = _normalise_message_id(message_id)
        client = self._connected()
        previous = self._selected
        with self._errors(f"searching folder {folder!r} on"):
            if not client.folder_exists(folder):
                return False
            client.select_folder(folder, readonly=True)
            self._selected = self._state = None
            try:
                # HEADER search is a substring match: confirm each hit by its exact header.
                hits = client.search(["HEADER", "Message-ID", message_id])
                found = False
                for batch in _batches(hits):
                    answer = client.fetch(batch, [_MESSAGE_ID_ITEM])
                    found = found or any(
                        _normalise_message_id(_header_value(item.get(_MESSAGE_ID_KEY))) == wanted
                        for item in answer.values()
                    )
            finally:
                if previous is not None:
                    self._remember(previous, client.select_folder(previous, readonly=False))
        return found

    # waiting for news (RFC 2177) -------------------------------------------------------------

    def supports_idle(self) -> bool:
        """Whether the server offers IDLE (its CAPABILITY after login)."""
        client = self._connected()
        with self._errors("reading the capabilities of"):
            return bool(client.has_capability("IDLE"))

    def idle_start(self) -> None:
        """Enter IDLE on the selected folder; the server then reports changes as they happen.

        Servers end IDLE after 30 minutes of silence at the latest (RFC 2177 asks clients to
        re-issue it within 29): leave it with ``idle_done`` and enter it again well before.
        """
        client = self._selected_client()
        self._empty_wakeups = 0
        with self._errors("starting IDLE on"):
            client.idle()
        self._idling = True

    def idle_wait(self, timeout: float) -> bool:
        """Wait in IDLE at most ``timeout`` seconds; True when the server reported new mail.

        New mail is an ``EXISTS`` or a non-zero ``RECENT``; flag changes (e.g. modbot's own
        keyword set by the poll) are not news. A server that says ``BYE``, or a connection that
        ended, raises ``MailboxError``: imapclient reads an ended connection as "nothing yet",
        which shows only as waits that return at once and empty, again and again.
        """
        client = self._selected_client()
        started = time.monotonic()
        with self._errors("waiting in IDLE on"):
            responses = client.idle_check(timeout)
        return self._idle_news(responses, time.monotonic() - started >= timeout / 2)

    def idle_fileno(self) -> int:
        """The connection's socket, for an event loop to watch while it waits in IDLE (no
        thread then waits on it); ``idle_read`` reads what the server sent once it is
        readable."""
        client = self._selected_client()
        with self._errors("waiting in IDLE on"):
            return int(client.socket().fileno())

    def idle_read(self) -> bool:
        """Read what the server sent in IDLE, its socket being readable; True when it reported
        new mail. Raises as ``idle_wait`` does: a socket readable with nothing to read, again
        and again, is a connection that ended."""
        client = self._selected_client()
        with self._errors("waiting in IDLE on"):
            responses = client.idle_check(0)
        return self._idle_news(responses, waited=False)

    def _idle_news(self, responses: list[Any], waited: bool) -> bool:
        """Whether ``responses`` report new mail; raises on BYE, and on the empty wake-ups,
        again and again without having ``waited``, of a connection that ended."""
        if any(_is_bye(response) for response in responses):
            raise MailboxError(f"The IMAP server {self._where} closed the IDLE connection.")
        if responses or waited:
            self._empty_wakeups = 0
        else:
            self._empty_wakeups += 1
            if self._empty_wakeups >= _ENDED_AFTER_EMPTY_WAKEUPS:
                raise MailboxError(f"The connection to the IMAP server {self._where} ended.")
        return _reports_new_mail(responses)

    def idle_done(self) -> bool:
        """Leave IDLE (if in it); True when the server reported new mail in its last responses."""
        client = self._selected_client()
        if not self._idling:
            return False
        self._idling = False  # even when DONE fails: the connection is then of no more use
        with self._errors("ending IDLE on"):
            _, responses = client.idle_done()
        return _reports_new_mail(responses)

    def noop(self) -> bool:
        """Prove the connection alive (NOOP, RFC 3501 6.1.2); True when new mail was reported."""
        client = self._connected()
        with self._errors("checking the connection to"):
            _, responses = client.noop()
        return _reports_new_mail(responses)

    def abort(self) -> None:
        """Cut the connection at once, from any thread: a call blocked on it fails promptly.

        For stopping when the server does not answer; ``__exit__`` still cleans up after it.
        """
        self._idling = False
        client = self._client
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.socket().shutdown(socket.SHUT_RDWR)

    # internals --------------------------------------------------------------------------------

    def _fetch(self, uids: Sequence[int], item: bytes, key: bytes, action: str) -> dict[int, bytes]:
        client = self._selected_client()
        result: dict[int, bytes] = {}
        for batch in _batches(uids):
            with self._errors(action):
                answer = client.fetch(batch, [item])
            for uid, data in answer.items():
                # Servers may add unsolicited FETCH responses (e.g. flag changes) without the item.
                value = data.get(key)
                if isinstance(value, bytes):
                    result[int(uid)] = value
        return result

    def _remember(self, folder: str, answer: dict[bytes, Any]) -> FolderState:
        uidvalidity = answer.get(b"UIDVALIDITY")
        if not isinstance(uidvalidity, int):
            raise MailboxError(
                f"The IMAP server {self._where} did not report the UIDVALIDITY of folder "
                f"{folder!r}, so new messages cannot be told from old ones."
            )
        uidnext = answer.get(b"UIDNEXT")
        exists = answer.get(b"EXISTS")
        permanent = frozenset(_text(flag) for flag in answer.get(b"PERMANENTFLAGS", ()))
        state = FolderState(
            uidvalidity=uidvalidity,
            uidnext=uidnext if isinstance(uidnext, int) else None,
            exists=exists if isinstance(exists, int) else 0,
            keywords_allowed="\\*" in permanent,
        )
        self._selected, self._state, self._permanent_flags = folder, state, permanent
        return state

    def _connected(self) -> IMAPClient:
        if self._client is None:
            raise MailboxError("The mailbox is not connected; use it inside a with block.")
        return self._client

    def _selected_client(self) -> IMAPClient:
        client = self._connected()
        if self._selected is None:
            raise MailboxError("No folder is selected; call select() first.")
        return client

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn library, socket and TLS exceptions into one-sentence ``MailboxError``s."""
        try:
            yield
        except MailboxError:
            raise
        except LoginError as exc:
            text = _server_text(exc, self._secret())
            if _is_refusal(exc, text):
                raise MailboxAuthError(
                    f"The IMAP server {self._where} refused the login of "
                    f"{self._settings.username!r}: {text}."
                ) from None
            raise MailboxError(
                f"Logging in to the IMAP server {self._where} failed: {text}."
            ) from None
        except (imaplib.IMAP4.error, OSError) as exc:
            reason = _reason(exc, self._settings.timeout_seconds, self._secret())
            raise MailboxError(
                f"{action[:1].upper()}{action[1:]} the IMAP server {self._where} failed: {reason}."
            ) from None

    def _secret(self) -> str | None:
        password = self._settings.password
        return password.get_secret_value() if password is not None else None


# module-level functions ---------------------------------------------------------------------


def _batches(uids: Sequence[int]) -> Iterator[list[int]]:
    ordered = sorted({int(uid) for uid in uids})
    for start in range(0, len(ordered), FETCH_BATCH):
        yield ordered[start:start + FETCH_BATCH]


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _header_value(block: object) -> str:
    """The value of the one header in a ``HEADER.FIELDS`` answer (folded lines joined)."""
    if not isinstance(block, bytes):
        return ""
    text = block.decode("ascii", "replace")
    _, _, value = text.partition(":")
    return _SPACE.sub("", value)


def _reports_new_mail(responses: Sequence[Any]) -> bool:
    """Whether untagged responses, as imapclient parses them, say that mail arrived."""
    return any(
        isinstance(r, tuple) and len(r) >= 2 and isinstance(r[0], int)
        and (r[1] == b"EXISTS" or (r[1] == b"RECENT" and r[0] > 0))
        for r in responses)


def _is_bye(response: object) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"


def _normalise_message_id(value: str) -> str:
    return _SPACE.sub("", value).strip("<>").lower()


def _close_quietly(client: IMAPClient) -> None:
    # Closing a connection that is already broken: there is nothing left to report.
    with contextlib.suppress(Exception):
        client.shutdown()


def _timed_out(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_refusal(exc: LoginError, text: str) -> bool:
    """A refused login, not a broken line or a server-side outage reported during LOGIN."""
    if isinstance(exc.__context__, imaplib.IMAP4.abort | OSError):
        return False
    return not any(code in text.upper() for code in _NOT_REFUSALS)


def _server_text(exc: BaseException, secret: str | None) -> str:
    """The server's words, cleaned: one line, no ``b'...'``, never the password, at most 160."""
    text = _BYTES_REPR.sub(r"\2", str(exc))
    if secret:
        text = text.replace(secret, "***")
    text = _SPACE.sub(" ", text).strip().rstrip(".")
    if len(text) > 160:
        text = text[:157] + "..."
    return text or type(exc).__name__


def _reason(exc: BaseException, timeout: float, secret: str | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its TLS certificate was refused ({exc.verify_message or exc.reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or type(exc).__name__})"
    if _timed_out(exc):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, CapabilityError):
        return f"the server lacks a needed capability ({_server_text(exc, secret)})"
    if isinstance(exc, imaplib.IMAP4.abort | ProtocolError):
        # Their text may quote a raw response line, which can hold message data: leave it out.
        return "the connection broke or the server's answer could not be read"
    if isinstance(exc, imaplib.IMAP4.error):
        return f"the server answered: {_server_text(exc, secret)}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__  # pragma: no cover
