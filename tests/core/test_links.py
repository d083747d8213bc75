"""Tests for modbot.links: gateway wrappers undone, on real links and on links built here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from support.wrappers import barracuda, cisco, proofpoint_v2, proofpoint_v3, safelinks

from modbot.brand import is_lookalike
from modbot.links import MAX_DEPTH, WRAPPERS, Unwrapped, original_link, unwrap, wrappers_in

DATA = Path(__file__).parents[1] / "data"
REAL = [tuple(part.strip() for part in line.split(" | "))
        for line in (DATA / "wrapped_links.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")]
RECOVERABLE = [(label, url, want) for label, url, want in REAL
               if not want.startswith("unrecoverable")]
HIDDEN = [(label, url, want.removeprefix("unrecoverable ")) for label, url, want in REAL
          if want.startswith("unrecoverable")]
NESTED = next(url for label, url, _ in REAL if label.startswith("college"))
ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]+);")


ENCODERS = {"safelinks": safelinks, "proofpoint-v2": proofpoint_v2,
            "proofpoint-v3": proofpoint_v3, "barracuda": barracuda, "cisco": cisco}
HOSTS = ["www.linkedin.com", "se.linkedin.com", "example.org", "xn--bcher-kva.example",
         "linkedin-security.net"]
URL_CHARS = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"))
ORIGINALS = st.builds(lambda scheme, host, rest: f"{scheme}://{host}/{rest}",
                      st.sampled_from(["http", "https"]), st.sampled_from(HOSTS),
                      st.text(URL_CHARS, max_size=60))


def plain(url: str) -> bool:
    """True for an original these tests can expect back exactly: no entity to unescape."""
    return not ENTITY.search(url)


# --- the real links ---------------------------------------------------------------------------

@pytest.mark.parametrize(("label", "url", "want"), RECOVERABLE, ids=[r[0] for r in RECOVERABLE])
def test_real_wrapped_links_give_their_originals(label: str, url: str, want: str) -> None:
    """Every real wrapped link comes back as the link the person wrote."""
    result = unwrap(url)
    assert result.original == want
    assert result.wrappers and set(result.wrappers) <= set(WRAPPERS)


@pytest.mark.parametrize(("label", "url", "hint"), HIDDEN, ids=[r[0] for r in HIDDEN])
def test_real_mimecast_links_are_unrecoverable(label: str, url: str, hint: str) -> None:
    """A Mimecast link is marked unrecoverable, its domain hint kept apart and the link kept."""
    result = unwrap(url)
    assert (result.original, result.wrapper, result.hint) == (None, "mimecast", hint)
    assert result.link == original_link(url) == url


def test_real_nested_link_names_every_layer() -> None:
    """The college link is v3 around Safe Links around v3 around Safe Links, outermost first."""
    assert unwrap(NESTED).wrappers == ("proofpoint", "safelinks", "proofpoint", "safelinks")


def test_real_links_name_their_wrappers() -> None:
    """wrappers_in names every wrapper the real links went through, and nothing else."""
    assert wrappers_in(url for _, url, _ in REAL) == set(WRAPPERS)
    assert wrappers_in(["https://www.linkedin.com/comm/in/jordan-rivera-42"]) == set()


# --- round trips ------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(ORIGINALS, st.sampled_from(sorted(ENCODERS)))
def test_one_layer_round_trips(original: str, encoder: str) -> None:
    """A link wrapped once by any encoder written here comes back exactly."""
    assume(plain(original))
    assert unwrap(ENCODERS[encoder](original)) == Unwrapped(
        ENCODERS[encoder](original), original, (encoder.partition("-")[0],))


@settings(max_examples=200, deadline=None)
@given(ORIGINALS, st.lists(st.sampled_from(sorted(ENCODERS)), min_size=2, max_size=MAX_DEPTH))
def test_nested_layers_round_trip(original: str, encoders: list[str]) -> None:
    """Up to MAX_DEPTH layers of any wrappers, in any order, come off to the original."""
    assume(plain(original))
    url = original
    for name in encoders:
        url = ENCODERS[name](url)
    result = unwrap(url)
    assert result.original == original
    assert result.wrappers == tuple(name.partition("-")[0] for name in reversed(encoders))


def test_too_many_layers_are_not_guessed() -> None:
    """A link wrapped more than MAX_DEPTH times is kept as found, not half undone."""
    url = "https://www.linkedin.com/comm/in/jordan-rivera-42"
    for _ in range(MAX_DEPTH + 1):
        url = safelinks(url)
    result = unwrap(url)
    assert (result.original, result.link, len(result.wrappers)) == (None, url, MAX_DEPTH + 1)


# --- what is and is not a wrapper -------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://www.linkedin.com/comm/in/jordan-rivera-42?trk=eml-email_m2m_invite_single_01",
    "https://urldefense.com.evil.example/v3/__https://www.linkedin.com/__;!!x$",
    "https://nam11.safelinks.protection.outlook.com.evil.example/?url=https%3A%2F%2Flinkedin.com",
    "https://nam11.safelinks.protection.outlook.com@evil.example/?url=https%3A%2F%2Flinkedin.com",
    "https://evil.example/safelinks/?url=https%3A%2F%2Fwww.linkedin.com%2F",
    "https://notlinkprotect.cudasvc.com.evil.example/url?a=https%3a%2f%2fwww.linkedin.com",
    "https://protect-us.mimecast.com.evil.example/s/abc?domain=linkedin.com",
    "ftp://urldefense.com/v3/__https://www.linkedin.com/__;!!x$",
])
def test_only_the_wrappers_own_hosts_are_unwrapped(url: str) -> None:
    """A link is unwrapped only when its host is the wrapper's own, never a look-alike of it."""
    assert unwrap(url) == Unwrapped(url, url, ())


