"""Render the counselor's templates into reply emails and into the texts of the practice.

One Jinja2 template per text writes plain-text paragraphs; the HTML part is derived from that text
by escaping it, so every reply says the same thing in both parts and nothing a person typed can
become markup. Templates run in a sandbox with ``StrictUndefined``; ``lint`` checks that each one
still carries the boundaries and the confidential contact route and never implies that the reader
is a client.

This module is pure: it reads only the template directory, and never touches the network, the
database, the environment or the clock (the caller passes the ``date`` and the ``Message-ID``).
Jinja2 is imported when templates are loaded, and each template is compiled only when it is
first rendered; ``Templates.compile_all`` (run by ``lint``) compiles them all.
It never builds a header by joining strings. Replies, the mail modbot writes most, are built
with ``email.mime`` and written by the compat32 generator, which checks nothing: each of their
header values is made safe here (addresses validated by ``headerregistry.Address``, names and the
subject on one line, anything not ASCII encoded by ``email.header``). Other mail goes through
``EmailMessage`` under ``POLICY``. Names from mail are cleaned before they reach a header or a
text, so a hostile name is tidied, never raised on.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modbot.errors import TemplateError
from modbot.kinds import REPLY_TEMPLATES
from modbot.model import Person, Recipient

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment
    from markupsafe import Markup

    from modbot.config import CounselorSettings

PRACTICE_TEMPLATES = ("group_welcome", "advice_for_contacting")
TEMPLATE_NAMES = REPLY_TEMPLATES + PRACTICE_TEMPLATES
SUFFIX = ".j2"
CONTEXT_NAMES = frozenset({"counselor", "person", "recipient_name"})

# Phrases that would tell a reader, or anyone reading over their shoulder, that they are a client.
DEFAULT_FORBIDDEN: tuple[str, ...] = (
    "our session", "your session", "our appointment", "your appointment", "our meeting",
    "our last meeting", "our work together", "as we discussed", "when we met", "your counselor",
    "as your counselor", "my client", "you are a client", "you are not a client", "your file",
    "your case", "your records",
)
# What every reply must still say after a counselor rewords it: description -> regex (any case).
BOUNDARY_MARKERS: Mapping[str, str] = {
    "that invitations are declined for everyone": r"(?:not|n't|never) accept",
    "that LinkedIn is not confidential": r"(?:not|n't) confidential",
    "that LinkedIn is not a place for counseling": r"(?:not|n't) (?:a|the) place for counsel",
    "that group posts are seen by the whole group": r"\bpublic\b|seen by (?:everyone|every|all)",
    "that the counselor does not serve as a reference": r"as a reference",
}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_MESSAGE_ID = re.compile(r"^<[^<>@\s=]+@[^<>@\s=]+>$")
# Bidi embeddings, overrides and isolates can make a name read differently from what it is.
_BIDI = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
# Python 3.11 folds a long quoted display name without its quotes, so a comma in a long name
# comes back as a second recipient: names in headers keep no RFC 5322 specials.
_SPECIALS = re.compile(r'["(),:;<>@\[\]\\]')
# URLs and addresses the counselor wrote become links; those inside a person's name never do.
_LINK = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # text parts: quoted-printable, readable and never a long line
_SAMPLE = Person(name="Sample Student", headline="Student", group="Sample Group")
_HOSTILE = "<script>alert(1)</script>"


@dataclass(frozen=True)
class RenderedText:
    """One rendered text: the subject (or title), the plain text, and the HTML derived from it."""

    subject: str
    text: str
    html: str


def default_templates_dir() -> Path:
    """The templates shipped with modbot: the wheel's copy, else the source checkout's."""
    package = Path(__file__).resolve().parent
    packaged = package / "default_templates"
    return packaged if packaged.is_dir() else package.parent / "config" / "templates"


def clean_text(value: str | None, limit: int = 128) -> str | None:
    """``value`` on one line, without control or bidi characters, at most ``limit`` long.

    Line breaks and other controls become spaces and runs of spaces collapse; None or a value
    that is empty once cleaned gives None.
    """
    if value is None:
        return None
    chars = (" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
             for c in value.translate(_BIDI) if unicodedata.category(c) != "Cs")
    text = " ".join("".join(chars).split())
    text = text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
    return text or None


def header_text(value: str) -> str:
    """``value`` made safe for a header: no ``=?`` that could start an RFC 2047 encoded-word.

    Python's email package decodes an encoded-word in a display name or a subject when it writes
    the header: ``=?utf-8?q?=0D=0ABcc:...?=`` came out as a raw CRLF and a new header on 3.11.7
    (CVE-2024-6923); releases with the fix raise instead, which would stop the send.
    """
    return value.replace("=?", "= ?")


def to_html(text: str, unlinked: Collection[str] = ()) -> str:
    """HTML for ``text``: escaped, blank lines between paragraphs, line breaks, links.

    A URL or address found inside one of the ``unlinked`` strings stays plain text.
    """
    from markupsafe import Markup

    paragraphs = (
        Markup("<br>\n").join(_html_line(line, unlinked) for line in paragraph.split("\n"))
        for paragraph in text.split("\n\n")
    )
    body = "\n".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    head = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>'
    return f"{head}\n{body}\n</body></html>\n"


def _html_line(line: str, unlinked: Collection[str]) -> Markup:
    from markupsafe import Markup, escape

    parts: list[Markup] = []
    position = 0
    for match in _LINK.finditer(line):
        target = match.group()
        if any(target in value for value in unlinked):
            continue
        href = target if "://" in target else f"mailto:{target}"
        parts.append(escape(line[position : match.start()]))
        parts.append(Markup('<a href="{}">{}</a>').format(href, target))
        position = match.end()
    parts.append(escape(line[position:]))
    return Markup("").join(parts)


def _tidy(text: str) -> str:
    lines = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", lines).strip()


class Templates:
    """A directory of ``<name>.j2`` templates in a sandboxed, strict Jinja2 environment.

    Every file is parsed when the directory is loaded, so a syntax error shows at start; each
    template is compiled when it is first rendered, and ``compile_all`` compiles them all now.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def load(cls, directory: Path | None = None) -> Templates:
        """The templates in ``directory`` (None: the defaults), checked for syntax.

        Raises ``TemplateError`` if the directory or one of ``TEMPLATE_NAMES`` is missing, or if a
        file, partials too, has a syntax error.
        """
        directory = directory if directory is not None else default_templates_dir()
        if not directory.is_dir():
            raise TemplateError(f"template directory {directory} does not exist")
        missing = [n for n in TEMPLATE_NAMES if not (directory / f"{n}{SUFFIX}").is_file()]
        if missing:
            raise TemplateError(f"{directory} lacks the templates: {', '.join(missing)}")
        templates = cls(directory)
        templates._check(compile_them=False)
        return templates

    @cached_property
    def environment(self) -> SandboxedEnvironment:
        """The sandboxed, strict Jinja2 environment over the directory (made at first use)."""
        from jinja2 import FileSystemLoader, StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        # No autoescaping: templates write plain text, and to_html escapes all of it.
        return SandboxedEnvironment(
            loader=FileSystemLoader(self.directory), undefined=StrictUndefined, autoescape=False,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        )

    def compile_all(self) -> None:
        """Compile every file now, partials too, which also finds an unknown filter or test;
        ``TemplateError`` names a broken one."""
        self._check(compile_them=True)

    def _check(self, *, compile_them: bool) -> None:
        from jinja2 import TemplateError as JinjaError

        environment = self.environment
        for filename in environment.list_templates(extensions=[SUFFIX.lstrip(".")]):
            try:
                if compile_them:
                    environment.get_template(filename)
                else:
                    path = self.directory / filename
                    environment.parse(path.read_text(encoding="utf-8"), filename, str(path))
            except JinjaError as exc:
                # A syntax error knows its line; an admin fixing the file needs it.
                line = getattr(exc, "lineno", None)
                where = f"{filename}, line {line}," if line else filename
                message = getattr(exc, "message", None) or str(exc)
                raise TemplateError(f"template {where} cannot be loaded: {message}") from None

    def render_text(self, name: str, **context: Any) -> RenderedText:
        """Render template ``name``; its ``{% set subject = ... %}`` becomes the subject.

        Raises ``TemplateError`` if it is missing, fails to render or sets no subject.
        """
        from jinja2 import TemplateError as JinjaError

        if not _NAME.match(name):
            raise TemplateError(f"{name!r} is not a template name")
        try:
            module = self.environment.get_template(f"{name}{SUFFIX}").make_module(context)
            text, subject = _tidy(str(module)), clean_text(str(getattr(module, "subject", "")), 998)
        except JinjaError as exc:
            raise TemplateError(f"template {name} does not render: {exc}") from None
        except Exception as exc:  # the counselor's template code, e.g. a TypeError
            raise TemplateError(f"template {name} does not render: {type(exc).__name__}") from None
        if not subject:
            raise TemplateError(f"template {name} sets no subject")
        unlinked = _strings({k: v for k, v in context.items() if k != "counselor"})
        return RenderedText(subject=subject, text=text, html=to_html(text, unlinked))

    def undeclared(self, name: str) -> set[str]:
        """Variables template ``name`` itself uses that are neither context nor Jinja globals."""
        from jinja2 import meta

        source = (self.directory / f"{name}{SUFFIX}").read_text(encoding="utf-8")
        used = meta.find_undeclared_variables(self.environment.parse(source))
        return used - CONTEXT_NAMES - set(self.environment.globals)


