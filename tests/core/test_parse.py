"""Tests for modbot.parse: raw bytes become a Notification, and the cheap pre-fetch check."""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import sys
import time
import tomllib
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modbot.model import Notification
from modbot.parse import (
    _HREF,
    _mail_parser,
    clean_line,
    decode_header_value,
    linkedin_candidate,
    parse,
    valid_unicode,
)

DATA = Path(__file__).parents[1] / "data"
EXPECTED = tomllib.loads((DATA / "expected.toml").read_text(encoding="utf-8"))
FIXTURES = sorted(EXPECTED)
CORPUS = sorted(name for name in FIXTURES if name.startswith("corpus/"))
SHARED_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def header_block(data: bytes) -> bytes:
    ends = [i for i in (data.find(b"\n\n"), data.find(b"\r\n\r\n")) if i >= 0]
    return data[: min(ends)] if ends else data


# --- the fixture corpus itself ------------------------------------------------------------------

def test_every_fixture_file_has_an_expectation() -> None:
    """Every .eml file under tests/data is listed in expected.toml, and nothing else is."""
    files = sorted(p.relative_to(DATA).as_posix() for p in DATA.glob("**/*.eml"))
    assert files == FIXTURES


@pytest.mark.parametrize("name", [n for n in FIXTURES if not n.startswith("corpus/")])
def test_fixture_first_line_names_its_source(name: str) -> None:
    """Each made-up fixture says on its first line where its shape comes from."""
    first = raw(name).split(b"\n", 1)[0].decode("utf-8")
    assert first.startswith("X-Fixture-Source: ") and len(first) > 40


@pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason="shared/corpus is not beside the checkout")
@pytest.mark.parametrize("name", CORPUS)
def test_real_corpus_copies_are_unchanged(name: str) -> None:
    """The real messages in tests/data/corpus are byte-for-byte copies of shared/corpus."""
    assert raw(name) == (SHARED_CORPUS / Path(name).name).read_bytes()


# --- parse ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_parses_with_clean_names_and_subject(name: str) -> None:
    """Every fixture parses, and no subject or display name carries a control character."""
    n = parse(raw(name))
    assert isinstance(n, Notification)
    assert n.from_ is not None and n.subject
    names = [n.subject, n.from_.name, *(a.name for a in n.reply_to + n.to)]
    assert not any(CONTROL.search(value) for value in names)


def test_real_invitation_headers_are_read() -> None:
    """The 2016 invitation yields its subject, sender, recipient, Message-ID and date."""
    n = parse(raw("corpus/invitation_m2m_2016.eml"))
    assert n.subject == "Paul, please add me to your LinkedIn network"
    assert (n.from_.name, n.from_.email) == ("Steven Footle", "invitations@linkedin.com")
    assert [a.email for a in n.to] == ["Paul@Hammant.org"]
    assert n.message_id == ("<997770868.3756094.1459635211566.JavaMail.app"
                            "@lva1-app3333.prod.linkedin.com>")
    assert n.date is not None and (n.date.year, n.date.month, n.date.day) == (2016, 4, 4)


def test_headers_keep_every_value_in_order_under_lower_case_names() -> None:
    """Repeated headers keep all their values in message order, keyed by lower-cased name."""
    n = parse(raw("corpus/spoof_linkedin_welcome_2013.eml"))
    received = n.headers["received"]
    assert len(received) == 4
    assert received[0].startswith("by 10.58.34.235") and received[-1].startswith("from mailc-aa")
    assert n.header("X-LINKEDIN-CLASS") == "WELCOME"
    assert all(name == name.lower() for name in n.headers)


def test_rfc2047_subject_and_display_name_are_decoded() -> None:
    """Encoded words in Subject and From come back as text."""
    n = parse(raw("invitation_es_html_only.eml"))
    assert n.subject == "Has recibido una invitación a conectar"
    assert n.from_ is not None and n.from_.name == "Lucía Fernández"


def test_control_characters_are_stripped_from_names_and_subject() -> None:
    """CR, LF and other controls hidden in encoded words never reach names or the subject."""
    message = (b"From: =?utf-8?q?Eve=0D=0ABcc=3A_x=40evil.example?= <eve@example.org>\n"
               b"Reply-To: =?utf-8?b?TWFsbG9yeQ0KVG86IHlAZXZpbC5leGFtcGxl?= <m@example.org>\n"
               b"Subject: =?utf-8?b?SGVsbG8NCkJjYzogeEBldmlsLmV4YW1wbGU=?=\n\nbody\n")
    n = parse(message)
    assert n.subject == "Hello Bcc: x@evil.example"
    assert n.from_ is not None and n.from_.name == "Eve Bcc: x@evil.example"
    assert n.reply_to[0].name == "Mallory To: y@evil.example"


