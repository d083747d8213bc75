"""The pure stages import no edge: no IMAP, SMTP, database, LDAP or scheduler module."""

from __future__ import annotations

import subprocess
import sys

import pytest

EDGES = ("modbot.mailbox", "modbot.outbox", "modbot.store", "modbot.directory.ldap",
         "modbot.daemon", "modbot.dns", "imapclient", "aiosmtplib", "sqlalchemy", "ldap3",
         "apscheduler", "dns")


@pytest.mark.parametrize("module", [
    "modbot.model", "modbot.kinds", "modbot.words", "modbot.policy", "modbot.history",
    "modbot.classify", "modbot.recipients", "modbot.directory.combined", "modbot.judging",
    "modbot.triage", "modbot.recording",
])
def test_pure_module_imports_no_edge(module: str) -> None:
    """Importing ``module`` loads none of the edges or their protocol libraries."""
    code = f"import sys, {module}; print(*[m for m in {EDGES!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == [], f"{module} imports {', '.join(loaded)}"
