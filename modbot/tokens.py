"""The token file: a refresh token and the current access token, kept between logins.

What it is for: ``Tokens``, the value a token file holds, and how a token endpoint's answer
changes it (a new access token, a rotated refresh token, the day the sign-in ends); and
``TokenFile``, which reads it, writes it and holds its lock while a refresh runs. The first
sign-in (``modbot.signin``) writes it; the refresh (``modbot.oauth``) reads and rewrites it.

What it must never do:

- show a token in ``repr``, ``str``, a log or an error message (a damaged file is reported
  without its content);
- write the file other than atomically and owner-only (0600 from its first byte): a crash
  halfway through a write must not lose the refresh token, and no other user may read it;
- reach the network: this module knows files and values only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modbot.config import OAuth2Settings
from modbot.errors import ConfigError
from modbot.provider import TokenUnavailableError, provider_name

__all__ = ["DEFAULT_LIFETIME", "REFRESH_MARGIN", "TokenFile", "Tokens"]

# An access token this close to its expiry is refreshed first: a login that starts with a token
# about to expire could be refused halfway through a poll.
REFRESH_MARGIN = timedelta(minutes=5)
# When a token answer has no expires_in (RFC 6749 makes it optional), assume the usual hour.
DEFAULT_LIFETIME = timedelta(hours=1)
_FILE_VERSION = 1


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
