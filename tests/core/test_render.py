"""Tests for modbot.render: the templates, the reply email, and the template lint."""

from __future__ import annotations

import email
import email.policy
import html
import re
import shutil
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
from aiosmtplib.email import flatten_message
from hypothesis import given, settings
from hypothesis import strategies as st

from modbot.config import CounselorSettings
from modbot.errors import TemplateError
from modbot.model import Person, Recipient
from modbot.render import (
    REPLY_TEMPLATES,
    TEMPLATE_NAMES,
    Templates,
    default_templates_dir,
    lint,
    make_message_id,
    practice_texts,
    reply_message,
    reply_text,
)

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
CONTACT = "https://careers.example.edu/appointments or (555) 010-0142"
COUNSELOR = CounselorSettings(
    name="Dana Whitfield", email="dana@careers.example.edu", confidential_contact=CONTACT
)
ANA = Person(name="Ana Lima", headline="Biology student", group="Career Center Network")
STUDENT = Recipient(name="Ana Lima", email="ana@students.example.edu", source="directory-csv")
HEADERS = [
    "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "X-Auto-Response-Suppress",
    "X-Modbot-Kind", "MIME-Version", "Content-Type",
]
HOSTILE_PARTS = [
    "\r\n", "\n", "\r", "\rBcc: evil@attacker.example", "\r\nCc: evil@attacker.example", ",",
    '"', "\\", "<", ">", "@", "evil@attacker.example", "<script>alert(1)</script>", "é", "名前",
    "\u2028", "\u202e", "\x00", "\t", " ", "=?utf-8?q?=0D=0ABcc:_x@y.example?=", "x" * 40,
]
hostile_names = st.lists(
    st.one_of(st.sampled_from(HOSTILE_PARTS), st.text(max_size=8)), max_size=12
).map("".join)


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.load()


def reply(templates: Templates, *, template: str = "connection_invitation",
          person: Person = ANA, recipient: Recipient = STUDENT,
          counselor: CounselorSettings = COUNSELOR, redirect_to: str | None = None
          ) -> EmailMessage:
    """The reply as its recipient reads it: written to bytes, parsed back."""
    return reparse(reply_message(
        templates, template=template, counselor=counselor, recipient=recipient, person=person,
        message_id="<fixed@careers.example.edu>", date=NOW, redirect_to=redirect_to,
    ))


