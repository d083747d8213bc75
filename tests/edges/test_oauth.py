"""OAuth2 (XOAUTH2) logins: configuration, the token file, refreshing, IMAP and SMTP, sign-in.

Every token comes from a real provider on loopback (``servers.OAuthProvider``); the IMAP logins go
to a real Dovecot that asks that provider about each token, the SMTP logins to a real aiosmtpd.
"""

from __future__ import annotations

import email.message
import logging
import ssl
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import servers
from typer.testing import CliRunner

from modbot import config, digest, signin
from modbot.cli import app
from modbot.config import OAuth2Settings
from modbot.errors import (
    ConfigError,
    MailboxAuthError,
    MailboxError,
    PermanentSendError,
)
from modbot.mailbox import Mailbox
from modbot.oauth import TokenFile, Tokens, TokenSource, TokenUnavailableError, expiry_warnings
from modbot.outbox import Sender
from modbot.store import Store

pytestmark = pytest.mark.integration

Provider = servers.OAuthProvider

BASE_CONFIG = """
[counselor]
name = "Career Services Counselor"
email = "counselor@campus.example"
confidential_contact = "https://campus.example/secure"

[database]
url = "sqlite:///{db}"
"""


def parsed(text: str, tmp_path: Path) -> config.Account:
    """``text`` after the counselor and database tables, parsed as modbot would load it."""
    import tomllib

    data = tomllib.loads(BASE_CONFIG.format(db=tmp_path / "data" / "modbot.db") + text)
    return config.parse(data, base=tmp_path).first


def seeded(provider: Provider, settings: OAuth2Settings, *,
           expires_in: timedelta = timedelta(hours=1)) -> Tokens:
    """Sign the provider's user in and save the tokens as `modbot auth` would."""
    now = datetime.now(UTC)
    tokens = Tokens.first(settings, provider.grant(), now)
    tokens = Tokens(tokens.provider, tokens.client_id, tokens.refresh_token,
                    tokens.access_token, now + expires_in, now, now)
    TokenFile(settings.token_file).save(tokens)
    return tokens


def reply() -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"] = Provider.username
    message["To"] = "student@campus.example"
    message["Subject"] = "Thank you"
    message.set_content("Thank you for reaching out.")
    return message


# --------------------------------------------------------------------------------------------
# Configuration


GOOGLE = """
[imap]
host = "imap.gmail.com"
username = "counselor@campus.example"
auth = "oauth2"

[imap.oauth2]
provider = "google"
client_id = "1234.apps.googleusercontent.com"
client_secret_env = "MODBOT_TEST_CLIENT_SECRET"

[smtp]
host = "smtp.gmail.com"
auth = "oauth2"
"""


def test_oauth2_needs_no_password_and_smtp_shares_the_imap_sign_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[smtp] auth = "oauth2" without its own table reuses IMAP's client, token file and user."""
    monkeypatch.setenv("MODBOT_TEST_CLIENT_SECRET", "s3cret")
    settings = parsed(GOOGLE, tmp_path)
    oauth2 = settings.imap.oauth2
    assert oauth2 is not None and oauth2.client_secret is not None
    assert oauth2.client_secret.get_secret_value() == "s3cret"
    assert oauth2.effective_scopes == ("https://mail.google.com/",)
    assert oauth2.token_file == tmp_path / "data" / "modbot-imap-token.json"
    assert settings.imap.password is None
    assert settings.smtp.oauth2 == oauth2
    assert settings.smtp.username == "counselor@campus.example"
    assert "s3cret" not in repr(settings)


