"""The SMTP edge: hand replies to the counselor's outgoing server over verified TLS.

``security = "tls"`` speaks TLS from the first byte; ``"starttls"`` upgrades a plain connection and
refuses to go on when the server does not offer STARTTLS (aiosmtplib's default would carry on in
clear text, password included); ``"none"`` is plain SMTP, which the configuration allows only on a
loopback host. Every connection shares one ``ssl.SSLContext`` and has the configured timeout.

Every failure leaves as one ``SendError``, whose one-sentence message names the SMTP code but never
the password, the message or an address:

- ``TemporarySendError``: 4xx answers, timeouts, refused or dropped connections before the message
  was handed over. Nothing was delivered; try again later.
- ``PermanentSendError``: 5xx answers, every recipient refused, certificate or TLS failures, no
  STARTTLS, a refused login. Retrying cannot help; hold the reply for the counselor.
- ``MaybeSentError``: the line dropped or timed out after the message went out and before the
  server confirmed it (RFC 1047). It may have been delivered; never resend it blindly.
"""

from __future__ import annotations

import asyncio
import email.message
import logging
import re
import ssl
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.utils import getaddresses
from types import TracebackType

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message

from modbot.config import SmtpSettings
from modbot.errors import MaybeSentError, PermanentSendError, SendError, TemporarySendError

__all__ = ["Prepared", "Sender", "prepare", "send_one"]

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"[^\s<>@\"]+@[^\s<>\"]+")
_SPACE = re.compile(r"\s+")
# Errors in the TLS layer that mean the line broke rather than that TLS itself was refused.
_TLS_LINE_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


@dataclass(frozen=True)
class Prepared:
    """A message with its envelope read and its bytes written as a server with 8BITMIME takes
    them (``Sender.send`` writes them again for one without)."""

    message: email.message.Message
    sender: str
    recipients: tuple[str, ...]
    names: tuple[str, ...]
    utf8: bool
    data: bytes


def prepare(message: email.message.Message) -> Prepared:
    """Everything ``Sender.send`` does to a message before talking to the server.

    Pure and thread-safe, so the next message can be made ready while one is being sent.
    Raises ``PermanentSendError`` when no envelope can be built from the headers.
    """
    try:
        sender = extract_sender(message)
        recipients = tuple(extract_recipients(message))
    except ValueError:
        raise PermanentSendError(
            "The reply has conflicting Resent headers, so its envelope cannot be built."
        ) from None
    if not sender or not recipients:
        raise PermanentSendError("The reply lacks a From address or any recipient.")
    utf8 = not (sender + "".join(recipients)).isascii()
    return Prepared(message, sender, recipients, _display_names(message), utf8,
                    flatten_message(message, utf8=utf8, cte_type="8bit"))


