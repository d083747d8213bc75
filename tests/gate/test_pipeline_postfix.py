"""modbot behind a college's own Debian mail server: Postfix with OpenDKIM (and OpenDMARC) as
milters, delivering to Dovecot over LMTP, the keys and policies served by dnsmasq (support/mta.py).

Genuine LinkedIn notifications and forgeries (support/pipeline_mail.py) go in by SMTP; modbot's
real poll reads them over IMAP, trusting ``mx.college.test``, and replies through aiosmtpd.
Genuine mail must be answered at the right address and every forgery held, with OpenDKIM and
OpenDMARC each writing its own header and with OpenDKIM alone. The pipeline starts once for the
module (about a second) and every message is delivered before the first poll.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import pytest
import trustme
from support import configs, mta, servers
from support.pipeline_mail import FORGED, GENUINE, INVITATION, JORDAN, Case, Keys, bare, cases

from modbot.poll import Poller, PollReport

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "data" / "pipeline"
MIXED = "forgery_then_genuine"  # one mailbox: the unparseable forgery, then the genuine invitation
Delivered = dict[tuple[str, str], servers.ImapUser]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys.generate()


@pytest.fixture(scope="module")
def pipeline(server_cert: trustme.LeafCert, client_ssl_context: ssl.SSLContext,
             keys: Keys) -> Iterator[mta.Pipeline]:
    """The running pipeline: skipped if it cannot start, failed if ``$CI`` is set."""
    try:
        running = mta.start_pipeline(server_cert, client_ssl_context, keys.zone())
    except servers.ServerUnavailable as exc:
        servers.unavailable(str(exc))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def by_name(keys: Keys) -> dict[str, Case]:
    return {case.name: case for case in cases(keys)}


@pytest.fixture(scope="module")
def delivered(pipeline: mta.Pipeline, by_name: dict[str, Case]) -> Delivered:
    """Every case through both variants, each into a mailbox of its own, all delivered."""
    boxes: Delivered = {}

    def send(variant: str, case: Case, user: servers.ImapUser) -> str:
        return pipeline.send(case.raw, variant=variant, sender=case.sender,
                             recipient=f"{user.username}@{mta.MAIL_DOMAIN}", peer=case.peer)

    queued = []
    for variant in mta.VARIANTS:
        for case in by_name.values():
            boxes[variant, case.name] = user = pipeline.dovecot.add_user()
            queued.append(send(variant, case, user))
        boxes[variant, MIXED] = user = pipeline.dovecot.add_user()
        queued.append(send(variant, by_name["forged_results_unparseable"], user))
    pipeline.wait_delivered(queued)
    pipeline.wait_delivered([send(variant, by_name["genuine_invitation"], boxes[variant, MIXED])
                             for variant in mta.VARIANTS])
    return boxes


async def poll(user: servers.ImapUser, smtp: servers.SmtpServer, tmp_path: Path,
               ca_file: Path) -> PollReport:
    """One real poll of ``user``'s inbox, trusting only the college's MX."""
    settings = configs.account(tmp_path, user.imap_settings(), smtp.smtp_settings(),
                               counselor={"email": "counselor@college.test"},
                               policy={"trusted_authserv_ids": (mta.MX,)})
    ctx = configs.poll_context(settings, ca_file)  # the MX's verdict only: no DNS here
    return await Poller(ctx).poll(datetime.now(UTC))


# --- what the pipeline itself does (the ground the fixtures and the modbot tests stand on) -----

def header_block(raw: bytes) -> list[tuple[str, str]]:
    """The delivered message's header fields, in order, values unfolded."""
    message = BytesHeaderParser(policy=compat32).parsebytes(raw)
    return [(name.lower(), re.sub(r"\s+", " ", str(value)).strip())
            for name, value in message.items()]


def shape(raw: bytes) -> list[str]:
    """Every Authentication-Results value and the MX's own Received line, in order, with
    signature fragments, queue ids and dates left out: what must not change between runs."""
    found = []
    for name, value in header_block(raw):
        if name == "authentication-results":
            found.append(re.sub(r"header\.b=[^;\s]+", "header.b=*", value))
        elif name == "received" and f"by {mta.MX} " in value:
            found.append("Received by the MX")
    return found


def fetch(delivered: Delivered, variant: str, name: str) -> bytes:
    (raw,) = delivered[variant, name].messages("INBOX")
    return raw


def test_each_milter_writes_its_own_results(delivered: Delivered) -> None:
    """OpenDMARC's two headers sit above OpenDKIM's, all of the MX, all above its Received."""
    assert shape(fetch(delivered, "opendkim_opendmarc", "genuine_invitation")) == [
        f"{mta.MX}; dmarc=pass (p=reject dis=none) header.from=linkedin.com",
        f"{mta.MX}; spf=pass smtp.mailfrom=bounce.linkedin.com",
        f"{mta.MX}; dkim=pass (2048-bit key; unprotected) header.d=linkedin.com "
        "header.i=@linkedin.com header.a=rsa-sha256 header.s=d2048-202308-00 header.b=*; "
        "dkim=pass (2048-bit key; unprotected) header.d=mailb.linkedin.com "
        "header.i=@mailb.linkedin.com header.a=rsa-sha256 header.s=d2048-202308-0e header.b=*; "
        "dkim-atps=neutral",
        "Received by the MX",
    ]
    assert shape(fetch(delivered, "opendkim", "genuine_invitation"))[1:] == ["Received by the MX"]