def test_microsoft_defaults_ask_for_imap_smtp_and_offline_access(tmp_path: Path) -> None:
    """Microsoft needs no secret; its default scopes cover IMAP, SMTP and a refresh token."""
    settings = parsed("""
[imap]
host = "outlook.office365.com"
username = "counselor@campus.example"
auth = "oauth2"

[imap.oauth2]
provider = "microsoft"
client_id = "00000000-0000-0000-0000-000000000000"
tenant = "campus.example"
token_file = "tokens/imap.json"

[smtp]
host = "smtp.office365.com"
port = 587
security = "starttls"
""", tmp_path)
    oauth2 = settings.imap.oauth2
    assert oauth2 is not None
    assert oauth2.effective_scopes == (
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send", "offline_access")
    assert oauth2.effective_authority == "https://login.microsoftonline.com/campus.example"
    assert oauth2.token_file == tmp_path / "tokens" / "imap.json"
    assert settings.smtp.auth == "password" and settings.smtp.oauth2 is None


@pytest.mark.parametrize(("imap_extra", "oauth2_extra", "expected"), [
    ("", 'client_secret = "x"', "imap.oauth2.client_secret: secrets are never written"),
    ("", 'token_url = "http://tokens.example/token"', "must be an https:// address"),
    ("", 'tenant = "common"', 'tenant and authority are only for provider = "microsoft"'),
    ('password_env = "HOME"', "", "password_env and password_file are not used"),
], ids=["secret-in-file", "plain-http", "tenant-for-google", "password-too"])
def test_oauth2_problems_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      imap_extra: str, oauth2_extra: str, expected: str) -> None:
    """Each misuse of the oauth2 keys is named in the configuration error."""
    monkeypatch.setenv("MODBOT_TEST_CLIENT_SECRET", "s3cret")
    text = GOOGLE.replace('auth = "oauth2"\n\n[imap.oauth2]',
                          f'auth = "oauth2"\n{imap_extra}\n\n[imap.oauth2]', 1)
    text = text.replace('client_secret_env = "MODBOT_TEST_CLIENT_SECRET"',
                        f'client_secret_env = "MODBOT_TEST_CLIENT_SECRET"\n{oauth2_extra}')
    with pytest.raises(ConfigError, match="problem") as caught:
        parsed(text, tmp_path)
    assert expected in str(caught.value)


def test_google_without_client_secret_and_oauth2_without_table(tmp_path: Path) -> None:
    """A Google client without a secret, and auth = "oauth2" without a table, are both named."""
    text = GOOGLE.replace('client_secret_env = "MODBOT_TEST_CLIENT_SECRET"\n', "") \
        .replace('[smtp]\nhost = "smtp.gmail.com"\nauth = "oauth2"',
                 '[smtp]\nhost = "smtp.gmail.com"\nusername = "x"\nauth = "oauth2"\n'
                 '[smtp.oauth2]\nprovider = "generic"\nclient_id = "c"')
    with pytest.raises(ConfigError) as caught:
        parsed(text, tmp_path)
    assert "Google's installed-app clients have a client secret" in str(caught.value)
    assert 'provider = "generic" needs token_url' in str(caught.value)


# --------------------------------------------------------------------------------------------
# The token file and the refresh decision


def test_token_file_is_owner_only_replaced_whole_and_never_shown(
        tmp_path: Path, fresh_oauth_provider: Provider) -> None:
    """Saving writes 0600 in one step (no temporary left), and repr shows no token."""
    settings = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "t" / "tokens.json")
    tokens = seeded(fresh_oauth_provider, settings)
    seeded(fresh_oauth_provider, settings)  # a second save replaces the first
    assert settings.token_file.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in settings.token_file.parent.iterdir() if p.suffix == ".tmp") == []
    loaded = TokenFile(settings.token_file).load()
    assert loaded is not None and loaded.refresh_token != tokens.refresh_token
    assert loaded.refresh_token not in repr(loaded)
    assert str(loaded.access_token) not in repr(loaded)


def test_a_fresh_access_token_is_used_without_asking_the_provider(
        tmp_path: Path, fresh_oauth_provider: Provider, client_ssl_context: ssl.SSLContext) -> None:
    """An access token valid beyond the margin is handed out as it is."""
    settings = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")
    tokens = seeded(fresh_oauth_provider, settings)
    source = TokenSource(settings, client_ssl_context)
    assert source.access_token(datetime.now(UTC)) == tokens.access_token
    assert fresh_oauth_provider.token_requests == []


