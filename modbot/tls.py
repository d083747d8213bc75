"""The one TLS client context that every IMAP and SMTP connection shares.

Certificates and host names are always verified and TLS 1.2 is the oldest version spoken; nothing
in modbot turns either off. Build the context once at start and pass it to every connection:
building trust anew per connection (as aiosmtplib does when given ``cert_bundle``) makes each TLS
connection about six times slower.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from modbot.errors import ConfigError


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """Return a verifying client context: the system's trust store, plus ``ca_file`` if given.

    ``ca_file`` is a PEM bundle of extra certificate authorities (e.g. a career center's own CA).
    Raise ``ConfigError`` when it is missing, unreadable or holds no certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # create_default_context already sets both; stated here so that no later edit weakens them.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except OSError as exc:
            # ssl.SSLError is an OSError too; its reason says what is wrong with the content.
            reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
            raise ConfigError(
                f"cannot use CA file {ca_file}: {str(reason).replace('_', ' ').lower()}"
            ) from None
    return context
