"""The LinkedIn brand: which hosts are linkedin.com, and which hosts and names imitate it.

What it is for: the two questions every stage asks about a host or a display name. Is it
LinkedIn's own (``is_linkedin``: compared by registrable domain, with tldextract and its bundled
suffix list, never by substring)? Does it present itself as LinkedIn or imitate it
(``looks_like_linkedin_domain``, ``claims_linkedin_name``: every label, punycode, confusable
letters and one typing error away)? The pre-fetch test (``modbot.parse``), the authenticity
stage and the classifier all ask here, so that they never disagree.

Pure: no network (the suffix list is never downloaded), database, clock or environment. It must
never decide that mail is authentic: a host that is linkedin.com proves nothing until the
authenticity stage has seen a signature.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import re
import unicodedata
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import tldextract

__all__ = [
    "LINKEDIN",
    "claims_linkedin_name",
    "is_linkedin",
    "is_linkedin_link",
    "is_lookalike",
    "looks_like_linkedin_domain",
    "registrable_domain",
]

LINKEDIN = "linkedin.com"
_BRAND = "linkedin"
_CONFUSABLES = str.maketrans({
    "1": "l", "|": "l", "!": "i", "0": "o", "3": "e",
    "\u0430": "a", "\u0435": "e", "\u0456": "i", "\u04cf": "l", "\u043a": "k", "\u043e": "o",
    "\u0501": "d", "\u0578": "n", "\u03b9": "i", "\u03ba": "k", "\u0131": "i",
})
_WORD = re.compile(r"[^\W_]+")
_VIA_WORDS = frozenset({"via", "v\u00eda", "\u00fcber", "par", "through", "from", "melalui",
                        "tramite"})


def _within_one_edit(a: str, b: str) -> bool:
    """True if ``a`` becomes ``b`` with at most one insertion, deletion or substitution."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1:] == b[i + 1:]
    return a[i:] == b[i + 1:]


def _brand_token(token: str) -> bool:
    if _BRAND in token:
        return True
    # One edit leaves "link" or "edin" intact, so only such tokens are worth the window scan.
    if len(token) < 7 or ("link" not in token and "edin" not in token):
        return False
    return any(_within_one_edit(token[i:i + size], _BRAND)
               for size in (7, 8, 9) for i in range(len(token) - size + 1))


def _normalise_label(label: str) -> str:
    if label.startswith("xn--"):
        with contextlib.suppress(Exception):  # an invalid A-label is compared as written
            label = codecs.decode(label[4:].encode("ascii"), "punycode")
    label = unicodedata.normalize("NFKC", label).casefold()
    return label.translate(_CONFUSABLES)


def looks_like_linkedin_domain(host: str) -> bool:
    """True if ``host`` is linkedin.com, a subdomain, or imitates it (linnkedin, linkedln, …).

    It looks at every label, so ``linkedin.com.evil.net`` and ``linkedin-security.net`` count;
    whether a host really is LinkedIn's is the authenticity stage's question.
    """
    return _looks_like_linkedin_domain(host.strip().strip(".").lower()[:255])


@functools.lru_cache(maxsize=4096)  # the same few hosts come back in every message
def _looks_like_linkedin_domain(host: str) -> bool:
    labels = [_normalise_label(label) for label in host.split(".") if label]
    tokens = set(labels)
    for label in labels:
        tokens.update(re.split(r"[-_]", label))
        tokens.add(label.replace("-", "").replace("_", ""))
    return any(_brand_token(token) for token in tokens if token)


def claims_linkedin_name(display_name: str) -> bool:
    """True if a display name presents itself as LinkedIn or an imitation of it.

    It starts with the brand ("LinkedIn", "Linkedln Security") or ends in "via LinkedIn";
    a name that merely mentions LinkedIn ("Career Center (LinkedIn tips)") does not count.
    """
    return _claims_linkedin_name(display_name.casefold()[:200])


@functools.lru_cache(maxsize=4096)
def _claims_linkedin_name(folded: str) -> bool:
    words = _WORD.findall(folded)
    heads = [*words[:1], "".join(words[:2])]
    for size in (1, 2):
        if len(words) > size and words[-size - 1] in _VIA_WORDS:
            heads.append("".join(words[-size:]))
    return any(_brand_token(_normalise_label(word)) for word in heads if word)


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    # No network and no cache files: the suffix list bundled with tldextract is enough.
    # Imported on first use: tldextract brings in requests, which most commands never need.
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@functools.lru_cache(maxsize=4096)
def registrable_domain(host: str) -> str:
    """The registrable domain of ``host`` (``mailb.linkedin.com`` → ``linkedin.com``)."""
    host = host.strip().strip(".").lower()
    if not host:
        return ""
    try:
        return str(_extractor()(host).top_domain_under_public_suffix) or host
    except Exception:  # an unparsable host is compared as written
        return host


def is_linkedin(host: str) -> bool:
    """True if ``host`` belongs to linkedin.com itself."""
    return registrable_domain(host) == LINKEDIN


def is_lookalike(host: str) -> bool:
    """True if ``host`` imitates LinkedIn without being linkedin.com."""
    return bool(host) and looks_like_linkedin_domain(host) and not is_linkedin(host)


def is_linkedin_link(url: str) -> bool:
    """True if the link ``url`` points to a linkedin.com host; an unreadable link does not."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return is_linkedin(host.lower())