class Sender:
    """One SMTP connection, reused for many messages::

        async with Sender(settings.smtp, context) as sender:
            await sender.send(reply)

    A connection that dropped between two messages is opened again before the next one.
    """

    def __init__(self, settings: SmtpSettings, ssl_context: ssl.SSLContext) -> None:
        self._settings = settings
        self._ssl_context = ssl_context
        self._smtp: aiosmtplib.SMTP | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._server = f"SMTP server {settings.host}:{settings.port}"
        self._names: tuple[str, ...] = ()  # the current message's recipients' names

    async def __aenter__(self) -> Sender:
        self._smtp = await self._connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self._disconnect()

    async def send(self, message: email.message.Message | Prepared) -> None:
        """Hand ``message`` to the server for every address in its To, Cc and Bcc headers.

        Bcc headers are not transmitted. When some recipients are refused and others accepted,
        the message counts as sent (it went out) and the refusals are logged by code only.
        """
        prepared = message if isinstance(message, Prepared) else prepare(message)
        sender, recipients, utf8 = prepared.sender, prepared.recipients, prepared.utf8
        self._names = prepared.names
        smtp = self._smtp
        if smtp is None or not smtp.is_connected:
            await self._disconnect()
            smtp = await self._connect()

        stage = "handing the envelope to"
        refused: list[aiosmtplib.SMTPRecipientRefused] = []
        try:
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()
            options: list[str] = []
            if utf8:
                if not smtp.supports_extension("smtputf8"):
                    raise PermanentSendError(
                        f"The {self._server} cannot take non-ASCII addresses (no SMTPUTF8)."
                    )
                options.append("SMTPUTF8")
            if smtp.supports_extension("8bitmime"):
                options.append("BODY=8BITMIME")
                data = prepared.data
            else:
                data = flatten_message(prepared.message, utf8=utf8, cte_type="7bit")
            if smtp.supports_extension("size"):
                options.insert(0, f"SIZE={len(data)}")
            encoding = "utf-8" if utf8 else "ascii"
            await smtp.mail(sender, options=options, encoding=encoding)
            stage = "handing the recipients to"
            for recipient in recipients:
                try:
                    await smtp.rcpt(recipient, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused.append(exc)
                    if not smtp.is_connected:  # 421: the server closed the connection
                        break
            if len(refused) == len(recipients) or not smtp.is_connected:
                await self._reset(smtp)
                raise self._refused(refused, len(recipients))
        except SendError:
            raise
        except ValueError:
            await self._reset(smtp)
            raise PermanentSendError(
                "The reply has an address that cannot be written in an SMTP envelope."
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, aiosmtplib.SMTPResponseException):
                await self._reset(smtp)
            raise self._failure(exc, stage) from None

        try:
            await smtp.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 0:  # a definite answer: the server did not take the message
                raise self._failure(exc, "handing the message to") from None
            await self._disconnect()  # an unreadable answer tells nothing either way
            raise MaybeSentError(
                f"The {self._server} answered the message with something unreadable, so it "
                "may have been delivered."
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._disconnect()
            raise MaybeSentError(
                f"The connection to the {self._server} ended after the message was sent and before "
                f"the server confirmed it ({_detail(exc, self._settings.timeout_seconds)}), so "
                "it may have been delivered."
            ) from None
        if refused:
            codes = ", ".join(str(exc.code) for exc in refused)
            log.warning("the %s refused %d of %d recipients (%s); the others were sent the reply",
                        self._server, len(refused), len(recipients), codes)

    # connection -------------------------------------------------------------------------------

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            timeout=settings.timeout_seconds,
            use_tls=settings.security == "tls",
            start_tls=False,  # never aiosmtplib's "if offered", which falls back to clear text
            validate_certs=True,
            tls_context=self._ssl_context,
        )
        stage = "connecting to"
        try:
            await smtp.connect()
            self._transport = smtp.transport
            if settings.security == "starttls":
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise PermanentSendError(
                        f"The {self._server} does not offer STARTTLS, so modbot will neither "
                        "log in nor send over the unencrypted connection."
                    )
                stage = "starting TLS with"
                await smtp.starttls()
                self._transport = smtp.transport
            if settings.auth == "oauth2":
                from modbot.oauth import smtp_token  # refreshed, if need be, at every login

                stage = "logging in to"
                token = await asyncio.to_thread(smtp_token, settings, self._ssl_context)
                await smtp.auth_xoauth2(settings.username or "", token)
            elif settings.username:
                stage = "logging in to"
                if settings.password is None:
                    raise PermanentSendError(
                        f"A user name is set for the {self._server} but no password."
                    )
                await smtp.login(settings.username, settings.password.get_secret_value())
        except SendError:
            await self._close(smtp)
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._close(smtp)
            raise self._failure(exc, stage) from None
        self._smtp = smtp
        return smtp

    async def _disconnect(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            await self._close(smtp)

    async def _close(self, smtp: aiosmtplib.SMTP) -> None:
        """Close the socket now, even when aiosmtplib has already begun a graceful close.

        A graceful TLS close waits for the server's close_notify, which may never come; a caller
        that stops its event loop right after would leave the socket open. Abort the transport
        and give the loop the one turn it needs to close the socket.
        """
        smtp.close()
        transport, self._transport = self._transport, None
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        await asyncio.sleep(0)

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        """Clear a half-built envelope so the connection can carry the next message."""
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self._disconnect()

    # errors -----------------------------------------------------------------------------------

    def _refused(self, refused: list[aiosmtplib.SMTPRecipientRefused], total: int) -> SendError:
        first = next((exc for exc in refused if 400 <= exc.code < 500), refused[0])
        kind = TemporarySendError if 400 <= first.code < 500 else PermanentSendError
        if total == 1:
            count = "the recipient"
        elif len(refused) == total:
            count = f"all {total} recipients"
        else:
            count = "a recipient and closed the connection"
        return kind(
            f"The {self._server} refused {count}: it answered {first.code} "
            f"{self._clean(first.message)}."
        )

    def _failure(self, exc: BaseException, stage: str) -> SendError:
        """Translate a library, socket or TLS exception met while ``stage`` the server."""
        prefix = f"{stage[:1].upper()}{stage[1:]} the {self._server} failed"
        if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 0:
            kind = PermanentSendError if 500 <= exc.code < 600 else TemporarySendError
            return kind(f"{prefix}: it answered {exc.code} {self._clean(exc.message)}.")
        tls = _tls_error(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            return PermanentSendError(
                f"{prefix}: its TLS certificate was refused ({tls.verify_message or tls.reason})."
            )
        if tls is not None:
            return PermanentSendError(f"{prefix}: TLS failed ({tls.reason or type(tls).__name__}).")
        if isinstance(exc, TimeoutError | OSError):
            return TemporarySendError(
                f"{prefix}: {_detail(exc, self._settings.timeout_seconds)}."
            )
        # SMTPNotSupported and the like: the server lacks something modbot needs.
        return PermanentSendError(f"{prefix}: {self._clean(str(exc))}.")

    def _clean(self, text: str) -> str:
        """Server words for a log line: one line, no addresses or recipient names, never the
        password. Servers echo what they were given ("550 unknown user Jordan Rivera")."""
        password = self._settings.password
        if password is not None and password.get_secret_value():
            text = text.replace(password.get_secret_value(), "***")
        text = _ADDRESS.sub("address", text)
        for name in self._names:
            text = re.sub(re.escape(name), "someone", text, flags=re.IGNORECASE)
        text = _SPACE.sub(" ", text).strip().rstrip(".")
        return text[:157] + "..." if len(text) > 160 else text


async def send_one(message: email.message.EmailMessage, settings: SmtpSettings,
                   ssl_context: ssl.SSLContext) -> None:
    """Connect, send ``message``, and disconnect."""
    async with Sender(settings, ssl_context) as sender:
        await sender.send(message)


def _display_names(message: email.message.Message) -> tuple[str, ...]:
    """The recipients' display names and their words of three letters or more, longest first."""
    names: set[str] = set()
    values = [str(v) for field in ("To", "Cc", "Bcc") for v in message.get_all(field, ())]
    for encoded, _ in getaddresses(values):
        try:
            name = str(make_header(decode_header(encoded))).strip()
        except (HeaderParseError, LookupError, ValueError):
            name = encoded.strip()
        if name:
            names.add(name)
            names.update(word for word in re.split(r"[\s,]+", name) if len(word) >= 3)
    return tuple(sorted(names, key=len, reverse=True))


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS refusal behind ``exc`` (aiosmtplib wraps it), unless the line merely broke."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, _TLS_LINE_ERRORS):
            return cause
    return None


def _detail(exc: BaseException, timeout: float) -> str:
    """A short, content-free account of a timeout or a broken connection."""
    chain = _causes(exc)
    if any(isinstance(cause, TimeoutError) for cause in chain):
        return f"no answer within {timeout:g} s"
    for cause in chain:
        if isinstance(cause, OSError) and cause.strerror:
            return f"the connection failed ({cause.strerror})"
    return "the connection was lost"
