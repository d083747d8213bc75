"""Shared fixtures. The servers behind them live in ``tests/support/servers.py``."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import trustme
from support import faults, servers

from modbot.tls import client_context

_Smtp = TypeVar("_Smtp", bound=servers.SmtpServer)


@pytest.fixture(autouse=True)
def _restore_umask() -> Iterator[None]:
    """Start and end each test with umask 022: an in-process `modbot` command sets 077.

    Left at 077, a Dovecot started by a later test creates directories its own users cannot
    enter, and every login fails with "Temporary authentication failure".
    """
    os.umask(0o022)
    yield
    os.umask(0o022)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test certificate authority that signs every test server's certificate."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    """A server certificate for 127.0.0.1 and localhost, signed by ``ca``."""
    return ca.issue_cert(*servers.CERT_NAMES)


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ca``'s certificate as a PEM file, for ``ca_file`` in configurations."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(path)
    return path


@pytest.fixture(scope="session")
def untrusted_ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEM file of another CA, which signed none of the test servers."""
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(path)
    return path


@pytest.fixture(scope="session")
def client_ssl_context(ca_file: Path) -> ssl.SSLContext:
    """modbot's shared client context, trusting ``ca``."""
    return client_context(ca_file)


@pytest.fixture(scope="session")
def dovecot(server_cert: trustme.LeafCert,
            client_ssl_context: ssl.SSLContext) -> Iterator[servers.Dovecot]:
    """One private Dovecot for the whole run: skipped if unavailable, failed if ``$CI`` is set."""
    try:
        server = servers.start_dovecot(server_cert, client_ssl_context)
    except servers.ServerUnavailable as exc:
        servers.unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture
def imap_user(dovecot: servers.Dovecot) -> servers.ImapUser:
    """A fresh Dovecot user with an empty mailbox."""
    return dovecot.add_user()


def _running(server: _Smtp) -> Iterator[_Smtp]:
    server.start()
    yield server
    server.stop()


def _smtp(mode: servers.SmtpMode, cert: trustme.LeafCert) -> Iterator[servers.SmtpServer]:
    yield from _running(servers.SmtpServer(mode, cert))


@pytest.fixture
def smtp_server(server_cert: trustme.LeafCert) -> Iterator[servers.SmtpServer]:
    """An aiosmtpd server with implicit TLS that records what it receives."""
    yield from _smtp("tls", server_cert)


@pytest.fixture
def other_smtp_server(server_cert: trustme.LeafCert) -> Iterator[servers.SmtpServer]:
    """A second server like ``smtp_server``, for a second inbox's replies."""
    yield from _smtp("tls", server_cert)


@pytest.fixture
def killing_smtp(server_cert: trustme.LeafCert) -> Iterator[faults.KillingSmtpServer]:
    """A ``smtp_server`` that counts RCPT and DATA and, once armed, kills the polling process
    in the middle of DATA (``faults.KillingSmtpServer``)."""
    yield from _running(faults.KillingSmtpServer("tls", server_cert))


@pytest.fixture
def smtp_starttls_server(server_cert: trustme.LeafCert) -> Iterator[servers.SmtpServer]:
    """An aiosmtpd server on a plain port that requires STARTTLS before anything else."""
    yield from _smtp("starttls", server_cert)


@pytest.fixture
def smtp_plain_server(server_cert: trustme.LeafCert) -> Iterator[servers.SmtpServer]:
    """An aiosmtpd server without TLS that still offers AUTH: STARTTLS stripped by an attacker."""
    yield from _smtp("plain", server_cert)


@pytest.fixture
def silent_server() -> Iterator[servers.SilentServer]:
    """A port that accepts connections and never answers."""
    server = servers.SilentServer()
    yield server
    server.close()


@pytest.fixture
def imap_without_starttls() -> Iterator[servers.ImapWithoutStarttls]:
    """An IMAP server that offers no STARTTLS and records what the client sends."""
    server = servers.ImapWithoutStarttls()
    yield server
    server.close()


# --------------------------------------------------------------------------------------------
# PostgreSQL (support/pgserver.py): one private cluster per run, one database per test.


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """One private PostgreSQL for the whole run: skipped if unavailable, failed if ``$CI`` is set.

    Typed ``object`` here so this file does not import psycopg for runs that never use it.
    """
    try:
        from support import pgserver
    except ImportError as exc:
        servers.unavailable(f"the PostgreSQL driver is missing ({exc.name}); install '.[test]'")
    try:
        server = pgserver.start_postgres()
    except servers.ServerUnavailable as exc:
        servers.unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres: object) -> str:
    """The SQLAlchemy URL of a fresh, empty database on the session's PostgreSQL."""
    from support import pgserver

    assert isinstance(postgres, pgserver.Postgres)
    return postgres.create_database()


@pytest.fixture
def postgres_migrated_url(postgres: object) -> str:
    """The URL of a fresh database already at the latest schema (faster than migrating)."""
    from support import pgserver

    assert isinstance(postgres, pgserver.Postgres)
    return postgres.create_migrated_database()


# --------------------------------------------------------------------------------------------
# OAuth2 (support/servers.py): a provider on loopback, a Dovecot that asks it, aiosmtpd XOAUTH2.


@pytest.fixture(scope="session")
def oauth_provider(server_cert: trustme.LeafCert) -> Iterator[servers.OAuthProvider]:
    """One OAuth2 provider on loopback for the run; tests sign in their own users."""
    provider = servers.OAuthProvider(server_cert)
    yield provider
    provider.close()


@pytest.fixture
def fresh_oauth_provider(oauth_provider: servers.OAuthProvider) -> servers.OAuthProvider:
    """The session's provider with its per-test knobs set back to their defaults."""
    oauth_provider.access_lifetime = 3600
    oauth_provider.rotate_refresh = False
    oauth_provider.refresh_expires_in = None
    oauth_provider.device_pending_polls = 2
    oauth_provider.token_requests.clear()
    return oauth_provider


@pytest.fixture(scope="session")
def oauth_dovecot(server_cert: trustme.LeafCert, client_ssl_context: ssl.SSLContext,
                  oauth_provider: servers.OAuthProvider) -> Iterator[servers.OAuthDovecot]:
    """A private Dovecot whose only logins are bearer tokens checked at ``oauth_provider``."""
    try:
        server = servers.start_oauth_dovecot(server_cert, client_ssl_context,
                                             f"{oauth_provider.http_url}/introspect")
    except servers.ServerUnavailable as exc:
        servers.unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture
def oauth_smtp_server(server_cert: trustme.LeafCert, fresh_oauth_provider: servers.OAuthProvider
                      ) -> Iterator[servers.OAuthSmtpServer]:
    """An aiosmtpd server with implicit TLS that takes XOAUTH2 tokens of ``oauth_provider``."""
    yield from _running(servers.OAuthSmtpServer("tls", server_cert, fresh_oauth_provider))
