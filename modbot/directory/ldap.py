"""Look people up in the campus LDAP directory (ldap3), matched exactly like the CSV file.

Each lookup asks the server for every entry that might be the person, with a deliberately broad
filter, then matches the answer here with ``modbot.directory.index.Index``, the same rules as
the CSV directory: profile URL first, then a unique normalized name (case, accents, spacing, middle
names). The broad filter is what keeps ambiguity visible: a server compares names with its own
rules, so the filter asks for the name as written, without accents, by first and last word
(``cn=jordan*rivera``) and approximately (``cn~=…``: OpenLDAP compares words phonetically and
without accents), so that both namesakes reach ``Index`` and neither is guessed. The profile URL
is asked for by substring where the attribute allows it, and by equality and approximately in
the usual ``https://www.linkedin.com/in/<name>`` spellings for ``labeledURI``, which OpenLDAP
cannot search by substring (its schema gives it no substring rule); a value may carry a label
after the URL (``https://… LinkedIn``).

Every value taken from a notification is escaped (RFC 4515, ``escape_filter_chars``) before it
enters a filter, so a hostile name such as ``*)(mail=*`` is searched for literally.

An answer cut short by the size or time limit is never matched: a unique match among part of
the candidates could be one of two namesakes. Referrals and references to other servers are
not followed (ldap3 would send them the same password): point ``ldap_base_dn`` at the subtree
that holds people.

One connection per lookup, closed at once: lookups are rare (only people who need a reply),
no connection can go stale between polls, and lookups from several threads share nothing
but the memory of the last failure.
TLS is always verified, with ``modbot.tls.client_context``: ``ldaps://``, or StartTLS on
``ldap://``; clear text only to a loopback host when the configuration says so. The socket is
wrapped here rather than by ldap3, whose own host-name check replaces the SSL context's and
does not accept IP addresses on Python 3.12 and later.

ldap3's exceptions become ``DirectoryError`` with one sentence; a lookup turns that into
``Unresolved`` so that a server that is down holds the item instead of stopping the poll, and
gives the same answer at once for ``RETRY_AFTER`` seconds rather than waiting out the timeout
for every invitation. ``check`` asks the server for ``modbot check``. This module never logs a
name, an address or the password.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPInvalidFilterError,
    LDAPNoSuchObjectResult,
    LDAPOperationResult,
    LDAPSizeLimitExceededResult,
    LDAPStartTLSError,
)
from ldap3.core.results import (
    RESULT_REFERRAL,
    RESULT_SIZE_LIMIT_EXCEEDED,
    RESULT_TIME_LIMIT_EXCEEDED,
)
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars

from modbot.config import DirectorySettings, Security
from modbot.directory.index import (
    Directory,
    Entry,
    Index,
    first_and_last,
    is_plain_address,
    normalize_name,
    profile_key,
)
from modbot.errors import DirectoryError
from modbot.model import Resolution, Unresolved
from modbot.tls import client_context

log = logging.getLogger(__name__)

MAX_CANDIDATES = 50  # more entries than this resembling one person: too many to choose from
# After a failure, lookups give the same Unresolved at once for this long instead of each
# waiting out the timeout again: a silent server must not stall a poll once per invitation.
RETRY_AFTER = 60.0
_HOSTS = ("www.linkedin.com", "linkedin.com")


class _TooMany(Exception):
    """More entries resemble the person than ``MAX_CANDIDATES``."""


class _VerifiedTls(Tls):
    """ldap3's TLS hook, wrapping the socket with modbot's verifying context."""

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context
        self._host = host

    def wrap_socket(self, connection: Connection, do_handshake: bool = False) -> None:
        # Without TCP_NODELAY the first request after the TLS handshake waits ~40 ms: Nagle's
        # algorithm holds it until the server's delayed ACK of the handshake's last record
        # (measured: 48 ms per lookup against slapd, 4 ms with it).
        connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.socket = self._context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
            server_hostname=self._host)


def _e(value: str) -> str:
    return str(escape_filter_chars(value))


def url_filters(attribute: str, profile_url: str | None) -> list[str]:
    """Filter items that find an entry holding this profile, in any usual spelling."""
    key = profile_key(profile_url) if profile_url else None
    if not key:
        return []
    kind, _, ident = key.partition("/")
    path = f"in/{ident}" if kind == "in" else f"profile/view?id={ident}"
    bases = [f"{scheme}://{host}/{path}" for scheme in ("https", "http") for host in _HOSTS]
    exact = [*bases, *(f"{base}/" for base in bases)] if kind == "in" else bases
    return [
        f"({attribute}=*{_e(f'linkedin.com/{path}')}*)",
        *(f"({attribute}={_e(form)})" for form in exact),
        *(f"({attribute}~={_e(form)})" for form in bases),
    ]


def name_filters(attribute: str, name: str | None) -> list[str]:
    """Filter items that find every entry whose name could normalize to this one."""
    normalized = normalize_name(name or "")
    if not normalized:
        return []
    forms = dict.fromkeys((" ".join((name or "").split()), normalized))
    items = [f"({attribute}={_e(form)})" for form in forms]
    for form in forms:
        words = form.split()
        if len(words) > 1:
            items.append(f"({attribute}={_e(words[0])}*{_e(words[-1])})")
    items += [f"({attribute}~={_e(form)})"
              for form in dict.fromkeys((normalized, first_and_last(normalized)))]
    return items


@dataclass(frozen=True)
class LdapConfig:
    """What a lookup needs, taken from ``DirectorySettings`` once."""

    host: str
    port: int
    security: Security
    base_dn: str
    bind_dn: str | None
    password: str | None = field(repr=False)
    base_filter: str
    name_attribute: str
    email_attribute: str
    url_attribute: str
    timeout: float

    @property
    def where(self) -> str:
        scheme = "ldaps" if self.security == "tls" else "ldap"
        return f"{scheme}://{self.host}:{self.port}"


class LdapDirectory(Directory):
    """The campus directory on an LDAP server, asked at every lookup."""

    source = "directory-ldap"

    def __init__(self, config: LdapConfig, tls_context: ssl.SSLContext | None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._tls = _VerifiedTls(tls_context, config.host) if tls_context else None
        self._clock = clock
        self._failed: tuple[float, Unresolved] | None = None  # when, and what it gave

    @classmethod
    def from_settings(cls, settings: DirectorySettings, *,
                      clock: Callable[[], float] = time.monotonic) -> LdapDirectory:
        """Check the settings without contacting the server; ``DirectoryError`` if unusable.

        A bad ``ldap_ca_file`` raises ``ConfigError`` (from ``modbot.tls``). ``clock`` times
        ``RETRY_AFTER`` (tests pass their own).
        """
        if not settings.ldap_url or not settings.ldap_base_dn:
            raise DirectoryError("the LDAP directory needs ldap_url and ldap_base_dn")
        try:  # ldap3's own parser, so a broken filter is reported at start, not at a lookup
            parse_filter(f"(&{settings.ldap_filter}(x=*))",  # type: ignore[no-untyped-call]
                         None, True, True, None, False)
        except LDAPInvalidFilterError:
            raise DirectoryError(
                f"ldap_filter {settings.ldap_filter!r} is not a valid LDAP filter") from None
        password = settings.ldap_password.get_secret_value() if settings.ldap_password else None
        config = LdapConfig(
            host=settings.ldap_host, port=settings.ldap_port, security=settings.ldap_security,
            base_dn=settings.ldap_base_dn, bind_dn=settings.ldap_bind_dn, password=password,
            base_filter=settings.ldap_filter, name_attribute=settings.name_attribute,
            email_attribute=settings.email_attribute, url_attribute=settings.url_attribute,
            timeout=settings.ldap_timeout_seconds,
        )
        context = None if config.security == "none" else client_context(settings.ldap_ca_file)
        return cls(config, context, clock=clock)

    # --- the interface -------------------------------------------------------------------------

    def lookup(self, name: str | None, profile_url: str | None) -> Resolution:
        c = self.config
        items = [*url_filters(c.url_attribute, profile_url),
                 *name_filters(c.name_attribute, name)]
        index = Index(self.source)
        if items:
            if self._failed and self._clock() - self._failed[0] < RETRY_AFTER:
                return self._failed[1]
            query = f"(&{c.base_filter}({c.email_attribute}=*)(|{''.join(items)}))"
            try:
                for entry in self._search(query):
                    index.add(entry)
            except _TooMany:
                return Unresolved(f"more than {MAX_CANDIDATES} directory entries resemble "
                                  "this person; none is chosen")
            except DirectoryError as exc:
                log.warning("directory lookup failed: %s", exc)
                unresolved = Unresolved(f"the directory could not be reached: {exc}")
                self._failed = (self._clock(), unresolved)
                return unresolved
            self._failed = None
        return index.lookup(name, profile_url)

    def check(self) -> None:
        """Connect, bind and read the base entry; ``DirectoryError`` says what failed.

        Always asks the server, even within ``RETRY_AFTER`` of a failed lookup.
        """
        with self._connection() as conn:
            self._call(lambda: conn.search(self.config.base_dn, "(objectClass=*)", BASE,
                                           attributes=["1.1"]))

    # --- the server ----------------------------------------------------------------------------

    def _search(self, query: str) -> list[Entry]:
        """Every entry the query finds; ``_TooMany`` when the answer was cut short."""
        c = self.config
        with self._connection() as conn:
            self._call(lambda: conn.search(
                c.base_dn, query, SUBTREE,
                attributes=[c.name_attribute, c.email_attribute, c.url_attribute],
                size_limit=MAX_CANDIDATES, time_limit=math.ceil(c.timeout)))
            # ldap3 raises for neither of these: it returns the entries found so far, and a
            # unique match among part of the candidates could be one of two namesakes.
            code = (conn.result or {}).get("result")
            if code == RESULT_SIZE_LIMIT_EXCEEDED:
                raise _TooMany
            if code == RESULT_TIME_LIMIT_EXCEEDED:
                raise DirectoryError(f"{c.where} did not finish the search within "
                                     f"{math.ceil(c.timeout)} s")
            if code == RESULT_REFERRAL:
                raise DirectoryError(f"{c.where} referred the search of {c.base_dn} to another "
                                     "server (ldap_url, ldap_base_dn)")
            return [entry for item in conn.response or ()
                    if item.get("type") == "searchResEntry"
                    for entry in [self._entry(item["raw_attributes"])] if entry]

    def _entry(self, attributes: Mapping[str, list[bytes]]) -> Entry | None:
        c = self.config

        def texts(name: str) -> list[str]:
            return [v.decode("utf-8", "replace").strip() for v in attributes.get(name, ())
                    if isinstance(v, bytes)]

        names = tuple(n for n in texts(c.name_attribute) if n)
        email = next((m for m in texts(c.email_attribute) if is_plain_address(m)), None)
        # labeledURI is "<URI> <label>": the URI is the first word.
        urls = tuple(u.split()[0] for u in texts(c.url_attribute) if u)
        if not names or email is None:
            return None
        return Entry(names, email, urls)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection that is open, secured and bound; always unbound afterwards."""
        c = self.config
        server = Server(c.host, port=c.port, use_ssl=c.security == "tls", tls=self._tls,
                        get_info=NONE, connect_timeout=c.timeout)
        # ldap3 hands receive_timeout to struct.pack("LL", ...): it must be a whole number.
        # Referrals are not followed: ldap3 would bind to the referred server with the same
        # password, wherever it is.
        conn = Connection(server, user=c.bind_dn, password=c.password, read_only=True,
                          raise_exceptions=True, receive_timeout=math.ceil(c.timeout),
                          auto_referrals=False)
        try:
            self._call(conn.open)
            if c.security == "starttls":
                self._call(conn.start_tls)
            self._call(conn.bind)
            yield conn
        finally:
            with suppress(LDAPException, OSError):
                conn.unbind()  # closes the socket even when the server is gone

    def _call(self, operation: Callable[[], object]) -> None:
        try:
            operation()
        except LDAPSizeLimitExceededResult:
            raise _TooMany from None
        except (LDAPException, OSError) as exc:
            raise DirectoryError(self._sentence(exc)) from None

    def _sentence(self, exc: BaseException) -> str:
        """One sentence for a failure, with no secret in it."""
        c, text = self.config, str(exc).lower()
        where = c.where
        if isinstance(exc, LDAPInvalidCredentialsResult):
            return f"{where} refused the bind DN and password (ldap_bind_dn)"
        if isinstance(exc, LDAPNoSuchObjectResult):
            return f"{where} has no entry {c.base_dn} (ldap_base_dn)"
        if isinstance(exc, ssl.SSLCertVerificationError) or "certificate verify failed" in text:
            return f"the TLS certificate of {where} could not be verified"
        if isinstance(exc, ssl.SSLError):
            return f"the TLS handshake with {where} failed"
        if isinstance(exc, LDAPStartTLSError):
            return f"{where} did not start TLS (StartTLS)"
        if isinstance(exc, TimeoutError) or "timed out" in text:
            return f"{where} did not answer within {c.timeout:g} s"
        if isinstance(exc, ConnectionRefusedError) or "refused" in text:
            return f"{where} refused the connection"
        if isinstance(exc, LDAPOperationResult):
            return f"{where} answered {exc.description}"
        return f"{where} could not be reached ({type(exc).__name__})"
