"""Reaching an OAuth2 provider: the one HTTP client, the token endpoint, and msal's client.

What it is for: what the first sign-in (``modbot.signin``) and the refresh (``modbot.oauth``)
share when they talk to Google, Microsoft or another provider: ``Http`` (urllib with modbot's
verified TLS context, no redirects, in the shape msal's ``http_client`` expects), the RFC 6749
token request and the one sentence for each way a token endpoint refuses, msal's client
application, and how a sentence names the provider.

What it must never do:

- log, print or put into an error message a token, a client secret or an authorization code:
  a refusal quotes only the error code (and Microsoft's AADSTS number), never a description;
- reach a provider without verified TLS: plain http is allowed only to a loopback host (tests,
  local providers), and a redirect is never followed;
- read or write the token file (that is ``modbot.tokens``) or decide when to refresh (that is
  ``modbot.oauth``).

Errors: a provider that refuses (RFC 6749 section 5.2) is a ``ConfigError``; an unreachable
provider or a server error is a ``TokenUnavailableError``, worth trying again later.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modbot import logs
from modbot.config import OAuth2Settings, is_loopback
from modbot.errors import ConfigError, ModbotError

__all__ = [
    "Http",
    "HttpResponse",
    "TokenUnavailableError",
    "keep_libraries_quiet",
    "msal_app",
    "msal_scopes",
    "provider_name",
    "refused",
    "token_request",
]

# msal adds these itself and refuses them in a scope list.
_MSAL_RESERVED = frozenset({"openid", "profile", "offline_access"})
# Loggers that may carry request or response bodies at DEBUG.
_LIBRARY_LOGGERS = ("msal", "google", "google.auth", "google.oauth2", "urllib3")
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_AADSTS = re.compile(r"\bAADSTS\d{4,8}\b")


class TokenUnavailableError(ModbotError):
    """The provider could not be reached, or answered with a server error: try again later."""


def keep_libraries_quiet() -> None:
    """Hold msal's, google-auth's and urllib3's loggers at WARNING or above.

    At DEBUG they may log token requests and answers; a counselor who turns on debug logging to
    look at modbot must not find a refresh token in the log.
    """
    logs.hold_at_warning(*_LIBRARY_LOGGERS)


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
# HTTP: the one way modbot reaches a provider


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

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; empty when it is not one (an HTML error page, say)."""
        try:
            value = json.loads(self.text)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


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
# The token endpoint, and msal


def token_request(http: Http, settings: OAuth2Settings,
                  form: Mapping[str, str]) -> Mapping[str, Any]:
    """POST ``form`` to the token endpoint; the JSON answer, or ``ConfigError`` /
    ``TokenUnavailableError`` in one sentence."""
    url = settings.effective_token_url
    if url is None:  # pragma: no cover - Microsoft goes through msal
        raise ConfigError("No token_url is configured.")
    response = http.post(url, data=form)
    answer = response.json_object()
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
