"""The first sign-in behind ``modbot auth``: a person at a browser gives modbot a refresh token.

- Google and generic providers: the installed-app flow (RFC 8252). modbot prints the provider's
  sign-in address; the browser comes back to a one-shot listener on 127.0.0.1 with an
  authorization code, which modbot exchanges at the token endpoint. PKCE (RFC 7636) and a random
  ``state`` make a code useless to anyone else and a forged answer recognisable.
- Microsoft: the device-code flow (RFC 8628) through msal. The person opens Microsoft's page on
  any device and types the code modbot prints; modbot polls until they are done, so a server
  without a browser can be signed in from a phone.

What it must never do: print or log the authorization code or a token (the listener writes no
access log, since its request line carries the code); accept an answer whose ``state`` differs
from the one sent; listen anywhere but on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from modbot.config import OAuth2Settings
from modbot.errors import ConfigError
from modbot.provider import (
    Http,
    TokenUnavailableError,
    keep_libraries_quiet,
    msal_app,
    msal_scopes,
    provider_name,
    refused,
    token_request,
)
from modbot.tokens import TokenFile, Tokens

__all__ = ["LOOPBACK", "save", "sign_in"]

LOOPBACK = "127.0.0.1"
_PAGE = (b"<!doctype html><meta charset=utf-8><title>modbot</title>"
         b"<p>modbot has received the sign-in. You can close this tab.</p>")


def sign_in(settings: OAuth2Settings, ssl_context: ssl.SSLContext, *, username: str,
            say: Callable[[str], object], open_browser: Callable[[str], object] | None = None,
            port: int = 0, timeout: float = 300.0) -> Mapping[str, Any]:
    """Run the provider's sign-in with a person and return the token endpoint's answer.

    ``say`` shows the person what to do (the address to open, or Microsoft's code);
    ``open_browser``, if given, is also called with the sign-in address. ``port`` is the
    loopback port for the browser's answer (0: any free one). Raises ``ConfigError`` when the
    person or the provider declines, or nothing happens within ``timeout`` seconds, and
    ``TokenUnavailableError`` when the provider cannot be reached.
    """
    keep_libraries_quiet()
    http = Http(ssl_context)
    if settings.provider == "microsoft":
        return _device_code(settings, http, say, timeout)
    return _loopback(settings, http, username, say, open_browser, port, timeout)


def save(settings: OAuth2Settings, answer: Mapping[str, Any], now: datetime) -> Tokens:
    """Write a first sign-in's tokens to the token file (0600) and return them."""
    tokens = Tokens.first(settings, answer, now)
    token_file = TokenFile(settings.token_file)
    with token_file.locked():
        token_file.save(tokens)
    return tokens


# --------------------------------------------------------------------------------------------
# Google and generic providers: a browser, and its answer on loopback


class _Listener(http.server.HTTPServer):
    answer: dict[str, str] | None = None


class _Answer(http.server.BaseHTTPRequestHandler):
    server: _Listener

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if "code" not in query and "error" not in query:
            self.send_error(404)  # a browser asking for /favicon.ico, say
            return
        self.server.answer = {key: values[0] for key, values in query.items()}
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_PAGE)))
        self.end_headers()
        self.wfile.write(_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the request line holds the authorization code


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _loopback(settings: OAuth2Settings, http: Http, username: str,
              say: Callable[[str], object], open_browser: Callable[[str], object] | None,
              port: int, timeout: float) -> Mapping[str, Any]:
    authorization_url = settings.effective_authorization_url
    command = f"`modbot auth {settings.provider}`"
    if authorization_url is None:
        raise ConfigError(f"{command} needs authorization_url in the oauth2 table.")
    try:
        listener = _Listener((LOOPBACK, port), _Answer)
    except OSError as exc:
        raise ConfigError(f"Cannot listen on {LOOPBACK}:{port} for the browser's answer: "
                          f"{exc.strerror}.") from None
    with listener:
        listener.timeout = 0.5
        redirect_uri = f"http://{LOOPBACK}:{listener.server_address[1]}/"
        verifier, challenge = _pkce()
        state = secrets.token_urlsafe(24)
        params = {
            "response_type": "code", "client_id": settings.client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(settings.effective_scopes),
            "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
            "login_hint": username,
        }
        if settings.provider == "google":
            # Without both, Google hands out a refresh token only at the first consent ever.
            params.update(access_type="offline", prompt="consent")
        separator = "&" if urllib.parse.urlsplit(authorization_url).query else "?"
        address = authorization_url + separator + urllib.parse.urlencode(params)
        say(f"Open this address in a browser on this computer and sign in as {username}:\n\n"
            f"  {address}\n\nThe browser comes back to {redirect_uri}; on a remote server, "
            f"forward that port first (ssh -L {listener.server_address[1]}:{LOOPBACK}:"
            f"{listener.server_address[1]} ...) or give --port. Waiting up to {timeout:g} s.")
        if open_browser is not None:
            open_browser(address)
        deadline = time.monotonic() + timeout
        while listener.answer is None:
            if time.monotonic() > deadline:
                raise ConfigError(f"No sign-in came back within {timeout:g} s; run {command} "
                                  "again.")
            listener.handle_request()
        answer = listener.answer
    if not secrets.compare_digest(answer.get("state", ""), state):
        raise ConfigError("The browser's answer did not carry the state modbot sent, so it was "
                          f"ignored; run {command} again.")
    if "error" in answer or "code" not in answer:
        raise ConfigError(f"{provider_name(settings, start=True)} did not grant access "
                          f"({_code(answer.get('error'))}); run {command} again.")
    form = {"grant_type": "authorization_code", "code": answer["code"],
            "redirect_uri": redirect_uri, "client_id": settings.client_id,
            "code_verifier": verifier}
    if settings.client_secret is not None:
        form["client_secret"] = settings.client_secret.get_secret_value()
    return token_request(http, settings, form)


def _code(value: object) -> str:
    text = str(value or "no reason given")
    return text if text.replace("_", "").isalnum() and len(text) <= 64 else "an unreadable error"


# --------------------------------------------------------------------------------------------
# Microsoft: the device-code flow


def _device_code(settings: OAuth2Settings, http: Http, say: Callable[[str], object],
                 timeout: float) -> Mapping[str, Any]:
    app = msal_app(settings, http)
    try:
        flow = app.initiate_device_flow(scopes=msal_scopes(settings))
    except ValueError:
        raise ConfigError(f"{settings.effective_authority} offers no device-code sign-in; "
                          "check tenant and authority.") from None
    if not isinstance(flow, dict) or "user_code" not in flow:
        if isinstance(flow, dict) and "error" in flow:
            raise refused(settings, flow)
        raise TokenUnavailableError("Microsoft did not start the device-code sign-in.")
    say(str(flow.get("message") or f"Open {flow.get('verification_uri')} and enter the code "
                                   f"{flow['user_code']}."))
    # msal polls until its expires_at (time.time() based); --timeout may end it sooner.
    flow["expires_at"] = min(float(flow.get("expires_at", 0)), time.time() + timeout)
    answer = app.acquire_token_by_device_flow(flow)
    if isinstance(answer, dict) and "access_token" in answer:
        return answer
    if isinstance(answer, dict) and answer.get("error") in ("authorization_pending",
                                                             "slow_down", "expired_token"):
        raise ConfigError(f"No sign-in was completed within {timeout:g} s; run "
                          "`modbot auth microsoft` again.")
    if isinstance(answer, dict) and "error" in answer:
        raise refused(settings, answer)
    raise TokenUnavailableError("Microsoft did not answer the device-code sign-in.")
