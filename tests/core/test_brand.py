"""Tests for modbot.brand: LinkedIn's own hosts, and the hosts that imitate it."""

from __future__ import annotations

import pytest

from modbot.brand import (
    claims_linkedin_name,
    is_linkedin,
    is_lookalike,
    looks_like_linkedin_domain,
)


@pytest.mark.parametrize(("host", "expected"), [
    ("linkedin.com", True), ("mailb.linkedin.com", True), ("linnkedin.com", True),
    ("linkedln.com", True), ("lnkedin.com", True), ("linkedin-security.net", True),
    ("linkedin.com.evil.net", True), ("1inked1n.com", True), ("xn--lnkedin-g2g.com", True),
    ("linked-in.info", True), ("LINKEDIN.COM", True),
    ("licdn.com", False), ("example.com", False), ("edinburgh.ac.uk", False),
    ("linkinpark.com", False), ("blink.example", False), ("", False),
])
def test_brand_test_sees_linkedin_and_its_imitations(host: str, expected: bool) -> None:
    """linkedin.com, its subdomains and look-alikes count as LinkedIn-like; other hosts do not."""
    assert looks_like_linkedin_domain(host) is expected


@pytest.mark.parametrize(("host", "linkedin", "lookalike"), [
    ("linkedin.com", True, False), ("bounce.linkedin.com", True, False),
    ("reply.linkedin.com", True, False), ("linkedin.com.evil.net", False, True),
    ("linnkedin.com", False, True), ("linkedin-security.net", False, True),
    ("licdn.com", False, False), ("example.org", False, False), ("", False, False),
])
def test_registrable_domains_not_substrings(host: str, linkedin: bool, lookalike: bool) -> None:
    """LinkedIn's own hosts are told apart from imitations by registrable domain."""
    assert (is_linkedin(host), is_lookalike(host)) == (linkedin, lookalike)


@pytest.mark.parametrize(("host", "expected"), [
    (" LinkedIn.COM. ", True), ("x" * 300 + ".linkedin.com", False),
    ("linkedin." + "x" * 300, True), ("a." * 5000 + "linnkedin.com", False),
])
def test_hosts_are_judged_by_their_first_255_characters(host: str, expected: bool) -> None:
    """Case, surrounding dots and spaces do not matter, and nothing past 255 characters does."""
    assert looks_like_linkedin_domain(host) is expected
    assert looks_like_linkedin_domain(host) is expected  # the remembered answer agrees


@pytest.mark.parametrize(("name", "expected"), [
    ("LinkedIn", True), ("Jordan Rivera via LinkedIn", True), ("LINKEDLN SECURITY", True),
    ("Career Center (LinkedIn tips)", False), ("x " * 150 + "via LinkedIn", False),
    ("Jordan Rivera", False),
])
def test_display_names_that_claim_linkedin(name: str, expected: bool) -> None:
    """A name claims LinkedIn by starting with it or ending in "via LinkedIn", within 200 chars."""
    assert claims_linkedin_name(name) is expected
    assert claims_linkedin_name(name) is expected
