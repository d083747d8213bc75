"""The small error vocabulary every edge speaks.

Each edge catches its library's exceptions and raises one of these, with a one-sentence message
that says what is wrong without quoting message bodies, passwords or tokens::

    ModbotError
    ├── ConfigError          the configuration file or a secret is missing or invalid
    ├── StoreError           the database cannot be opened, migrated or written
    ├── MailboxError         IMAP: connect, TLS, login, select or fetch failed
    │   └── MailboxAuthError     the server refused the credentials
    ├── SendError            SMTP: the reply could not be handed over
    │   ├── TemporarySendError   4xx, timeouts, dropped lines: try again later
    │   ├── PermanentSendError   5xx, refused recipients: do not try again
    │   └── MaybeSentError       the line dropped after the message went out: never resend blindly
    ├── TemplateError        a template is missing, broken or fails its lint
    └── DirectoryError       the people directory cannot be read

Pure stages never raise these for bad *mail*: a broken message becomes a value with reasons.
"""

from __future__ import annotations


class ModbotError(Exception):
    """Base of every error modbot reports to a person."""


class ConfigError(ModbotError):
    """The configuration file or a secret is missing or invalid."""


class StoreError(ModbotError):
    """The database cannot be opened, migrated or written."""


class MailboxError(ModbotError):
    """An IMAP operation failed (connect, TLS, login, select, fetch, store)."""


class MailboxAuthError(MailboxError):
    """The IMAP server refused the credentials."""


class SendError(ModbotError):
    """The SMTP server did not take the reply."""


class TemporarySendError(SendError):
    """A failure worth retrying later: 4xx replies, timeouts, dropped connections."""


class PermanentSendError(SendError):
    """A failure that retrying cannot fix: 5xx replies, refused recipients, refused TLS."""


class MaybeSentError(SendError):
    """The connection ended after the message was handed over, before the server confirmed it.

    The server may have delivered it (RFC 1047). Not a ``TemporarySendError``: a blind retry could
    send it twice. Look for its Message-ID in the Sent folder, or hold it as "may have been sent".
    """


class TemplateError(ModbotError):
    """A template is missing, does not render, or fails its lint."""


class DirectoryError(ModbotError):
    """The people directory cannot be read."""
