"""The IMAP connection cut in the middle: a loopback proxy in front of Dovecot's TLS port closes
both sides after a chosen byte count. Whatever the poll was doing, a clean poll afterwards leaves
no notification lost and no reply repeated. ``bench/soak.py`` runs 50 random cuts."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from support import faults, servers, trials

pytestmark = pytest.mark.integration

TRIALS = 10


@pytest.fixture(scope="module")
def session_bytes(dovecot: servers.Dovecot, server_cert: trustme.LeafCert, ca_file: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> int:
    """The bytes of one clean poll of the trial mailbox through the proxy."""
    smtp = servers.SmtpServer("tls", server_cert).start()
    proxy = faults.CutProxy((dovecot.host, dovecot.imaps_port))
    try:
        return trials.full_session_bytes(tmp_path_factory.mktemp("dry-run"), dovecot.add_user(),
                                         smtp, ca_file, proxy)
    finally:
        proxy.close()
        smtp.stop()


@pytest.fixture
def proxy(dovecot: servers.Dovecot) -> Iterator[faults.CutProxy]:
    cut = faults.CutProxy((dovecot.host, dovecot.imaps_port))
    yield cut
    cut.close()


@pytest.mark.parametrize("trial", range(TRIALS))
def test_cut_anywhere_loses_and_repeats_nothing(
        trial: int, session_bytes: int, tmp_path: Path, imap_user: servers.ImapUser,
        smtp_server: servers.SmtpServer, ca_file: Path, proxy: faults.CutProxy) -> None:
    """A cut at a random byte of the session, then a clean poll: 0 lost, 0 duplicates."""
    assert session_bytes > 10_000
    # One cut in each tenth of the session, so every stage (TLS, login, FETCH of headers and
    # bodies, STORE, APPEND to Sent) is hit in every run.
    rng = random.Random(trial)
    cut_after = int(session_bytes * (trial + rng.random()) / TRIALS) + 1
    outcome = trials.cut_trial(tmp_path, imap_user, smtp_server, ca_file, proxy, cut_after)
    assert proxy.cuts == 1
    assert (outcome.lost, outcome.duplicates, outcome.unfinished, outcome.unmarked) == (0, 0, 0, 0)
    assert outcome.sent + outcome.uncertain == trials.REPLIES
