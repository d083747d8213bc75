"""Tests for modbot.brand: LinkedIn's own hosts, and the hosts that imitate it."""

from __future__ import annotations

import pytest

from modbot.brand import is_linkedin, is_lookalike, looks_like_linkedin_domain


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
