"""The TLS client contexts that every IMAP and SMTP connection shares: one per CA setting.

Certificates and host names are always verified and TLS 1.2 is the oldest version spoken; nothing
in modbot turns either off. A context is built the first time it is asked for and then shared by
every connection with the same ``ca_file``: loading the system's trust store takes about 20 ms
and a megabyte, and building trust anew per connection (as aiosmtplib does when given
``cert_bundle``) makes each TLS connection about six times slower.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

from modbot.errors import ConfigError

_contexts: dict[Path | None, ssl.SSLContext] = {}
_lock = threading.Lock()


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """The shared verifying client context for ``ca_file``: the system's trust store, plus
    ``ca_file`` if given.

    ``ca_file`` is a PEM bundle of extra certificate authorities (e.g. a career center's own CA),
    read once per process. Raise ``ConfigError`` when it is missing, unreadable or holds no
    certificate. Callers must not change the context they get: others use it too.
    """
    with _lock:  # IMAP work runs in threads: build each context once
        context = _contexts.get(ca_file)
        if context is None:
            context = _contexts[ca_file] = _new_context(ca_file)
    return context


def _new_context(ca_file: Path | None) -> ssl.SSLContext:
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