@pytest.mark.parametrize("variant", mta.VARIANTS)
def test_unparseable_forged_results_stay_below_the_mx(delivered: Delivered,
                                                      variant: str) -> None:
    """A forged header of the MX's id that OpenDKIM cannot parse is left under the MX's Received."""
    found = shape(fetch(delivered, variant, "forged_results_unparseable"))
    assert found[-2:] == ["Received by the MX",
                          f"{mta.MX}; none; dkim=pass header.d=linkedin.com"]


@pytest.mark.parametrize("variant", mta.VARIANTS)
def test_parseable_forged_results_removed(delivered: Delivered, variant: str) -> None:
    """A forged header of the MX's id that OpenDKIM can parse is gone when the mail arrives."""
    assert not any("dkim=pass" in r for r in
                   shape(fetch(delivered, variant, "forged_results_parseable")))


@pytest.mark.parametrize("variant", mta.VARIANTS)
def test_missing_key_is_a_failed_signature(delivered: Delivered, variant: str) -> None:
    """OpenDKIM reports a signature whose key is not in DNS as dkim=fail."""
    found = shape(fetch(delivered, variant, "forged_key_missing"))
    assert any('dkim=fail reason="key not found in DNS" header.d=linkedin.com' in r
               for r in found)


@pytest.mark.parametrize("variant", mta.VARIANTS)
def test_body_arrives_unchanged(delivered: Delivered, variant: str) -> None:
    """Postfix and Dovecot pass the signed body through as it was sent."""
    raw = fetch(delivered, variant, "genuine_invitation")
    assert raw.partition(b"\r\n\r\n")[2] == bare(INVITATION).partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("variant", mta.VARIANTS)
@pytest.mark.parametrize("name", GENUINE + FORGED)
def test_saved_fixture_matches_the_live_pipeline(delivered: Delivered, variant: str,
                                                 name: str) -> None:
    """tests/data/pipeline holds what this pipeline writes today, header for header."""
    saved = (FIXTURES / variant / f"{name}.headers").read_bytes()
    assert shape(saved) == shape(fetch(delivered, variant, name))


# --- modbot's poll on what the pipeline delivered ----------------------------------------------

@pytest.mark.parametrize("variant", mta.VARIANTS)
@pytest.mark.parametrize("name", GENUINE)
async def test_genuine_answered(delivered: Delivered, by_name: dict[str, Case], variant: str,
                                name: str, smtp_server: servers.SmtpServer, tmp_path: Path,
                                ca_file: Path) -> None:
    """A genuine notification gets one reply, at the directory address or LinkedIn's relay."""
    report = await poll(delivered[variant, name], smtp_server, tmp_path, ca_file)
    assert [m.recipients for m in smtp_server.messages] == [(by_name[name].answer_to,)], \
        [h.reasons for h in report.handled]


@pytest.mark.parametrize("variant", mta.VARIANTS)
@pytest.mark.parametrize("name", FORGED)
async def test_forgery_held(delivered: Delivered, variant: str, name: str,
                            smtp_server: servers.SmtpServer, tmp_path: Path,
                            ca_file: Path) -> None:
    """A forgery is held for the counselor and never answered."""
    report = await poll(delivered[variant, name], smtp_server, tmp_path, ca_file)
    assert smtp_server.messages == []
    assert [h.action for h in report.handled] == ["hold"], [h.reasons for h in report.handled]


@pytest.mark.parametrize("variant", mta.VARIANTS)
async def test_missing_key_shown_as_spoof(delivered: Delivered, variant: str,
                                          smtp_server: servers.SmtpServer, tmp_path: Path,
                                          ca_file: Path) -> None:
    """A LinkedIn signature whose key is not in DNS is a failed proof: a spoof, not unconfirmed."""
    report = await poll(delivered[variant, "forged_key_missing"], smtp_server, tmp_path, ca_file)
    assert [h.kind for h in report.handled] == ["spoofed_linkedin"], \
        [h.reasons for h in report.handled]


@pytest.mark.parametrize("variant", mta.VARIANTS)
async def test_forgery_first_does_not_shadow_the_genuine(
        delivered: Delivered, variant: str, smtp_server: servers.SmtpServer, tmp_path: Path,
        ca_file: Path) -> None:
    """A forged copy arriving first is held; the genuine invitation after it is the one answered."""
    report = await poll(delivered[variant, MIXED], smtp_server, tmp_path, ca_file)
    forged, genuine = sorted(report.handled, key=lambda h: h.uid)
    assert (forged.action, genuine.action) == ("hold", "reply"), \
        (forged.reasons, genuine.reasons)
    assert [m.recipients for m in smtp_server.messages] == [(JORDAN,)]