def test_a_wrapped_phishing_link_is_still_a_lookalike() -> None:
    """Safe Links around a link to a LinkedIn look-alike gives back the look-alike host."""
    original = unwrap(safelinks("https://www.linkedin-security.net/login?next=/feed")).original
    assert original == "https://www.linkedin-security.net/login?next=/feed"
    assert is_lookalike("www.linkedin-security.net")


@pytest.mark.parametrize("url", [
    "https://nam11.safelinks.protection.outlook.com/?data=05%7C02&reserved=0",
    "https://nam11.safelinks.protection.outlook.com/?url=&data=05",
    "https://nam11.safelinks.protection.outlook.com/?url=not%20a%20link&data=05",
    "https://urldefense.proofpoint.com/v2/url?d=DwIFaQ&c=x",
    "https://urldefense.proofpoint.com/v4/url?u=https-3A__example.org",
    "https://urldefense.com/v3/__https://example.org/a*b__;!!x$",  # a "*" with no byte for it
    "https://urldefense.com/v3/__https://example.org/a**_b__;JQ!!x$",  # a run longer than bytes
    "https://urldefense.com/v3/__https://example.org/a*b__;JQ%!!x$",  # not base64
    "https://urldefense.com/v3/__https://example.org/a__",  # no table at all
    "https://linkprotect.cudasvc.com/url?c=E,1,x&typo=1",
    "https://secure-web.cisco.com/12uvPqOwOjHJPiVGM6hJ/",
    "https://secure-web.cisco.com/12uvPqOwOjHJPiVGM6hJ/ftp%3A%2F%2Fexample.org",
])
def test_broken_wrappers_are_unrecoverable(url: str) -> None:
    """A wrapper that does not hold a readable original gives no original and keeps the link."""
    result = unwrap(url)
    assert result.original is None and result.wrapper in WRAPPERS and result.link == url


def test_escaping_inside_a_wrapper_is_undone() -> None:
    """A gateway that wrapped "&amp;" as it stood gives back "&", as the person wrote it."""
    wrapped = safelinks("https://www.linkedin.com/comm/in/x?midToken=a&amp;trk=b")
    assert unwrap(wrapped).original == "https://www.linkedin.com/comm/in/x?midToken=a&trk=b"


def test_v3_single_slash_scheme_is_repaired() -> None:
    """URL Defense v3 may write "https:/host"; the original gets its two slashes back."""
    assert unwrap("https://urldefense.com/v3/__https:/example.org/a__;!!x$").original \
        == "https://example.org/a"


@pytest.mark.parametrize(("encoded", "original"), [
    ("https%3A%2F%2Fexample.org%2Fa%20b%0Ac", "https://example.org/a%20b%0Ac"),
    ("https%3A%2F%2Fexample.org%2F%E9t%E9", "https://example.org/%E9t%E9"),
    ("https%3A%2F%2Fexample.org%2F%C3%A9t%C3%A9", "https://example.org/été"),
])
def test_decoded_links_stay_one_token(encoded: str, original: str) -> None:
    """White space, control characters and bytes that are not UTF-8 stay percent-encoded."""
    url = f"https://linkprotect.cudasvc.com/url?a={encoded}&c=E,1,x"
    assert unwrap(url).original == original


def test_long_links_are_left_alone() -> None:
    """A link longer than anything a wrapper writes is returned as found, unparsed."""
    url = safelinks("https://example.org/" + "a" * 20_000)
    assert unwrap(url) == Unwrapped(url, url, ())


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["https://nam11.safelinks.protection.outlook.com/?url=",
                        "https://urldefense.com/v3/__", "https://urldefense.com/v2/url?u=",
                        "https://urldefense.proofpoint.com/v1/url?u=",
                        "https://linkprotect.cudasvc.com/url?a=", "https://secure-web.cisco.com/",
                        "https://protect-us.mimecast.com/s/", ""]),
       st.text(max_size=200))
def test_unwrap_never_raises(prefix: str, rest: str) -> None:
    """Whatever follows a wrapper's prefix, unwrap returns a value and never raises."""
    result = unwrap(prefix + rest)
    assert result.found == prefix + rest
    assert result.original is None or isinstance(result.original, str)
