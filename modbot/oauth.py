"""OAuth2 access tokens for the XOAUTH2 logins to IMAP and SMTP (Google, Microsoft 365, others).

What it is for: keep a refresh token and the current access token in an owner-only token file,
and hand each login an access token that stays valid for a while yet, refreshing it through the
provider when it has expired or is about to: google-auth's ``Credentials.refresh`` for Google,
msal's ``acquire_token_by_refresh_token`` for Microsoft, a plain RFC 6749 refresh-token POST for
any other provider. ``modbot.signin`` gets the first tokens for ``modbot auth``.

What it must never do:

- log, print or put into an error message a token, a client secret or an authorization code;
  msal's and google-auth's own DEBUG logs are held at WARNING for that reason;
- write the token file other than atomically and owner-only (0600): a crash halfway through a
  write must not lose the refresh token, and no other user may read it;
- reach a provider without verified TLS: every request goes through ``Http`` with modbot's one
  client context, and plain http is allowed only to a loopback host (tests, local providers).

Errors: a missing token file, or a refresh token the provider refuses (revoked, expired, another
client's), is a ``ConfigError`` that says to run ``modbot auth``; an unreachable provider or a
server error is a ``TokenUnavailableError``, worth trying again at the next poll. ``imap_token``
and ``smtp_token`` turn both into the mailbox's and the sender's own errors.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modbot.config import ImapSettings, OAuth2Settings, Settings, SmtpSettings, is_loopback
from modbot.errors import (
    ConfigError,
    MailboxAuthError,
    MailboxError,
    ModbotError,
    PermanentSendError,
    TemporarySendError,
)

__all__ = [
    "REFRESH_MARGIN",
    "WARN_BEFORE",
    "Http",
    "TokenFile",
    "TokenSource",
    "TokenUnavailableError",
    "Tokens",
    "expiry_warnings",
    "imap_token",
    "keep_libraries_quiet",
    "smtp_token",
]

log = logging.getLogger(__name__)

# An access token this close to its expiry is refreshed first: a login that starts with a token
# about to expire could be refused halfway through a poll.
REFRESH_MARGIN = timedelta(minutes=5)
# The digest warns this long before a refresh token the provider said would end.
WARN_BEFORE = timedelta(days=14)
# When a token answer has no expires_in (RFC 6749 makes it optional), assume the usual hour.
DEFAULT_LIFETIME = timedelta(hours=1)
# msal adds these itself and refuses them in a scope list.
_MSAL_RESERVED = frozenset({"openid", "profile", "offline_access"})
# Loggers that may carry request or response bodies at DEBUG.
_LIBRARY_LOGGERS = ("msal", "google", "google.auth", "google.oauth2", "urllib3")
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_AADSTS = re.compile(r"\bAADSTS\d{4,8}\b")
_FILE_VERSION = 1


class TokenUnavailableError(ModbotError):
    """The provider could not be reached, or answered with a server error: try again later."""


def keep_libraries_quiet() -> None:
    """Hold msal's, google-auth's and urllib3's loggers at WARNING or above.

    At DEBUG they may log token requests and answers; a counselor who turns on debug logging to
    look at modbot must not find a refresh token in the log.
    """
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def provider_name(settings: OAuth2Settings, *, start: bool = False) -> str:
    """How a sentence names the provider: Google, Microsoft, or the token endpoint's host.

    ``start``: the name opens the sentence, so it begins with a capital.
    """
    if settings.provider == "google":
        return "Google"
    if settings.provider == "microsoft":
        return "Microsoft"
    host = urllib.parse.urlsplit(settings.token_url or "").hostname or "?"
    return f"{'The' if start else 'the'} token endpoint at {host}"


# --------------------------------------------------------------------------------------------
# The token file


def _when(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("a time is written as ISO 8601 text")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds(value: object) -> timedelta | None:
    """An ``expires_in``-style number of seconds (some providers send it as text)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return timedelta(seconds=seconds) if seconds > 0 else None


