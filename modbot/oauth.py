"""OAuth2 access tokens for the XOAUTH2 logins to IMAP and SMTP (Google, Microsoft 365, others).

What it is for: hand each login an access token that stays valid for a while yet, refreshing it
through the provider when it has expired or is about to: google-auth's ``Credentials.refresh``
for Google, msal's ``acquire_token_by_refresh_token`` for Microsoft, a plain RFC 6749
refresh-token POST for any other provider; and tell the digest when a sign-in ends soon. The
token file itself is ``modbot.tokens``, the HTTP to providers ``modbot.provider``, and the first
sign-in behind ``modbot auth`` is ``modbot.signin``.

What it must never do:

- log, print or put into an error message a token, a client secret or an authorization code;
  msal's and google-auth's own DEBUG logs are held at WARNING for that reason;
- refresh without holding the token file's lock, or leave a refreshed token unsaved: providers
  that rotate refresh tokens may refuse the older one;
- reach a provider other than through ``modbot.provider.Http`` (verified TLS, no redirects).

Errors: a missing token file, or a refresh token the provider refuses (revoked, expired, another
client's), is a ``ConfigError`` that says to run ``modbot auth``; an unreachable provider or a
server error is a ``TokenUnavailableError``, worth trying again at the next poll. ``imap_token``
and ``smtp_token`` turn both into the mailbox's and the sender's own errors.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modbot.config import Account, ImapSettings, OAuth2Settings, SmtpSettings
from modbot.errors import (
    ConfigError,
    MailboxAuthError,
    MailboxError,
    PermanentSendError,
    TemporarySendError,
)
from modbot.provider import (
    Http,
    HttpResponse,
    TokenUnavailableError,
    keep_libraries_quiet,
    msal_app,
    msal_scopes,
    provider_name,
    refused,
    token_request,
)
from modbot.tokens import REFRESH_MARGIN, TokenFile, Tokens

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

# The digest warns this long before a refresh token the provider said would end.
WARN_BEFORE = timedelta(days=14)


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
            answer = last.json_object() if last is not None else {}
            if last is not None and 400 <= last.status_code < 500 and "error" in answer:
                raise refused(self.settings, answer) from None
            raise TokenUnavailableError(
                "Google did not refresh the access token (its token endpoint failed); modbot "
                "will try again."
            ) from None
        last = transport.last
        answer = last.json_object() if last is not None else {}
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


def expiry_warnings(settings: Account, now: datetime) -> list[str]:
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
