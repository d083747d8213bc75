"""The gate's split of a header block reads what dkimpy's own splitter reads.

``modbot.trace`` finds the end of the block and unfolds values without regular expressions;
these tests hold it to the patterns it replaced and to dkimpy's split, byte for byte, on
arbitrary CR/LF mixes, and to the same findings of ``agrees`` as squeezing every value.
"""

from __future__ import annotations

import re

from dkim import rfc822_parse
from hypothesis import given, settings
from hypothesis import strategies as st

from modbot import trace

# Header-ish bytes: names, colons, folding white space and every CR/LF mix.
_PIECES = st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"From", b"To",
                           b"x", b"=?utf-8?q?a?=", b"\xc3\xa9", b"(c)", b"DKIM-Signature"])
_RAW = st.lists(_PIECES, max_size=60).map(b"".join)


def _regex_end(raw: bytes) -> int:
    match = re.search(rb"\r?\n\r?\n", raw)
    return match.start() if match else len(raw)


def _regex_fields(raw: bytes) -> tuple[tuple[str, str], ...] | None:
    end = _regex_end(raw)
    try:
        parsed, _ = rfc822_parse(raw[:end] + b"\r\n\r\n")
    except Exception:
        return None
    if len(parsed) > trace.MAX_FIELDS:
        return None
    return tuple((bytes(name).decode("ascii", "replace").lower(),
                  re.sub(rb"\r?\n", b"", value).decode("ascii", "surrogateescape").strip())
                 for name, value in parsed)


@settings(max_examples=3000, deadline=None)
@given(_RAW)
def test_header_end_is_the_first_blank_line_the_pattern_finds(raw: bytes) -> None:
    assert trace._header_end(raw) == _regex_end(raw)


@settings(max_examples=3000, deadline=None)
@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_unfolding_removes_what_the_pattern_removed(value: bytes) -> None:
    expected = re.sub(rb"\r?\n", b"", value).decode("ascii", "surrogateescape").strip()
    assert trace._text(value) == expected


@settings(max_examples=2000, deadline=None)
@given(_RAW)
def test_fields_are_dkimpys_split_with_raw_values(raw: bytes) -> None:
    found = trace.fields(raw)
    expected = _regex_fields(raw)
    assert (None if found is None else tuple(tuple(f) for f in found)) == expected


_VALUES = st.lists(st.sampled_from(["a", " a", "a ", "a  b", "a\tb", "b", ""]), max_size=2)


@settings(max_examples=2000, deadline=None)
@given(st.dictionaries(st.sampled_from(["from", "to", "x-linkedin-id", "subject"]), _VALUES),
       st.dictionaries(st.sampled_from(["from", "to", "x-linkedin-id", "subject"]), _VALUES))
def test_agrees_finds_what_squeezing_every_value_finds(
        mine: dict[str, list[str]], theirs: dict[str, list[str]]) -> None:
    block = [trace.Field(name, value) for name, values in mine.items() for value in values]
    parsed = [(name, value) for name, values in theirs.items() for value in values]
    names = {"from", "to"}

    def squeezed(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in pairs:
            if name in names or name.startswith("x-linkedin-"):
                out.setdefault(name, []).append(" ".join(value.split()))
        return out

    a, b = squeezed([(f.name, f.value) for f in block]), squeezed(parsed)
    expected = None
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name, []), b.get(name, [])
        if len(x) > 1 or len(y) > 1 or x != y:
            expected = name
            break
    found = trace.agrees(block, parsed, names)
    assert (found is None) == (expected is None)
    if expected is not None:
        assert trace._label(expected) in str(found)