def test_multipart_message_has_text_and_html() -> None:
    """Both alternative parts of a multipart message are decoded."""
    n = parse(raw("corpus/invitation_m2m_2016.eml"))
    assert "I'd like to join your LinkedIn network." in n.text
    assert "<h3" in n.html and "=3D" not in n.html


def test_text_only_message_has_no_html() -> None:
    """A text/plain message has text and an empty html."""
    n = parse(raw("invitation_id_text_only.eml"))
    assert "Saya ingin menambahkan Anda" in n.text and n.html == ""


def test_html_only_message_has_no_text() -> None:
    """A text/html message has html and an empty text."""
    n = parse(raw("invitation_es_html_only.eml"))
    assert "Me gustaría añadirte" in n.html and n.text == ""


def test_links_come_from_both_parts_deduplicated_and_unescaped() -> None:
    """Links are the http(s) URLs of text and HTML, once each, with &amp; unescaped."""
    n = parse(raw("corpus/invitation_m2m_2016.eml"))
    accept = ("https://www.linkedin.com/comm/people/invite-accept?mboxid=I6122153999904439999_500"
              "&sharedKey=-aWVMgrZ&fr=false&invitationId=6122153757099996400&fe=true"
              "&trk=eml-comm_invm-b-accept-newinvite&midToken=AQHQ1w999ws4wA"
              "&trkEmail=eml-M2M_Invitation-null-5-null-null-1b3p5%7Eimjp489e%999k")
    assert accept in n.links
    assert len(n.links) == len(set(n.links))
    assert not any("&amp;" in link for link in n.links)
    assert all(link.startswith(("http://", "https://")) for link in n.links)


def test_only_http_links_are_kept() -> None:
    """mailto:, javascript: and relative hrefs are not links."""
    message = (b"From: a@example.org\nContent-Type: text/html\n\n"
               b'<a href="mailto:x@example.org">m</a><a href="javascript:alert(1)">j</a>'
               b'<a href="/relative">r</a><a href=\'HTTPS://Example.org/a?b=1&amp;c=2\'>ok</a>\n')
    assert parse(message).links == ("HTTPS://Example.org/a?b=1&c=2",)


def test_unparseable_headers_still_yield_a_notification() -> None:
    """Inputs that break the stdlib parser give a Notification, never an exception."""
    for message in (b"Content-Type:;i*", b"", b"\xff\xfe\x00", b"From:\n\n\n"):
        assert isinstance(parse(message), Notification)


def test_deeply_nested_mime_falls_back_to_the_headers() -> None:
    """A message too deeply nested to parse keeps its headers and says so in one sentence."""
    parts = "".join(f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n"
                    for i in range(3000))
    message = ("From: LinkedIn <invitations@linkedin.com>\nSubject: deep\n"
               f"Content-Type: multipart/mixed; boundary=b0\n\n{parts}").encode()
    n = parse(message)
    assert n.subject == "deep" and n.from_ is not None
    assert any(d.endswith(".") and "headers were read" in d for d in n.defects)


def test_thirty_thousand_addresses_parse_in_under_a_second() -> None:
    """A To header with 30,000 addresses is cut at 100 and parses in under a second."""
    to = ", ".join(f"Person {i} <person{i}@example.org>" for i in range(30_000))
    message = f"From: a@example.org\r\nTo: {to}\r\nSubject: many\r\n\r\nbody\r\n".encode()
    started = time.perf_counter()
    n = parse(message)
    assert time.perf_counter() - started < 1.0
    assert len(n.to) == 100 and n.to[0].email == "person0@example.org"
    assert any("more than 100 addresses" in d for d in n.defects)


def test_repeated_and_oversized_headers_are_capped() -> None:
    """Thousands of address headers and a megabyte-long header are cut, with a defect each."""
    message = ("From: a@example.org\n" + "".join(f"Cc: c{i}@example.org\n" for i in range(1500))
               + "Subject: " + "=?utf-8?q?abc?= " * 60_000 + "\n\nbody\n").encode()
    started = time.perf_counter()
    n = parse(message)
    assert time.perf_counter() - started < 1.0
    assert len(n.headers["cc"]) == 10
    assert any("repeats" in d for d in n.defects) and any("longer than" in d for d in n.defects)