def test_an_access_token_about_to_expire_is_refreshed_first(
        tmp_path: Path, fresh_oauth_provider: Provider, client_ssl_context: ssl.SSLContext) -> None:
    """Within the five-minute margin the token is refreshed, and the file keeps the new one."""
    settings = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")
    old = seeded(fresh_oauth_provider, settings, expires_in=timedelta(minutes=2))
    token = TokenSource(settings, client_ssl_context).access_token(datetime.now(UTC))
    assert token != old.access_token
    assert fresh_oauth_provider.introspect(token) == Provider.username
    saved = TokenFile(settings.token_file).load()
    assert saved is not None and saved.access_token == token
    assert saved.refresh_token == old.refresh_token
    assert fresh_oauth_provider.token_requests == ["refresh_token"]


def test_missing_token_file_says_to_sign_in(tmp_path: Path,
                                            client_ssl_context: ssl.SSLContext) -> None:
    """Without a token file the error is one sentence naming `modbot auth`."""
    settings = OAuth2Settings(provider="generic", client_id="c",
                              token_url="https://127.0.0.1:1/token",
                              token_file=tmp_path / "none.json")
    with pytest.raises(ConfigError) as caught:
        TokenSource(settings, client_ssl_context).access_token(datetime.now(UTC))
    assert "run `modbot auth generic` once" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_expiry_warning_only_when_the_provider_told_an_end(
        tmp_path: Path, fresh_oauth_provider: Provider, client_ssl_context: ssl.SSLContext) -> None:
    """The digest hears of a sign-in that ends within two weeks, and of none that never ends."""
    settings = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")
    now = datetime.now(UTC)
    seeded(fresh_oauth_provider, settings, expires_in=timedelta(0))
    source = TokenSource(settings, client_ssl_context)
    assert source.expires_warning(now) is None
    fresh_oauth_provider.refresh_expires_in = 7 * 24 * 3600  # a time-limited grant
    source.access_token(now)
    warning = source.expires_warning(now)
    assert warning is not None and "ends on" in warning and "`modbot auth generic`" in warning
    assert source.expires_warning(now - timedelta(days=30)) is None
    ended = source.expires_warning(now + timedelta(days=8))
    assert ended is not None and "ended on" in ended


def test_expiry_warnings_cover_each_token_file_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IMAP and SMTP sharing one sign-in give one warning (here: not signed in yet)."""
    monkeypatch.setenv("MODBOT_TEST_CLIENT_SECRET", "s3cret")
    settings = parsed(GOOGLE, tmp_path)
    warnings = expiry_warnings(settings, datetime.now(UTC))
    assert len(warnings) == 1
    assert "not signed in with Google yet" in warnings[0]


def test_the_digest_tells_of_a_missing_sign_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weekly digest carries the sign-in warnings of an oauth2 account."""
    monkeypatch.setenv("MODBOT_TEST_CLIENT_SECRET", "s3cret")
    settings = parsed(GOOGLE, tmp_path)
    (tmp_path / "data").mkdir()
    store = Store.open(settings.database.url)
    try:
        data = digest.gather(store, settings, datetime.now(UTC))
    finally:
        store.close()
    assert len(data.warnings) == 1
    assert "not signed in with Google yet" in data.warnings[0]


# --------------------------------------------------------------------------------------------
# IMAP: Dovecot checks every token at the provider


def test_mailbox_logs_in_with_a_valid_token(
        tmp_path: Path, fresh_oauth_provider: Provider, oauth_dovecot: servers.OAuthDovecot,
        client_ssl_context: ssl.SSLContext) -> None:
    """A saved, valid access token logs the Mailbox in with XOAUTH2."""
    oauth2 = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")
    seeded(fresh_oauth_provider, oauth2)
    with Mailbox(oauth_dovecot.imap_settings(oauth2), client_ssl_context) as mailbox:
        state = mailbox.select("INBOX")
    assert state.uidvalidity > 0
    assert fresh_oauth_provider.token_requests == []