def _strings(value: object) -> list[str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = vars(value)
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def _context(counselor: CounselorSettings, person: Person, recipient_name: str | None
             ) -> dict[str, Any]:
    return {
        "counselor": {
            "name": counselor.name, "email": counselor.email,
            "confidential_contact": counselor.confidential_contact,
        },
        "person": {
            "name": clean_text(person.name), "headline": clean_text(person.headline),
            "group": clean_text(person.group),
        },
        "recipient_name": clean_text(recipient_name),
    }


def _address(addr_spec: str, name: str | None = None) -> Address:
    display = display_name(name)
    try:
        if not addr_spec.isascii() or "=?" in addr_spec:
            raise ValueError("non-ASCII")
        return Address(display_name=display, addr_spec=addr_spec)
    except (ValueError, IndexError, HeaderParseError):
        raise ValueError("an address of the reply is not one plain ASCII address") from None


def make_message_id(domain: str) -> str:
    """A new ``Message-ID`` on ``domain`` (the counselor's mail domain), e.g. ``<hex@uni.edu>``.

    Random (uuid4) rather than ``email.utils.make_msgid``, which reads the clock.
    """
    if not _DOMAIN.match(domain):
        raise ValueError("not a domain name")
    return f"<{uuid.uuid4().hex}@{domain}>"


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header class once: the stdlib's builds a new
    class for every header it parses, a third of the time it takes to build a reply."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# The policy of the mail modbot writes: the standard one, with header classes made once.
POLICY = default_policy.clone(header_factory=_HeaderClasses())


def new_message() -> EmailMessage:
    """An empty email under ``POLICY``."""
    return EmailMessage(policy=POLICY)


def automatic_headers(*, reply: bool) -> tuple[tuple[str, str], ...]:
    """The headers that mark mail modbot writes as automatic, in the order they are written.

    RFC 3834 section 5: a reply says ``auto-replied``, anything else modbot writes (the digest,
    the review email, the pause alert) ``auto-generated``; no Precedence header (section
    3.1.8). ``X-Auto-Response-Suppress`` asks Exchange not to answer it with an automatic
    answer of its own (an out-of-office quoting a one-time token, a loop).
    """
    return (("Auto-Submitted", "auto-replied" if reply else "auto-generated"),
            ("X-Auto-Response-Suppress", "All"))


def display_name(name: str | None) -> str:
    """``name`` made safe as a header's display name: one line, no RFC 5322 specials, no
    encoded-word."""
    return header_text(" ".join(_SPECIALS.sub(" ", clean_text(name) or "").split()))


def to_counselor(*, name: str, email: str, subject: str, date: datetime, message_id: str,
                 kind: str | None = None) -> EmailMessage:
    """A new email from the counselor's address to itself, marked automatic, without a body.

    For what modbot tells the counselor (the digest, the review email, the pause alert): the
    caller adds the body. ``kind`` becomes ``X-Modbot-Kind``, which lets modbot recognise its
    own mail.
    """
    message = new_message()
    message["From"] = message["To"] = Address(display_name(name), addr_spec=email)
    message["Subject"] = header_text(subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    for header, value in automatic_headers(reply=False):
        message[header] = value
    if kind is not None:
        message["X-Modbot-Kind"] = kind
    return message


def reply_message(templates: Templates, *, template: str, counselor: CounselorSettings,
                  recipient: Recipient, person: Person, message_id: str, date: datetime,
                  redirect_to: str | None = None) -> Message:
    """The reply ``template`` to ``recipient`` as a text + HTML email with every header set.

    With ``redirect_to`` the reply goes there instead and ``X-Modbot-Redirected-From`` names the
    original address. Raises ``TemplateError`` for a broken template and ``ValueError`` for an
    address that is not one plain ASCII address, a bad ``message_id`` or a naive ``date``.

    Replies are the mail modbot writes most, so they are built with ``email.mime`` and written
    by the compat32 generator, several times cheaper than ``EmailMessage``; that generator
    checks nothing, so every header value is made safe here: addresses are validated and
    one-line, names and the subject are one line, non-ASCII text is RFC 2047 encoded.
    """
    if date.utcoffset() is None:
        raise ValueError("date must be timezone-aware")
    if not _MESSAGE_ID.match(message_id):
        raise ValueError("message_id must look like <unique@domain>")
    rendered = templates.render_text(template, **_context(counselor, person, recipient.name))
    original = _address(recipient.email, recipient.name)
    message = MIMEMultipart("alternative", boundary=f"=_modbot_{uuid.uuid4().hex}")
    mime = [(name, message[name]) for name in ("MIME-Version", "Content-Type")]
    for name, _ in mime:  # they go after the headers a reader looks at, as EmailMessage puts them
        del message[name]
    message["From"] = _sender(counselor.email, counselor.name)
    if redirect_to is None:
        message["To"] = _mailbox(original)
    else:
        message["To"] = _mailbox(_address(redirect_to))
        message["X-Modbot-Redirected-From"] = original.addr_spec
    message["Subject"] = _unstructured(header_text(rendered.subject))
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    for header, value in automatic_headers(reply=True):
        message[header] = value
    message["X-Modbot-Kind"] = template
    for name, value in mime:
        message[name] = value
    message.attach(_text_part("plain", rendered.text))
    message.attach(_text_part("html", rendered.html))
    return message


def _text_part(subtype: str, text: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    del part["MIME-Version"]  # the message has it; a part needs none
    part.set_payload(text, _UTF8)
    return part


@lru_cache(maxsize=16)
def _sender(addr_spec: str, name: str) -> str:
    """The counselor's ``From``, the same in every reply: validated and written once."""
    return _mailbox(_address(addr_spec, name))


def _mailbox(address: Address) -> str:
    """``Name <addr>`` for a compat32 header, the name encoded when it is not ASCII."""
    return formataddr((address.display_name, address.addr_spec), charset="utf-8")


def _unstructured(value: str) -> str:
    """``value`` for a compat32 header: one line; encoded when it is not ASCII."""
    line = " ".join(value.split())
    return line if line.isascii() else Header(line, "utf-8").encode()


def set_boundary(message: EmailMessage) -> None:
    """Give a multipart ``message`` a random boundary now.

    Left to the generator, each boundary costs a regular expression compiled for that message
    alone, to check the parts against it; 128 random bits cannot occur in them by chance.
    """
    message.set_boundary(f"=_modbot_{uuid.uuid4().hex}")


def reply_text(templates: Templates, *, template: str, counselor: CounselorSettings,
               recipient: Recipient, person: Person) -> str:
    """The plain text ``reply_message`` would send, e.g. for the counselor to paste by hand."""
    return templates.render_text(template, **_context(counselor, person, recipient.name)).text


def practice_texts(templates: Templates, counselor: CounselorSettings) -> dict[str, RenderedText]:
    """The texts to paste into LinkedIn, and the reply everyone gets, for no one in particular."""
    context = _context(counselor, Person(), None)
    return {
        "group_welcome": templates.render_text("group_welcome", **context),
        "advice_for_contacting": templates.render_text("advice_for_contacting", **context),
        "individual_reply": templates.render_text("connection_invitation", **context),
    }


def every_text(templates: Templates, counselor: CounselorSettings) -> dict[str, RenderedText]:
    """Every text the counselor's practice uses, by template name, for no one in particular:
    the two to paste into LinkedIn, then the reply to each kind that gets one."""
    context = _context(counselor, Person(), None)
    return {name: templates.render_text(name, **context)
            for name in (*PRACTICE_TEMPLATES, *REPLY_TEMPLATES)}


def _flat(text: str) -> str:
    return " ".join(text.replace("’", "'").split()).lower()


def lint(templates: Templates, counselor: CounselorSettings,
         forbidden_phrases: Sequence[str] = DEFAULT_FORBIDDEN, *,
         markers: Mapping[str, str] = BOUNDARY_MARKERS) -> list[str]:
    """Problems with the templates, one sentence each; an empty list means they are fit to send.

    Every file must compile; then each template is rendered for a sample person, for one about
    whom nothing is known, and for one whose name is markup; the replies must carry every
    boundary in ``markers``.
    """
    try:
        templates.compile_all()
    except TemplateError as exc:
        return [f"{exc}."]
    problems: list[str] = []
    hostile = Person(name=_HOSTILE, headline=_HOSTILE, group=_HOSTILE)
    contact = _flat(counselor.confidential_contact)
    for name in TEMPLATE_NAMES:
        problems += [f"{name} uses the undefined variable {v!r}." for v in
                     sorted(templates.undeclared(name))]
        try:
            full, empty, attack = (
                templates.render_text(name, **_context(counselor, person, person.name))
                for person in (_SAMPLE, Person(), hostile)
            )
        except TemplateError as exc:
            problems.append(f"{exc}.")
            continue
        texts = [_flat(f"{r.subject} {r.text}") for r in (full, empty)]
        if any(contact not in text for text in texts):
            problems.append(f"{name} does not give the confidential contact route.")
        for description, pattern in markers.items() if name in REPLY_TEMPLATES else ():
            if not all(re.search(pattern, text, re.IGNORECASE) for text in texts):
                problems.append(f"{name} does not say {description}.")
        problems += [f"{name} says {phrase!r}, which implies a counseling relationship."
                     for phrase in forbidden_phrases
                     if any(re.search(rf"\b{re.escape(_flat(phrase))}\b", t) for t in texts)]
        if re.search(r"\bNone\b", empty.text):
            problems.append(f"{name} prints 'None' for a missing value; guard it with an if.")
        if "<script" in attack.html.lower():
            problems.append(f"{name} lets markup from a name into its HTML unescaped.")
    return problems