def test_parsing_logs_no_message_content(caplog: pytest.LogCaptureFixture,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing from a message reaches the logs or stderr, even at DEBUG."""
    caplog.set_level(logging.DEBUG)
    canary = "Zebulon-Canary"
    message = (f"From: {canary} <zebulon@example.org>\nSubject: {canary}\n"
               f"Received: from {canary} by mx\nContent-Type: multipart/{canary}; boundary=b\n\n"
               f"--b\nContent-Type: text/{canary}\n\n{canary}\n--b--\n").encode()
    assert parse(message).from_ is not None
    assert canary not in caplog.text and canary not in capsys.readouterr().err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_parse_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    """Any bytes at all parse into a Notification."""
    assert isinstance(parse(data), Notification)


MUTATION_ALPHABET = [b":", b";", b"\n", b"\r\n", b"=?", b"?=", b"<", b">", b'"', b"\\", b"(",
                     b"--", b"*", b"'", b"\x00", b"\xff", b"boundary=", b"Content-Type:"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS), st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 40), st.sampled_from(MUTATION_ALPHABET)),
    min_size=1, max_size=12))
def test_parse_never_raises_on_mutated_corpus(name: str,
                                              edits: list[tuple[float, int, bytes]]) -> None:
    """Real messages with bytes cut out and delimiters spliced in still parse."""
    data = bytearray(raw(name))
    for where, cut, insert in edits:
        at = int(where * len(data))
        data[at:at + cut] = insert
    assert isinstance(parse(bytes(data)), Notification)


def mail_parser_view(parser: Any, data: bytes) -> object:
    """What modbot reads of a mail-parser result: the message, the parts and the defects."""
    try:
        parsed = parser.from_bytes(data)
    except Exception as exc:
        return type(exc)
    items = [(str(k), str(v)) for k, v in parsed.message.raw_items()]
    return items, parsed.text_plain, parsed.text_html, sorted(parsed.defects_categories)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIXTURES), st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 40), st.sampled_from(MUTATION_ALPHABET)),
    max_size=8))
def test_mail_parser_is_read_as_its_own_parse_gives_it(
        name: str, edits: list[tuple[float, int, bytes]]) -> None:
    """Leaving out mail-parser's summary dictionaries changes nothing modbot reads."""
    import mailparser

    data = bytearray(raw(name))
    for where, cut, insert in edits:
        at = int(where * len(data))
        data[at:at + cut] = insert
    assert mail_parser_view(_mail_parser(), bytes(data)) == mail_parser_view(
        mailparser.MailParser, bytes(data))


def reference_clean_line(value: str) -> str:
    return re.sub(r"\s+", " ", CONTROL.sub(" ", valid_unicode(value))).strip()


LINE_PIECES = ["a", "\u00e9", " ", "  ", "\t", "\r\n", "\x00", "\x1c", "\x7f", "\x85", "\xa0",
               "\u2028", "\u3000", "\u200b", "\udce9", "=?", "?=", "utf-8?q?", "\U0001f600"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(LINE_PIECES), max_size=30).map("".join))
def test_lines_are_cleaned_as_the_patterns_say(value: str) -> None:
    """Control characters and runs of white space become one space, with none at either end."""
    assert clean_line(value) == reference_clean_line(value)


@pytest.mark.parametrize("value", [
    "plain", "  spaced\r\n\tout  ", "=? not a word ?=", "=?utf-8?q?caf=C3=A9?=",
    "a =?utf-8?b?w6k=?= b", "=?x-unknown?q?abc?=", "caf\udcc3\udca9", "?=?", "=?=",
])
def test_header_values_decode_as_rfc_2047_says(value: str) -> None:
    """Only encoded words are decoded; everything else comes back unfolded and on one line."""
    expected = value.replace("\r\n\t", "\t")
    with contextlib.suppress(Exception):
        expected = str(make_header(decode_header(expected)))
    assert decode_header_value(value) == reference_clean_line(expected)


HREF_PIECES = ["href", "HREF", "hReF", "xhref", "_href", "\u00e9href", "-href", " ", "\t", "\n",
               "=", '"', "'", ">", "<a ", "http://a.example/", "&amp;", "\u212a", "h", "\u0125ref"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(HREF_PIECES), max_size=30).map("".join))
