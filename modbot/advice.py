"""What to do about a failed connection, in words an admin acts on.

The edges say what happened ("TLS failed (WRONG_VERSION_NUMBER)", "no answer within 30 s");
this module adds what it most likely means for the configuration and which key to change. The
commonest trap has its name: implicit TLS and STARTTLS mixed up, port 465 with
``security = "starttls"`` or port 587 with ``security = "tls"`` (993 and 143 for IMAP). Pure: it
reads the error's sentence and the settings, nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modbot.errors import MailboxAuthError, MailboxError, ModbotError, SendError

if TYPE_CHECKING:
    from modbot.config import Account, ImapSettings, SmtpSettings

# The usual ports: implicit TLS, and plain text upgraded by STARTTLS.
PORTS = {"imap": {"tls": 993, "starttls": 143}, "smtp": {"tls": 465, "starttls": 587}}
_PLAIN_ANSWER = ("WRONG_VERSION_NUMBER", "wrong version number", "UNKNOWN_PROTOCOL",
                 "packet length too long", "record layer failure", "HTTP_REQUEST")
_NO_GREETING = ("no answer within", "connection broke", "Server disconnected",
                "Connection reset", "server's answer could not be read")


def _mix_up(table: str, port: int, security: str) -> str:
    tls, starttls = PORTS[table]["tls"], PORTS[table]["starttls"]
    return (f"this is the {tls}/{starttls} mix-up: port {tls} speaks TLS from the first byte "
            f'(security = "tls"), port {starttls} starts in plain text and upgrades with STARTTLS '
            f'(security = "starttls"); [{table}] says port = {port} with security = '
            f'"{security}": change one of them')


def advice(error: ModbotError, settings: Account) -> str | None:
    """What to change for ``error`` from the IMAP or SMTP server of ``settings``, or None."""
    server: ImapSettings | SmtpSettings
    if isinstance(error, MailboxError):
        table, server = "imap", settings.imap
    elif isinstance(error, SendError):
        table, server = "smtp", settings.smtp
    else:
        return None
    text = str(error)
    if not text.startswith(("Connecting to", "Starting TLS", "Logging in", "The IMAP server",
                            "The SMTP server")):
        return None  # a failure while sending a message, not one of the connection
    security, port = server.security, server.port
    if security == "tls" and any(mark in text for mark in _PLAIN_ANSWER):
        return (f"the server on port {port} answered in plain text, not TLS: "
                + _mix_up(table, port, security))
    if security == "starttls" and text.startswith("Connecting to") \
            and any(mark in text for mark in _NO_GREETING):
        return (f"the server on port {port} said nothing in plain text, as a TLS port does: "
                + _mix_up(table, port, security))
    if "does not offer STARTTLS" in text:
        return (f"if the server speaks TLS from the first byte, set security = \"tls\" (usually "
                f"port {PORTS[table]['tls']}) in [{table}]")
    if "certificate was refused" in text:
        return (f"if the server's certificate comes from a campus CA, give that CA as ca_file in "
                f"[{table}]; if host names another name than the certificate, use the "
                "certificate's")
    if "Name or service not known" in text or "nodename nor servname" in text \
            or "Temporary failure in name resolution" in text:
        return f"the name {server.host} does not resolve here: check host in [{table}]"
    if "Connection refused" in text or "Connect call failed" in text:
        return (f"nothing listens on {server.host}:{port}: check host and port in [{table}], "
                "and that a firewall lets this machine reach the server")
    if "no answer within" in text:
        return (f"check host and port in [{table}], and that a firewall lets this machine reach "
                f"{server.host}:{port}")
    refused_login = isinstance(error, MailboxAuthError) or (
        table == "smtp" and text.startswith("Logging in") and " 535 " in text)
    if refused_login:
        if server.auth == "oauth2":
            return "sign in again with `modbot auth`"
        source = (f"${server.password_env}" if server.password_env
                  else str(server.password_file) if server.password_file else "the password")
        return f"check username in [{table}] and the password in {source}"
    return None


def explain(error: ModbotError, settings: Account) -> str:
    """The error's sentence, followed by what to do about it when that is known."""
    hint = advice(error, settings)
    text = str(error)
    return f"{text.rstrip('.')} — {hint}" if hint else text