@pytest.mark.parametrize("provider", ["generic", "google", "microsoft"])
def test_an_expired_access_token_is_refreshed_and_the_login_works(
        tmp_path: Path, fresh_oauth_provider: Provider, oauth_dovecot: servers.OAuthDovecot,
        client_ssl_context: ssl.SSLContext, provider: str) -> None:
    """Each provider's refresh (plain POST, google-auth, msal) gets a token Dovecot accepts."""
    fresh_oauth_provider.rotate_refresh = provider == "microsoft"
    oauth2 = fresh_oauth_provider.oauth2_settings(provider, tmp_path / "tokens.json")
    old = seeded(fresh_oauth_provider, oauth2, expires_in=-timedelta(minutes=1))
    assert old.access_token is not None
    fresh_oauth_provider.expire(old.access_token)
    for _ in range(2):  # the second connection reuses the refreshed token
        with Mailbox(oauth_dovecot.imap_settings(oauth2), client_ssl_context) as mailbox:
            mailbox.select("INBOX")
    assert fresh_oauth_provider.token_requests == ["refresh_token"]
    saved = TokenFile(oauth2.token_file).load()
    assert saved is not None and saved.access_token != old.access_token
    assert (saved.refresh_token != old.refresh_token) == (provider == "microsoft")
    assert oauth2.token_file.stat().st_mode & 0o777 == 0o600


def test_a_revoked_refresh_token_is_one_clear_sentence(
        tmp_path: Path, fresh_oauth_provider: Provider, oauth_dovecot: servers.OAuthDovecot,
        client_ssl_context: ssl.SSLContext) -> None:
    """A revoked sign-in stops the login with one sentence that says what to run, no token."""
    oauth2 = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")
    old = seeded(fresh_oauth_provider, oauth2, expires_in=timedelta(0))
    fresh_oauth_provider.revoke(old.refresh_token)
    with pytest.raises(MailboxAuthError) as caught, \
            Mailbox(oauth_dovecot.imap_settings(oauth2), client_ssl_context):
        pass
    message = str(caught.value)
    assert message == (
        "The token endpoint at 127.0.0.1 refused the saved sign-in (invalid_grant, AADSTS70000): "
        "it was revoked or has expired, so run `modbot auth generic` to sign in again.")
    assert old.refresh_token not in message


def test_a_token_dovecot_refuses_is_an_auth_error_without_the_token(
        tmp_path: Path, fresh_oauth_provider: Provider, oauth_dovecot: servers.OAuthDovecot,
        client_ssl_context: ssl.SSLContext) -> None:
    """An access token the provider ended early is refused by Dovecot; the error hides it."""
    oauth2 = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")
    tokens = seeded(fresh_oauth_provider, oauth2)
    assert tokens.access_token is not None
    fresh_oauth_provider.expire(tokens.access_token)
    with pytest.raises(MailboxAuthError) as caught, \
            Mailbox(oauth_dovecot.imap_settings(oauth2), client_ssl_context):
        pass
    assert "refused the login" in str(caught.value)
    assert tokens.access_token not in str(caught.value)


def test_an_unreachable_provider_is_a_passing_mailbox_error(
        tmp_path: Path, fresh_oauth_provider: Provider, oauth_dovecot: servers.OAuthDovecot,
        client_ssl_context: ssl.SSLContext) -> None:
    """A provider that cannot be reached is a MailboxError worth retrying, not an auth error."""
    oauth2 = fresh_oauth_provider.oauth2_settings(
        "generic", tmp_path / "tokens.json",
        token_url=f"http://127.0.0.1:{servers.free_port()}/token")
    seeded(fresh_oauth_provider, oauth2, expires_in=timedelta(0))
    with pytest.raises(MailboxError) as caught, \
            Mailbox(oauth_dovecot.imap_settings(oauth2), client_ssl_context):
        pass
    assert not isinstance(caught.value, MailboxAuthError)
    assert str(caught.value).startswith("Could not reach 127.0.0.1 to refresh the access token")


# --------------------------------------------------------------------------------------------
# SMTP: aiosmtpd checks the XOAUTH2 token at the provider