def test_href_values_are_found_as_a_case_blind_pattern_finds_them(markup: str) -> None:
    """Every href attribute, in any case and only at a word boundary, with its one value."""
    reference = re.compile(
        r"""\bhref\s*=\s*(?:"([^"]{0,8192})"|'([^']{0,8192})'|([^\s"'>]{1,8192}))""", re.I)
    found = [(m.span(), m.groups()) for m in _HREF.finditer(markup)]
    assert found == [(m.span(), m.groups()) for m in reference.finditer(markup)]


def test_repeated_address_headers_read_alike() -> None:
    """The same To and From in message after message give the same addresses every time."""
    first, again = parse(raw("invitation_current_jordan_rivera.eml")), parse(
        raw("invitation_reminder_jordan_rivera.eml"))
    assert first.to == again.to and first.to[0].email == "morgan.lee@counsel.example.edu"
    to = ", ".join(f"=?utf-8?q?P=C3=A9rson_{i}?= <p{i}@example.org>" for i in range(40))
    n = parse(f"From: a@example.org\nTo: {to}\n\nbody\n".encode())
    assert [a.name for a in n.to[:2]] == ["P\u00e9rson 0", "P\u00e9rson 1"] and len(n.to) == 40


def test_the_stages_load_their_libraries_only_when_used() -> None:
    """Importing the pure stages loads no parsing, checking or configuration library."""
    heavy = ("mailparser", "authres", "dkim", "dns", "tldextract", "requests", "pydantic")
    code = ("import sys, modbot.parse, modbot.authenticity, modbot.classify, modbot.policy, "
            "modbot.recipients, modbot.directory.combined, modbot.kinds; "
            f"print(*[m for m in {heavy!r} if m in sys.modules])")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == []


# --- linkedin_candidate ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIXTURES)
def test_candidate_matches_the_expectation(name: str) -> None:
    """The header block alone says whether each fixture is worth fetching whole."""
    assert linkedin_candidate(header_block(raw(name))) is EXPECTED[name]["candidate"]


@pytest.mark.parametrize(("headers", "expected"), [
    (b"From: someone@example.org\nX-LinkedIn-Id: 42\n", True),
    (b"From: someone@example.org\nFeedback-ID: email_pymk_02:linkedin\n", True),
    (b"From: someone@example.org\nMessage-ID: <1.2.3@ltx1-app1.prod.linkedin.com>\n", True),
    (b"From: someone@example.org\nIn-Reply-To: <abc@counsel.example.edu>\n", True),
    (b"From: someone@example.org\nReferences:\n <abc@counsel.example.edu>\n", True),
    (b"From: someone@example.org\nReturn-Path: <x@bounce.linkedin.com>\n", True),
    (b"From: Security <alerts@linnkedin.com>\n", True),
    (b"From: =?utf-8?q?LinkedIn?= <noreply@example.net>\n", True),
    (b"From: someone@example.org\nReply-To:\n\tHelp <help@linkedin-security.net>\n", True),
    (b"From: someone@example.org\nSubject: my LinkedIn profile\nTo: linkedin@example.org\n", False),
    (b"From: someone@example.org\nFeedback-ID: 1:campaign:example\n", False),
    (b"", False),
])
def test_candidate_header_cases(headers: bytes, expected: bool) -> None:
    """Claims, imitations and replies are candidates; unrelated mail is not."""
    assert linkedin_candidate(headers) is expected


def test_candidate_is_fast_on_thirty_thousand_addresses() -> None:
    """A header block with 30,000 addresses is judged in well under a second."""
    to = ", ".join(f"Person {i} <person{i}@example.org>" for i in range(30_000))
    started = time.perf_counter()
    assert linkedin_candidate(f"From: a@example.org\nTo: {to}\n\n".encode()) is False
    assert time.perf_counter() - started < 0.5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_candidate_never_raises(data: bytes) -> None:
    """Any bytes give a yes or a no."""
    assert linkedin_candidate(data) in (True, False)


def test_mail_parser_internal_is_checked_before_it_is_overridden() -> None:
    """The pinned mail-parser has ``_make_mail``; a class without it would be used as it is."""
    import mailparser

    from modbot.parse import _overridable

    assert _overridable(mailparser.MailParser)
    assert not _overridable(type("Renamed", (), {}))