def reparse(message: Message) -> EmailMessage:
    parsed = email.message_from_bytes(flatten_message(message), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html_part is not None
    return text.get_content(), html_part.get_content()


def visible(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def copy_defaults(tmp_path: Path) -> Path:
    directory = tmp_path / "templates"
    shutil.copytree(default_templates_dir(), directory)
    return directory


def rewrite(directory: Path, name: str, old: str, new: str) -> None:
    path = directory / f"{name}.j2"
    source = path.read_text(encoding="utf-8")
    assert old in source
    path.write_text(source.replace(old, new), encoding="utf-8")


def test_default_templates_dir_holds_every_template() -> None:
    """The default directory holds a file for every named template."""
    directory = default_templates_dir()
    assert all((directory / f"{name}.j2").is_file() for name in TEMPLATE_NAMES)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_renders_subject_text_and_html(templates: Templates, name: str) -> None:
    """Each template renders a subject, a plain text and an HTML document."""
    rendered = templates.render_text(name, counselor=COUNSELOR, person=ANA, recipient_name=None)
    assert rendered.subject and rendered.text
    assert rendered.html.startswith("<!DOCTYPE html>") and "<p>" in rendered.html


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_html_says_exactly_what_the_text_says(templates: Templates, name: str) -> None:
    """The HTML part carries the same words as the text part."""
    rendered = templates.render_text(name, counselor=COUNSELOR, person=ANA, recipient_name=None)
    assert visible(rendered.html) == " ".join(rendered.text.split())


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_text_gives_the_confidential_contact(templates: Templates, name: str) -> None:
    """Each text, in both parts, shows the confidential contact route."""
    rendered = templates.render_text(name, counselor=COUNSELOR, person=ANA, recipient_name=None)
    assert CONTACT in rendered.text
    assert CONTACT in visible(rendered.html)


def test_contact_url_becomes_a_link(templates: Templates) -> None:
    """A URL in the confidential contact is a link in the HTML part."""
    rendered = templates.render_text("connection_invitation", counselor=COUNSELOR, person=ANA,
                                     recipient_name=None)
    assert '<a href="https://careers.example.edu/appointments">' in rendered.html


@pytest.mark.parametrize("template", REPLY_TEMPLATES)
def test_reply_is_the_same_for_everyone_but_the_name(templates: Templates, template: str) -> None:
    """Two different people get the same reply except for the name in the greeting."""
    bo = Person(name="Bo Chen", headline="Alumnus, class of 2009", group=ANA.group)
    bo_recipient = Recipient(name="Bo Chen", email="bo@alumni.example.org", source="csv")
    ana_parts = parts(reply(templates, template=template))
    bo_parts = parts(reply(templates, template=template, person=bo, recipient=bo_recipient))
    assert [p.replace("Ana Lima", "NAME") for p in ana_parts] == [
        p.replace("Bo Chen", "NAME") for p in bo_parts
    ]


def test_reply_without_a_name_greets_hello(templates: Templates) -> None:
    """A person without a known name is greeted with a plain "Hello,"."""
    text, _ = parts(reply(templates, person=Person()))
    assert text.startswith("Hello,\n")


def test_reply_carries_the_required_headers(templates: Templates) -> None:
    """A reply has exactly the From, To, Date, Message-ID and RFC 3834 headers it should."""
    message = reparse(reply(templates, template="linkedin_message"))
    assert message.keys() == HEADERS
    assert str(message["From"]) == "Dana Whitfield <dana@careers.example.edu>"
    assert str(message["To"]) == "Ana Lima <ana@students.example.edu>"
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == "<fixed@careers.example.edu>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["X-Modbot-Kind"] == "linkedin_message"


def test_reply_is_text_with_an_html_alternative(templates: Templates) -> None:
    """A reply is multipart/alternative with a UTF-8 text part and a UTF-8 HTML part."""
    message = reparse(reply(templates))
    assert message.get_content_type() == "multipart/alternative"
    assert [(p.get_content_type(), p.get_content_charset()) for p in message.iter_parts()] == [
        ("text/plain", "utf-8"), ("text/html", "utf-8"),
    ]


def test_redirect_sends_to_the_test_address(templates: Templates) -> None:
    """With redirect_to the reply goes to that address and names the original one."""
    message = reparse(reply(templates, redirect_to="test@careers.example.edu"))
    assert [a.addr_spec for a in message["To"].addresses] == ["test@careers.example.edu"]
    assert message["X-Modbot-Redirected-From"] == "ana@students.example.edu"
    assert "ana@students.example.edu" not in str(message["To"])


@settings(max_examples=200, deadline=None)
@given(person_name=hostile_names, recipient_name=hostile_names, counselor_name=hostile_names)
def test_hostile_names_add_no_headers_or_recipients(
    templates: Templates, person_name: str, recipient_name: str, counselor_name: str
) -> None:
    """Names with line breaks, quotes, commas and markup never add a header or a recipient."""
    counselor = COUNSELOR.model_copy(update={"name": counselor_name or "x"})
    # Parsed once, as its recipient reads the bytes modbot wrote: parsed again, the stdlib
    # would refold its own copy (leaving a leading "." outside the encoded word) and then fail
    # to read that (CPython's header parser), which says nothing about what modbot sends.
    message = reply(
        templates, template="group_join_request", counselor=counselor,
        person=Person(name=person_name, group=person_name),
        recipient=Recipient(name=recipient_name, email=STUDENT.email, source="csv"),
    )
    assert message.keys() == HEADERS
    assert [a.addr_spec for a in message["To"].addresses] == [STUDENT.email]
    assert [a.addr_spec for a in message["From"].addresses] == [COUNSELOR.email]


@settings(max_examples=100, deadline=None)
@given(name=hostile_names)
def test_hostile_names_are_escaped_in_html(templates: Templates, name: str) -> None:
    """Markup in a name never reaches the HTML part as markup."""
    _, markup = parts(reply(templates, template="group_join_request",
                            person=Person(name=name, group=name)))
    assert "<script" not in markup
    assert re.findall(r"<(\w+)", markup) == re.findall(r"<(\w+)", parts(reply(
        templates, template="group_join_request", person=Person(name="N", group="G")))[1])


def test_long_name_with_a_comma_stays_one_recipient(templates: Templates) -> None:
    """A long name holding a comma and an address is not folded into a second recipient."""
    name = "x" * 90 + ", evil@attacker.example"
    message = reparse(reply(templates, recipient=Recipient(name, STUDENT.email, "csv")))
    assert [a.addr_spec for a in message["To"].addresses] == [STUDENT.email]


def test_an_encoded_word_in_a_group_name_adds_no_header(templates: Templates) -> None:
    """A group name holding an encoded CRLF stays inside the Subject header."""
    group = "=?utf-8?q?=0D=0ABcc:_evil@attacker.example?="
    message = reparse(reply(templates, template="group_join_request", person=Person(group=group)))
    assert message.keys() == HEADERS
    assert "evil@attacker.example" in message["Subject"]


@pytest.mark.parametrize("group", [
    "Associação dos Antigos Alunos – Carreiras",
    "Alumni " * 15,  # longer than a header line
    "Café\r\nBcc: evil@attacker.example",
])
def test_group_names_in_the_subject_read_back_as_written(templates: Templates,
                                                         group: str) -> None:
    """Whatever the group is called, the Subject says it on one line and adds no header."""
    message = reparse(reply(templates, template="group_join_request", person=Person(group=group)))
    assert message.keys() == HEADERS
    assert message["Subject"] == "Thank you for your interest in " + " ".join(group.split())


def test_a_url_in_a_name_is_not_a_link(templates: Templates) -> None:
    """Only URLs the counselor wrote become links; one inside a person's name stays text."""
    _, markup = parts(reply(templates, person=Person(name="https://evil.example/login")))
    assert "https://evil.example/login" in markup
    assert 'href="https://evil.example' not in markup


def test_line_breaks_in_a_name_stay_on_the_greeting_line(templates: Templates) -> None:
    """A name with line breaks is greeted on one line, not as extra paragraphs."""
    text, _ = parts(reply(templates, person=Person(name="Ana\r\n\r\nWire money to\nme")))
    assert text.startswith("Hello Ana Wire money to me,\n")


def test_an_address_that_is_not_one_address_is_refused(templates: Templates) -> None:
    """A recipient address holding two addresses raises ValueError, not a wrong email."""
    two = Recipient("Ana", "ana@students.example.edu, evil@attacker.example", "csv")
    with pytest.raises(ValueError, match="not one plain ASCII address"):
        reply(templates, recipient=two)


def test_a_naive_date_is_refused(templates: Templates) -> None:
    """A date without a time zone raises ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        reply_message(templates, template="connection_invitation", counselor=COUNSELOR,
                      recipient=STUDENT, person=ANA, message_id="<a@b.example>",
                      date=datetime(2025, 3, 4, 9, 30))


def test_make_message_id_is_unique_on_the_domain() -> None:
    """make_message_id gives a new angle-bracketed id on the given domain each time."""
    first, second = make_message_id("careers.example.edu"), make_message_id("careers.example.edu")
    assert first != second
    assert re.fullmatch(r"<[0-9a-f]{32}@careers\.example\.edu>", first)


def test_make_message_id_refuses_a_bad_domain() -> None:
    """A domain with a line break or spaces raises ValueError."""
    with pytest.raises(ValueError, match="domain"):
        make_message_id("example.edu>\r\nBcc: x@y.example")


def test_reply_text_is_the_text_part_of_the_reply(templates: Templates) -> None:
    """reply_text gives exactly the text part reply_message would send."""
    text, _ = parts(reply(templates, template="recommendation_request"))
    assert reply_text(templates, template="recommendation_request", counselor=COUNSELOR,
                      recipient=STUDENT, person=ANA) == text.rstrip("\n")


def test_practice_texts_are_for_no_one_in_particular(templates: Templates) -> None:
    """The practice texts are the welcome, the profile advice and the nameless reply."""
    texts = practice_texts(templates, COUNSELOR)
    assert sorted(texts) == ["advice_for_contacting", "group_welcome", "individual_reply"]
    assert texts["individual_reply"].text.startswith("Hello,\n")


def test_lint_passes_on_the_defaults(templates: Templates) -> None:
    """The shipped templates have no lint problems."""
    assert lint(templates, COUNSELOR) == []


def test_lint_catches_an_undefined_variable(tmp_path: Path) -> None:
    """A misspelled variable is reported for the template that uses it."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "linkedin_message", "Thank you", "Thank you {{ person.nmae }}")
    problems = lint(Templates.load(directory), COUNSELOR)
    assert any(p.startswith("template linkedin_message does not render") for p in problems)


def test_lint_catches_an_undefined_name_in_a_branch_not_taken(tmp_path: Path) -> None:
    """A variable that is never defined is reported even inside an if that is false."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "group_welcome", "Welcome", "{% if false %}{{ studnet }}{% endif %}Welcome")
    problems = lint(Templates.load(directory), COUNSELOR)
    assert problems == ["group_welcome uses the undefined variable 'studnet'."]


def test_lint_catches_a_missing_contact(tmp_path: Path) -> None:
    """A text without the confidential contact route is reported."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "advice_for_contacting", "{{ counselor.confidential_contact }}",
            "{{ counselor.email }}")
    problems = lint(Templates.load(directory), COUNSELOR)
    assert problems == ["advice_for_contacting does not give the confidential contact route."]


def test_lint_catches_a_forbidden_phrase(tmp_path: Path) -> None:
    """A phrase implying a counseling relationship is reported."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "connection_invitation", "It was kind",
            "I look forward to our session. It was kind")
    problems = lint(Templates.load(directory), COUNSELOR)
    assert problems == [
        "connection_invitation says 'our session', which implies a counseling relationship."
    ]


def test_lint_catches_a_missing_boundary(tmp_path: Path) -> None:
    """A reply that no longer says LinkedIn is not confidential is reported."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "_linkedin", "LinkedIn is not confidential, and it", "LinkedIn")
    problems = lint(Templates.load(directory), COUNSELOR)
    assert "group_join_request does not say that LinkedIn is not confidential." in problems


def test_lint_catches_none_printed_for_a_missing_name(tmp_path: Path) -> None:
    """A name printed without a guard shows up as "None" and is reported."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "_greeting", "{% if person.name %} {{ person.name }}{% endif %}",
            " {{ person.name }}")
    problems = lint(Templates.load(directory), COUNSELOR)
    assert "linkedin_message prints 'None' for a missing value; guard it with an if." in problems


def test_the_sandbox_refuses_unsafe_attributes(tmp_path: Path) -> None:
    """A template reaching for Python internals fails to render instead of running them."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "group_welcome", "Welcome", "{{ counselor.name.__class__.__mro__ }}")
    with pytest.raises(TemplateError, match="group_welcome does not render"):
        Templates.load(directory).render_text(
            "group_welcome", counselor=COUNSELOR, person=ANA, recipient_name=None
        )


def test_a_template_without_a_subject_does_not_render(tmp_path: Path) -> None:
    """A text that sets no subject raises TemplateError."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "group_welcome", "{% set subject =", "{% set title =")
    with pytest.raises(TemplateError, match="sets no subject"):
        practice_texts(Templates.load(directory), COUNSELOR)


def test_load_refuses_a_missing_directory(tmp_path: Path) -> None:
    """A template directory that does not exist raises TemplateError."""
    with pytest.raises(TemplateError, match="does not exist"):
        Templates.load(tmp_path / "nowhere")


def test_load_refuses_a_directory_missing_a_template(tmp_path: Path) -> None:
    """A directory without one of the named templates raises TemplateError naming it."""
    directory = copy_defaults(tmp_path)
    (directory / "recommendation_request.j2").unlink()
    with pytest.raises(TemplateError, match="recommendation_request"):
        Templates.load(directory)


def test_load_refuses_a_syntax_error_in_a_partial(tmp_path: Path) -> None:
    """A syntax error in a shared piece is reported when the templates are loaded."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "_signature", "{{ counselor.name }}", "{{ counselor.name ")
    with pytest.raises(TemplateError, match="_signature"):
        Templates.load(directory)


def test_compile_all_refuses_an_unknown_filter(tmp_path: Path) -> None:
    """A filter Jinja2 does not know passes the syntax check and fails to compile."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "_signature", "{{ counselor.name }}", "{{ counselor.name | shout }}")
    templates = Templates.load(directory)
    with pytest.raises(TemplateError, match="_signature"):
        templates.compile_all()


def test_lint_reports_a_template_that_does_not_compile(tmp_path: Path) -> None:
    """`modbot check` names the broken file rather than failing on it."""
    directory = copy_defaults(tmp_path)
    rewrite(directory, "_signature", "{{ counselor.name }}", "{{ counselor.name | shout }}")
    problems = lint(Templates.load(directory), COUNSELOR)
    assert len(problems) == 1
    assert "_signature" in problems[0] and "shout" in problems[0]


def test_templates_are_compiled_at_first_use() -> None:
    """Loading compiles nothing; rendering one text compiles that text and its partials."""
    templates = Templates.load()
    assert not templates.environment.cache
    templates.render_text("connection_invitation", counselor=COUNSELOR, person=ANA,
                          recipient_name=None)
    compiled = {name for _loader, name in templates.environment.cache or {}}
    assert "connection_invitation.j2" in compiled
    assert "group_welcome.j2" not in compiled


def test_render_refuses_a_path_as_a_name(templates: Templates) -> None:
    """A template name that is a path raises TemplateError."""
    with pytest.raises(TemplateError, match="not a template name"):
        templates.render_text("../../etc/passwd")