async def test_sender_logs_in_with_xoauth2_and_sends(
        tmp_path: Path, fresh_oauth_provider: Provider,
        oauth_smtp_server: servers.OAuthSmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """The Sender refreshes an expired token and logs in with XOAUTH2 before sending."""
    oauth2 = fresh_oauth_provider.oauth2_settings("google", tmp_path / "tokens.json")
    old = seeded(fresh_oauth_provider, oauth2, expires_in=timedelta(0))
    assert old.access_token is not None
    fresh_oauth_provider.expire(old.access_token)
    settings = oauth_smtp_server.smtp_oauth2_settings(oauth2)
    async with Sender(settings, client_ssl_context) as sender:
        await sender.send(reply())
    assert [m.login for m in oauth_smtp_server.messages] == [Provider.username]
    assert fresh_oauth_provider.token_requests == ["refresh_token"]


async def test_sender_with_a_revoked_sign_in_is_permanent(
        tmp_path: Path, fresh_oauth_provider: Provider,
        oauth_smtp_server: servers.OAuthSmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """A revoked refresh token holds the reply with one sentence, and nothing is sent."""
    oauth2 = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")
    old = seeded(fresh_oauth_provider, oauth2, expires_in=timedelta(0))
    fresh_oauth_provider.revoke(old.refresh_token)
    with pytest.raises(PermanentSendError, match=r"run `modbot auth generic` to sign in again\.$"):
        async with Sender(oauth_smtp_server.smtp_oauth2_settings(oauth2),
                          client_ssl_context) as sender:
            await sender.send(reply())
    assert oauth_smtp_server.messages == []


async def test_a_token_the_smtp_server_refuses_is_permanent_and_hidden(
        tmp_path: Path, fresh_oauth_provider: Provider,
        oauth_smtp_server: servers.OAuthSmtpServer, client_ssl_context: ssl.SSLContext) -> None:
    """A refused XOAUTH2 login is a PermanentSendError naming the 535, never the token."""
    oauth2 = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")
    tokens = seeded(fresh_oauth_provider, oauth2)
    assert tokens.access_token is not None
    fresh_oauth_provider.expire(tokens.access_token)
    with pytest.raises(PermanentSendError, match="535") as caught:
        async with Sender(oauth_smtp_server.smtp_oauth2_settings(oauth2), client_ssl_context):
            pass
    assert tokens.access_token not in str(caught.value)


# --------------------------------------------------------------------------------------------
# No token in any log line


async def test_tokens_never_reach_the_log_at_debug(
        tmp_path: Path, fresh_oauth_provider: Provider, oauth_dovecot: servers.OAuthDovecot,
        oauth_smtp_server: servers.OAuthSmtpServer, client_ssl_context: ssl.SSLContext,
        caplog: pytest.LogCaptureFixture) -> None:
    """Refreshing with each library, logging in and sending at DEBUG logs no token or secret."""
    caplog.set_level(logging.DEBUG)
    fresh_oauth_provider.rotate_refresh = True
    secrets_seen: list[str] = [Provider.client_secret]
    for provider in ("generic", "google", "microsoft"):
        oauth2 = fresh_oauth_provider.oauth2_settings(provider, tmp_path / f"{provider}.json")
        old = seeded(fresh_oauth_provider, oauth2, expires_in=timedelta(0))
        with Mailbox(oauth_dovecot.imap_settings(oauth2), client_ssl_context) as mailbox:
            mailbox.select("INBOX")
        async with Sender(oauth_smtp_server.smtp_oauth2_settings(oauth2),
                          client_ssl_context) as sender:
            await sender.send(reply())
        new = TokenFile(oauth2.token_file).load()
        assert new is not None
        secrets_seen += [old.refresh_token, str(old.access_token), new.refresh_token,
                         str(new.access_token)]
    # aiosmtpd ("mail.log") is the test server: it logs what it receives, tokens included.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log")
    assert "refreshed the OAuth2 access token" in logged
    assert [s for s in secrets_seen if s in logged] == []


# --------------------------------------------------------------------------------------------
# The first sign-in


def _browser(context: ssl.SSLContext) -> Any:
    """A person at a browser who consents at once: open the address, follow the redirect."""
    def open_address(address: str) -> None:
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        with opener.open(address, timeout=5) as answer:
            answer.read()

    def say(text: str) -> None:
        address = next(line.strip() for line in text.splitlines() if "://" in line
                       and "authorize" in line)
        threading.Thread(target=open_address, args=(address,), daemon=True).start()

    return say


def test_google_sign_in_comes_back_through_loopback_with_pkce(
        tmp_path: Path, fresh_oauth_provider: Provider,
        client_ssl_context: ssl.SSLContext) -> None:
    """The browser's answer reaches the loopback listener; the code is exchanged with PKCE."""
    oauth2 = fresh_oauth_provider.oauth2_settings("google", tmp_path / "tokens.json")
    answer = signin.sign_in(oauth2, client_ssl_context, username=Provider.username,
                            say=_browser(client_ssl_context), timeout=10)
    tokens = signin.save(oauth2, answer, datetime.now(UTC))
    assert fresh_oauth_provider.token_requests == ["authorization_code"]
    assert oauth2.token_file.stat().st_mode & 0o777 == 0o600
    token = TokenSource(oauth2, client_ssl_context).access_token(datetime.now(UTC))
    assert token == tokens.access_token
    assert fresh_oauth_provider.introspect(token) == Provider.username


def test_sign_in_ignores_an_answer_with_another_state(
        tmp_path: Path, fresh_oauth_provider: Provider,
        client_ssl_context: ssl.SSLContext) -> None:
    """An answer that does not carry the state modbot sent is refused, and no code is spent."""
    oauth2 = fresh_oauth_provider.oauth2_settings("generic", tmp_path / "tokens.json")

    def forged(text: str) -> None:
        redirect = next(word for word in text.split() if word.startswith("http://127.0.0.1:")
                        and "authorize" not in word).rstrip(";,")
        threading.Thread(target=lambda: urllib.request.urlopen(  # noqa: S310
            f"{redirect}?code=stolen&state=forged", timeout=5).read(), daemon=True).start()

    with pytest.raises(ConfigError, match="did not carry the state modbot sent"):
        signin.sign_in(oauth2, client_ssl_context, username=Provider.username, say=forged,
                       timeout=10)
    assert fresh_oauth_provider.token_requests == []


def _cli_config(tmp_path: Path, provider: Provider, ca_file: Path) -> Path:
    path = tmp_path / "modbot.toml"
    path.write_text(BASE_CONFIG.format(db=tmp_path / "modbot.db") + f"""
[imap]
host = "127.0.0.1"
username = "{Provider.username}"
ca_file = "{ca_file}"
auth = "oauth2"

[imap.oauth2]
provider = "microsoft"
client_id = "{Provider.client_id}"
authority = "{provider.https_url}"
tenant = "{servers.OAUTH_TENANT}"

[smtp]
host = "127.0.0.1"
auth = "oauth2"
""", encoding="utf-8")
    return path


def test_modbot_auth_microsoft_polls_the_device_code_until_the_person_is_done(
        tmp_path: Path, fresh_oauth_provider: Provider, ca_file: Path) -> None:
    """`modbot auth microsoft` prints the code, polls while pending, and saves the tokens."""
    config_file = _cli_config(tmp_path, fresh_oauth_provider, ca_file)
    result = CliRunner().invoke(app, ["--config", str(config_file), "auth", "microsoft"])
    assert result.exit_code == 0, result.output
    assert "enter WDJB-MJHT" in result.output
    assert "the SMTP login uses the same tokens" in result.output
    assert fresh_oauth_provider.token_requests == [servers.DEVICE_GRANT] * 3
    token_file = tmp_path / "modbot-imap-token.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    saved = TokenFile(token_file).load()
    assert saved is not None and saved.provider == "microsoft"
    assert saved.refresh_token not in result.output


def test_modbot_auth_refuses_another_provider_than_configured(
        tmp_path: Path, fresh_oauth_provider: Provider, ca_file: Path) -> None:
    """Naming a provider the configuration does not use is a usage error, before any request."""
    config_file = _cli_config(tmp_path, fresh_oauth_provider, ca_file)
    result = CliRunner().invoke(app, ["--config", str(config_file), "auth", "google"])
    assert result.exit_code == 2
    assert 'says provider = "microsoft", not "google"' in result.output
    assert fresh_oauth_provider.token_requests == []


def test_token_unavailable_is_not_a_config_error() -> None:
    """A passing outage and a refused sign-in stay apart in the error tree."""
    assert not issubclass(TokenUnavailableError, ConfigError)