@dataclass(frozen=True)
class Tokens:
    """What a token file holds. Neither ``repr`` nor ``str`` shows a token.

    ``obtained_at`` is when the current refresh token was obtained (at sign-in, or when the
    provider rotated it); ``refresh_expires_at`` is set only when the provider told when the
    refresh token ends (Google's time-limited grants, some Microsoft policies).
    """

    provider: str
    client_id: str
    refresh_token: str = field(repr=False)
    access_token: str | None = field(repr=False)
    expires_at: datetime | None
    obtained_at: datetime
    signed_in_at: datetime
    refresh_expires_at: datetime | None = None

    @classmethod
    def first(cls, settings: OAuth2Settings, answer: Mapping[str, Any],
              now: datetime) -> Tokens:
        """The tokens of a first sign-in; ``ConfigError`` if the answer has no refresh token."""
        refresh = answer.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise ConfigError(
                f"{provider_name(settings, start=True)} signed in but gave no refresh token, so "
                "modbot could not stay signed in; check that the scopes allow offline access."
            )
        blank = cls(settings.provider, settings.client_id, refresh, None, None, now, now)
        return blank.updated(answer, now)

    def updated(self, answer: Mapping[str, Any], now: datetime) -> Tokens:
        """These tokens after a token endpoint's successful ``answer`` at ``now``."""
        access = answer.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenUnavailableError("The token endpoint's answer held no access token.")
        refresh = answer.get("refresh_token")
        rotated = isinstance(refresh, str) and bool(refresh) and refresh != self.refresh_token
        lifetime = _seconds(answer.get("refresh_token_expires_in"))
        refresh_expires_at = self.refresh_expires_at if not rotated else None
        if lifetime is not None:
            refresh_expires_at = now + lifetime
        return replace(
            self,
            access_token=access,
            expires_at=now + (_seconds(answer.get("expires_in")) or DEFAULT_LIFETIME),
            refresh_token=refresh if rotated and isinstance(refresh, str) else self.refresh_token,
            obtained_at=now if rotated else self.obtained_at,
            refresh_expires_at=refresh_expires_at,
        )

    def fresh(self, now: datetime, margin: timedelta = REFRESH_MARGIN) -> bool:
        """True when the access token stays valid beyond ``now + margin``."""
        return bool(self.access_token) and self.expires_at is not None \
            and now + margin < self.expires_at

    def to_json(self) -> str:
        def moment(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return json.dumps({
            "version": _FILE_VERSION,
            "provider": self.provider,
            "client_id": self.client_id,
            "refresh_token": self.refresh_token,
            "access_token": self.access_token,
            "expires_at": moment(self.expires_at),
            "obtained_at": moment(self.obtained_at),
            "signed_in_at": moment(self.signed_in_at),
            "refresh_expires_at": moment(self.refresh_expires_at),
        }, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Tokens:
        """Read a token file's text; ``ValueError`` (without its content) when it is broken."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
                raise ValueError
            refresh, access = data["refresh_token"], data.get("access_token")
            obtained, signed_in = _when(data["obtained_at"]), _when(data["signed_in_at"])
            if not (isinstance(refresh, str) and refresh and isinstance(data["provider"], str)
                    and isinstance(data["client_id"], str) and obtained and signed_in
                    and (access is None or isinstance(access, str))):
                raise ValueError
            return cls(data["provider"], data["client_id"], refresh, access,
                       _when(data.get("expires_at")), obtained, signed_in,
                       _when(data.get("refresh_expires_at")))
        except (ValueError, KeyError, TypeError):
            raise ValueError("not a modbot token file") from None


class TokenFile:
    """One token file: read, written atomically and owner-only, and locked while refreshing.

    The lock is ``flock`` on a sibling ``.lock`` file, so that the IMAP and the SMTP login (or a
    second modbot command) never refresh one refresh token twice at once: providers that rotate
    refresh tokens may refuse the older one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Tokens | None:
        """The saved tokens, or None when there is no file; ``ConfigError`` when unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"Cannot read the token file {self.path}: {exc.strerror}.") from None
        try:
            return Tokens.from_json(text)
        except ValueError:
            raise ConfigError(
                f"The token file {self.path} is damaged; run `modbot auth` to sign in again."
            ) from None

    def save(self, tokens: Tokens) -> None:
        """Replace the file with ``tokens`` in one step; the file is 0600 from its first byte."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file 0600, in the same folder so that the rename is atomic.
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                         suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(tokens.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a crash
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock (blocking) for the duration of the ``with`` block."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise ConfigError(f"Cannot create the lock file {lock}: {exc.strerror}.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


# --------------------------------------------------------------------------------------------
# HTTP: the one way this module reaches a provider


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer, shaped as msal expects (``status_code``, ``text``, ``headers``)."""

    status_code: int
    text: str
    headers: Mapping[str, str]

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise TokenUnavailableError(f"The provider answered HTTP {self.status_code}.")

    def json(self) -> Any:
        return json.loads(self.text)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A token endpoint never redirects; following one could carry a form elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Http:
    """urllib with modbot's verified TLS context and a timeout; no redirects.

    ``get`` and ``post`` have the shape msal's ``http_client`` expects; a failure to reach the
    host is a ``TokenUnavailableError`` that names neither the request nor the answer.
    """

    def __init__(self, ssl_context: ssl.SSLContext, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ssl_context), _NoRedirects())

    def get(self, url: str, params: Mapping[str, str] | None = None,
            headers: Mapping[str, str] | None = None, **_: Any) -> HttpResponse:
        return self.request("GET", url, params=params, headers=headers)

    def post(self, url: str, params: Mapping[str, str] | None = None,
             data: Mapping[str, str] | str | bytes | None = None,
             headers: Mapping[str, str] | None = None, **_: Any) -> HttpResponse:
        return self.request("POST", url, params=params, data=data, headers=headers)

    def request(self, method: str, url: str, *, params: Mapping[str, str] | None = None,
                data: Mapping[str, str] | str | bytes | None = None,
                headers: Mapping[str, str] | None = None) -> HttpResponse:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))):
            raise TokenUnavailableError(
                f"modbot reaches OAuth2 providers only over https, not at {parts.scheme}://{host}."
            )
        if params:
            url += ("&" if parts.query else "?") + urllib.parse.urlencode(params)
        body: bytes | None
        if isinstance(data, Mapping):
            body = urllib.parse.urlencode(data).encode()
        else:
            body = data.encode() if isinstance(data, str) else data
        # The scheme was checked above: https, or http to loopback; never file: or others.
        request = urllib.request.Request(  # noqa: S310
            url, data=body, method=method, headers=dict(headers or {}))
        if body is not None and not request.has_header("Content-type"):
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        request.add_header("Accept", "application/json")
        try:
            with self._opener.open(request, timeout=self._timeout) as answer:
                return HttpResponse(answer.status, _text(answer.read()), dict(answer.headers))
        except urllib.error.HTTPError as exc:
            with exc:
                return HttpResponse(exc.code, _text(exc.read()), dict(exc.headers or {}))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TokenUnavailableError(
                f"Could not reach {host} to refresh the access token ({_network_reason(exc)})."
            ) from None


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def _network_reason(exc: BaseException) -> str:
    reason: object = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate was refused: {reason.verify_message or reason.reason}"
    if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return type(reason).__name__


# --------------------------------------------------------------------------------------------
# Refreshing


class TokenSource:
    """Hands out a valid access token for one oauth2 table, refreshing it when needed::

        token = TokenSource(settings.imap.oauth2, context).access_token(now)

    Every call reads the token file, so several sources (the IMAP and the SMTP login, another
    modbot command) share one refresh.
    """

    def __init__(self, settings: OAuth2Settings, ssl_context: ssl.SSLContext | None = None, *,
                 timeout: float = 30.0) -> None:
        keep_libraries_quiet()
        self.settings = settings
        self.file = TokenFile(settings.token_file)
        self._ssl_context = ssl_context
        self._timeout = timeout

    def access_token(self, now: datetime) -> str:
        """An access token valid beyond ``now + REFRESH_MARGIN``, refreshed first if needed.

        Raises ``ConfigError`` when there is no token file or the provider refuses the refresh
        token, ``TokenUnavailableError`` when the provider cannot be reached.
        """
        with self.file.locked():
            tokens = self._load()
            if tokens.fresh(now) and tokens.access_token:
                return tokens.access_token
            tokens = tokens.updated(self._refresh(tokens.refresh_token), now)
            self.file.save(tokens)
        log.info("refreshed the OAuth2 access token from %s; valid until %s",
                 provider_name(self.settings), f"{tokens.expires_at:%Y-%m-%d %H:%M %Z}")
        return tokens.access_token or ""  # updated() never leaves it empty

    def expires_warning(self, now: datetime) -> str | None:
        """A sentence for the digest when the sign-in ends within ``WARN_BEFORE``, else None.

        Also a sentence when there is no usable token file. Reads only the file; never the
        network.
        """
        command = f"`modbot auth {self.settings.provider}`"
        try:
            tokens = self._load()
        except ConfigError as exc:
            return str(exc)
        ends = tokens.refresh_expires_at
        if ends is None or ends - now > WARN_BEFORE:
            return None
        day = f"{ends:%Y-%m-%d %H:%M %Z}"
        who = provider_name(self.settings)
        if ends <= now:
            return (f"modbot's sign-in with {who} ended on {day}; run {command} to sign in "
                    "again.")
        return (f"modbot's sign-in with {who} ends on {day}; run {command} before then so "
                "that mail keeps flowing.")

    # internals --------------------------------------------------------------------------------

    def _load(self) -> Tokens:
        tokens = self.file.load()
        command = f"`modbot auth {self.settings.provider}`"
        if tokens is None:
            raise ConfigError(
                f"modbot is not signed in with {provider_name(self.settings)} yet (no token file "
                f"{self.file.path}); run {command} once."
            )
        if (tokens.provider, tokens.client_id) != (self.settings.provider,
                                                   self.settings.client_id):
            raise ConfigError(
                f"The token file {self.file.path} belongs to another provider or client_id; "
                f"run {command} to sign in with this one."
            )
        return tokens

    def _http(self) -> Http:
        if self._ssl_context is None:
            from modbot.tls import client_context

            self._ssl_context = client_context(None)
        return Http(self._ssl_context, self._timeout)

    def _refresh(self, refresh_token: str) -> Mapping[str, Any]:
        if self.settings.provider == "google":
            return self._refresh_google(refresh_token)
        if self.settings.provider == "microsoft":
            return self._refresh_microsoft(refresh_token)
        return self._refresh_generic(refresh_token)

    def _refresh_generic(self, refresh_token: str) -> Mapping[str, Any]:
        """RFC 6749 section 6: POST grant_type=refresh_token to the token endpoint."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": self.settings.client_id}
        secret = self.settings.client_secret
        if secret is not None:
            form["client_secret"] = secret.get_secret_value()
        if self.settings.effective_scopes:
            form["scope"] = " ".join(self.settings.effective_scopes)
        return token_request(self._http(), self.settings, form)

    def _refresh_google(self, refresh_token: str) -> Mapping[str, Any]:
        from google.auth import exceptions
        from google.oauth2.credentials import Credentials

        secret = self.settings.client_secret
        credentials = Credentials(  # type: ignore[no-untyped-call]
            token=None, refresh_token=refresh_token,
            token_uri=self.settings.effective_token_url, client_id=self.settings.client_id,
            client_secret=secret.get_secret_value() if secret is not None else None,
            scopes=list(self.settings.effective_scopes),
        )
        transport = _google_transport(self._http())
        try:
            credentials.refresh(transport)  # type: ignore[no-untyped-call]
        except exceptions.TransportError as exc:
            raise TokenUnavailableError(_first_line(exc)) from None
        except exceptions.RefreshError:
            last = transport.last
            answer = _json_object(last.text) if last is not None else {}
            if last is not None and 400 <= last.status_code < 500 and "error" in answer:
                raise refused(self.settings, answer) from None
            raise TokenUnavailableError(
                "Google did not refresh the access token (its token endpoint failed); modbot "
                "will try again."
            ) from None
        last = transport.last
        answer = _json_object(last.text) if last is not None else {}
        # The endpoint's own answer carries expires_in and refresh_token_expires_in, which
        # Credentials does not keep; its token is the one google-auth accepted.
        return {**answer, "access_token": credentials.token,
                "refresh_token": credentials.refresh_token}

    def _refresh_microsoft(self, refresh_token: str) -> Mapping[str, Any]:
        app = msal_app(self.settings, self._http())
        try:
            answer = app.acquire_token_by_refresh_token(refresh_token,
                                                        scopes=msal_scopes(self.settings))
        except ValueError:
            raise ConfigError(
                f"Microsoft does not know the authority {self.settings.effective_authority}; "
                "check tenant and authority."
            ) from None
        if isinstance(answer, dict) and "access_token" in answer:
            return answer
        if isinstance(answer, dict) and "error" in answer:
            raise refused(self.settings, answer)
        raise TokenUnavailableError("Microsoft did not answer the refresh with tokens.")


def token_request(http: Http, settings: OAuth2Settings,
                  form: Mapping[str, str]) -> Mapping[str, Any]:
    """POST ``form`` to the token endpoint; the JSON answer, or ``ConfigError`` /
    ``TokenUnavailableError`` in one sentence."""
    url = settings.effective_token_url
    if url is None:  # pragma: no cover - Microsoft goes through msal
        raise ConfigError("No token_url is configured.")
    response = http.post(url, data=form)
    answer = _json_object(response.text)
    if response.status_code == 200 and "access_token" in answer:
        return answer
    if 400 <= response.status_code < 500 and response.status_code != 429 and "error" in answer:
        raise refused(settings, answer)
    raise TokenUnavailableError(
        f"{provider_name(settings, start=True)} did not hand out an access token (HTTP "
        f"{response.status_code}); modbot will try again."
    )


def refused(settings: OAuth2Settings, answer: Mapping[str, Any]) -> ConfigError:
    """The one sentence for a token endpoint's error answer (RFC 6749 section 5.2).

    Only the error code (and Microsoft's AADSTS number) is quoted: descriptions are free text.
    """
    code = str(answer.get("error", ""))
    code = code if _ERROR_CODE.match(code) else "an unreadable error"
    aadsts = _AADSTS.search(str(answer.get("error_description", "")))
    label = f"{code}, {aadsts.group(0)}" if aadsts else code
    who, command = provider_name(settings, start=True), f"`modbot auth {settings.provider}`"
    if code == "invalid_grant":
        return ConfigError(f"{who} refused the saved sign-in ({label}): it was revoked or has "
                           f"expired, so run {command} to sign in again.")
    if code in ("invalid_client", "unauthorized_client"):
        return ConfigError(f"{who} refused the client ({label}); check client_id and the "
                           "client secret in the oauth2 table.")
    if code == "invalid_scope":
        return ConfigError(f"{who} refused the scopes ({label}); check scopes in the oauth2 "
                           f"table, then run {command}.")
    return ConfigError(f"{who} refused to hand out an access token ({label}); run {command} "
                       "to sign in again.")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _google_transport(http: Http) -> Any:
    """A google-auth transport over ``http`` that keeps the last answer (for its extra fields)."""
    from google.auth import exceptions
    from google.auth.transport import Request, Response

    class _Answer(Response):
        def __init__(self, response: HttpResponse) -> None:
            self._response = response

        @property
        def status(self) -> int:
            return self._response.status_code

        @property
        def headers(self) -> Mapping[str, str]:
            return self._response.headers

        @property
        def data(self) -> bytes:
            return self._response.text.encode()

    class _Transport(Request):
        last: HttpResponse | None = None

        def __call__(self, url: str, method: str = "GET", body: Any = None,
                     headers: Mapping[str, str] | None = None, timeout: Any = None,
                     **kwargs: Any) -> Response:
            try:
                self.last = http.request(method, url, data=body, headers=headers)
            except TokenUnavailableError as exc:
                raise exceptions.TransportError(str(exc)) from None  # type: ignore[no-untyped-call]
            return _Answer(self.last)

    return _Transport()


def msal_scopes(settings: OAuth2Settings) -> list[str]:
    """The scopes to hand msal, which adds openid, profile and offline_access itself."""
    return [s for s in settings.effective_scopes if s not in _MSAL_RESERVED]


def msal_app(settings: OAuth2Settings, http: Http) -> Any:
    """An msal client application for ``settings``: confidential when there is a secret."""
    import msal

    secret = settings.client_secret
    options: dict[str, Any] = {
        "authority": settings.effective_authority,
        "http_client": http,
        # The authority is used as written (also for national clouds); no extra discovery call.
        "instance_discovery": False,
    }
    try:
        if secret is not None:
            return msal.ConfidentialClientApplication(
                settings.client_id, client_credential=secret.get_secret_value(), **options)
        return msal.PublicClientApplication(settings.client_id, **options)
    except ValueError:
        raise ConfigError(
            f"Microsoft does not know the authority {settings.effective_authority}; check "
            "tenant and authority."
        ) from None


# --------------------------------------------------------------------------------------------
# For the edges and the digest


def _now() -> datetime:
    # A login happens when a connection is (re)opened, a moment the daemon does not choose, and
    # the provider's expiry is wall-clock time: the clock is read here, once per login.
    return datetime.now(UTC)


def imap_token(settings: ImapSettings, ssl_context: ssl.SSLContext) -> str:
    """The access token for the IMAP login; ``MailboxAuthError`` or ``MailboxError``."""
    if settings.oauth2 is None:
        raise MailboxAuthError('auth = "oauth2" but the [imap.oauth2] table is missing.')
    try:
        source = TokenSource(settings.oauth2, ssl_context, timeout=settings.timeout_seconds)
        return source.access_token(_now())
    except ConfigError as exc:
        raise MailboxAuthError(str(exc)) from None
    except TokenUnavailableError as exc:
        raise MailboxError(str(exc)) from None


def smtp_token(settings: SmtpSettings, ssl_context: ssl.SSLContext) -> str:
    """The access token for the SMTP login; ``PermanentSendError`` or ``TemporarySendError``."""
    if settings.oauth2 is None:
        raise PermanentSendError('auth = "oauth2" but the [smtp.oauth2] table is missing.')
    try:
        source = TokenSource(settings.oauth2, ssl_context, timeout=settings.timeout_seconds)
        return source.access_token(_now())
    except ConfigError as exc:
        raise PermanentSendError(str(exc)) from None
    except TokenUnavailableError as exc:
        raise TemporarySendError(str(exc)) from None


def expiry_warnings(settings: Settings, now: datetime) -> list[str]:
    """The digest's sentences about sign-ins that end soon or are missing (no network)."""
    warnings: list[str] = []
    seen: set[Path] = set()
    for server in (settings.imap, settings.smtp):
        oauth2 = server.oauth2
        if server.auth != "oauth2" or oauth2 is None or oauth2.token_file in seen:
            continue
        seen.add(oauth2.token_file)
        warning = TokenSource(oauth2).expires_warning(now)
        if warning:
            warnings.append(warning)
    return warnings
