"""Tests that parse and classify see the links of rewritten mail as the person wrote them."""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.wrappers import barracuda, cisco, proofpoint_v2, proofpoint_v3, rewritten, safelinks

from modbot.brand import is_lookalike
from modbot.classify import classify
from modbot.links import wrappers_in
from modbot.model import Authenticity, Verdict
from modbot.parse import extract_links, parse

DATA = Path(__file__).parents[1] / "data"

CLASSIFIED = ["invitation_current_jordan_rivera.eml", "invitation_reminder_jordan_rivera.eml",
              "invitation_es_html_only.eml", "invitation_id_text_only.eml",
              "invitation_pt_2016_ek.eml", "corpus/invitation_m2m_2016.eml",
              "message_sam_okafor_relay.eml", "pymk_02_feedback_id.eml", "job_alert.eml"]
GATEWAYS = {"safelinks": safelinks, "proofpoint-v2": proofpoint_v2,
            "v3-around-safelinks": lambda url: proofpoint_v3(safelinks(url)),
            "barracuda": barracuda, "cisco": cisco}
WRAPPERS_OF = {"safelinks": {"safelinks"}, "proofpoint-v2": {"proofpoint"},
               "v3-around-safelinks": {"proofpoint", "safelinks"}, "barracuda": {"barracuda"},
               "cisco": {"cisco"}}


@pytest.mark.parametrize("gateway", sorted(GATEWAYS))
@pytest.mark.parametrize("name", CLASSIFIED)
def test_wrapped_notifications_classify_as_the_originals(name: str, gateway: str) -> None:
    """Kind, template key, person, profile URL and invitation id survive a gateway's rewriting."""
    raw = (DATA / name).read_bytes()
    stored = parse(rewritten(raw, GATEWAYS[gateway]))
    as_stored = extract_links(stored.text, stored.html, originals=False)
    assert wrappers_in(as_stored) == WRAPPERS_OF[gateway]
    assert stored.links == parse(raw).links
    auth = Authenticity(True, Verdict.AUTHENTIC, ("given by the test",))
    assert classify(stored, auth) == classify(parse(raw), auth)


def test_parse_gives_originals_and_can_give_the_links_as_stored() -> None:
    """Notification.links holds the originals; extract_links can still show the wrappers met."""
    text = (f"Accept: {safelinks('https://www.linkedin.com/comm/mynetwork/invite-accept/1')}\n"
            "Report: https://protect-us.mimecast.com/s/yj15CXDwEpFqyG4H6Jxp2?domain=linkedin.com\n")
    body = ('<a href="' + html.escape(proofpoint_v3("https://se.linkedin.com/comm/in/ada?x=1&y=2"))
            + '">Ada</a>')
    assert extract_links(text, body) == (
        "https://www.linkedin.com/comm/mynetwork/invite-accept/1",
        "https://protect-us.mimecast.com/s/yj15CXDwEpFqyG4H6Jxp2?domain=linkedin.com",
        "https://se.linkedin.com/comm/in/ada?x=1&y=2")
    assert wrappers_in(extract_links(text, body, originals=False)) == {
        "safelinks", "mimecast", "proofpoint"}


def test_wrapped_lookalike_links_reach_the_lookalike_check() -> None:
    """A phishing link behind Safe Links is seen with its own, look-alike host."""
    links = extract_links("", f'<a href="{safelinks("https://linkedin-security.net/in/x")}">')
    assert links == ("https://linkedin-security.net/in/x",)
    assert is_lookalike(urlsplit(links[0]).hostname or "")


def test_a_wrapped_link_that_is_not_http_stays_wrapped() -> None:
    """A wrapper around a javascript: link is kept as found, never turned into a script link."""
    wrapped = safelinks("javascript:alert(1)")
    assert extract_links(wrapped, "") == (wrapped,)
