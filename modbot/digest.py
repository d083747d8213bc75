"""The weekly digest: what needs the counselor, what modbot did, and whether modbot is healthy.

``gather`` reads the store, and nothing else, into a ``DigestData`` value; ``build`` turns that
value into the email to the counselor and ``preview_html`` into the same HTML for a browser. Both
are pure. The digest must never carry a message body or subject: the store keeps none, and of a
message's reasons only the first, the policy's own sentence, is read, because the later reasons
are evidence and may quote a line of the notification.

One source, two parts: this module decides *what* to show (which items, in which category, which
counts, how wide each bar) and hands plain values to ``digest.j2``, which holds every word and
colour. The template is rendered twice from the same values: with ``html`` false for the text
part, and with ``html`` true in an autoescaping overlay of the same sandboxed, strict environment
for the HTML part. Its macros are the only place where the two parts differ. A template directory
without ``digest.j2`` uses the shipped one. The HTML is tables with inline styles only (no script,
SVG, image or ``<style>``), as Gmail and Outlook show them; the chart is cells of set widths.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.message import EmailMessage
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from modbot import kinds, render, words
from modbot.config import Account, CounselorSettings, PolicySettings
from modbot.errors import TemplateError
from modbot.model import CAP_RULES, Kind, Person, Recipient
from modbot.model import PolicyRule as P
from modbot.render import Templates, clean_text
from modbot.store import Item, OutboxStatus, Store

if TYPE_CHECKING:
    from jinja2 import Environment

    from modbot.directory.index import Directory

PERIOD, WEEKS = timedelta(days=7), 8
TEMPLATE = "digest.j2"
MAX_NAMES = 12  # names listed per kind of reply; the rest are counted
# The chart's series in stacking order, and the kinds each one counts (from the table of kinds).
SERIES: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (series.key, tuple(kind.value for kind in kinds.charted(series))) for series in kinds.SERIES)
# A profile link is shown only from authentic mail and only to LinkedIn: a spoof's could lead
# anywhere.
_PROFILE = re.compile(r"^https://www\.linkedin\.com/[^\s<>\"'\\]*$")


@dataclass(frozen=True)
class Row:
    """A message and its reply as the digest may show them: never a body or a subject."""

    kind: str
    person_name: str | None
    seen_at: datetime
    action: str
    policy_rule: str
    reason: str  # the policy's own sentence only
    authentic: bool | None
    profile_url: str | None
    status: str | None  # the reply's outbox status, if there is a reply
    error: str | None  # the reply's last error
    id: int = 0  # the message's row: the item's number in the digest, `held` and `resolve`
    classified_by: str | None = None  # the classifying rule, for more precise words

    @classmethod
    def of(cls, item: Item) -> Row:
        reasons = item.reasons
        return cls(item.kind, item.person_name, item.seen_at, item.action, item.policy_rule,
                   reasons[0] if reasons else item.policy_rule, item.authentic,
                   item.profile_url, item.outbox_status, item.last_error, item.id,
                   item.classify_rule)


@dataclass(frozen=True)
class DigestData:
    """What the digest for the week ending ``end`` shows, as read from the store."""

    start: datetime
    end: datetime
    timezone: str
    policy: PolicySettings  # the mode, the modes per kind and the redirect
    open_items: tuple[Row, ...]  # everything still waiting for a person, whenever it came
    replies: tuple[Row, ...]  # replies sent, or decided in shadow mode, in the period
    logged: Mapping[str, int]  # kind -> messages logged without a reply in the period
    caps: Mapping[str, int]  # cap rule -> messages it held in the period
    waiting: int  # replies queued or waiting to be retried now
    polls: int
    failed_polls: tuple[tuple[datetime, str], ...]
    last_good_poll: datetime | None
    poll_seconds: int
    weeks: tuple[Mapping[str, int], ...]  # LinkedIn mail per kind, oldest week first
    warnings: tuple[str, ...] = ()  # sign-ins that end soon, one sentence each
    paused: tuple[datetime, str] | None = None  # since when and why automatic replies stop
    directory_skipped: int = 0  # rows of the directory export skipped as unusable


def _count(pairs: Iterable[tuple[str, int]]) -> Counter[str]:
    counter: Counter[str] = Counter()
    for key, n in pairs:
        counter[key] += n
    return counter


def _sign_in_warnings(settings: Account, now: datetime) -> list[str]:
    """Sentences about OAuth2 sign-ins that end soon; none (and no import) for passwords."""
    if "oauth2" not in (settings.imap.auth, settings.smtp.auth):
        return []
    from modbot.oauth import expiry_warnings

    return expiry_warnings(settings, now)


def skipped_rows(directory: Directory | None) -> int:
    """How many rows of the directory's CSV export were skipped as unusable (0 without one)."""
    parts = getattr(directory, "parts", None) or ((directory,) if directory else ())
    return sum(int(getattr(part, "skipped", 0)) for part in parts)


def gather(store: Store, settings: Account, now: datetime, *,
           directory_skipped: int = 0) -> DigestData:
    """Read what the digest for the week ending ``now`` needs; raises ``StoreError``.

    ``directory_skipped`` is ``skipped_rows`` of the directory the polls use, for the health.
    """
    start, first = now - PERIOD, now - WEEKS * PERIOD
    # One database may hold several inboxes: each counselor's digest tells of their own alone.
    facts = store.digest_facts(settings.account, start, now, first, WEEKS, PERIOD)
    # Counted by the database, so 100k rows never come into Python.
    weeks: list[Counter[str]] = [Counter() for _ in range(WEEKS)]
    for week, rows in enumerate(facts.weeks):
        for row in rows:
            if row.kind != "not_linkedin":
                weeks[week][row.kind] += row.n
    this_week = facts.weeks[-1]
    pause = facts.pause
    stuck = now - timedelta(hours=1)  # a poll unfinished this long ago died or hung
    return DigestData(
        start=start, end=now, timezone=settings.digest.timezone, policy=settings.policy,
        open_items=tuple(Row.of(item) for item in facts.open_items),
        replies=tuple(Row.of(item) for item in facts.replies),
        logged=_count((r.kind, r.n) for r in this_week if r.action == "log"),
        caps=_count((r.policy_rule, r.n) for r in this_week if r.policy_rule in CAP_RULES),
        waiting=facts.waiting, polls=len(facts.polls),
        failed_polls=tuple(
            (p.started_at, p.error or "the poll did not finish") for p in facts.polls
            if not p.ok and (p.finished_at is not None or p.started_at < stuck)),
        last_good_poll=facts.last_good_poll,
        poll_seconds=settings.schedule.poll_seconds,
        weeks=tuple(weeks), warnings=tuple(_sign_in_warnings(settings, now)),
        paused=None if pause is None else (pause.started_at, pause.reason),
        directory_skipped=directory_skipped,
    )


def listed(data: DigestData) -> list[int]:
    """The numbers of the held items the digest lists: what an answer to it may resolve."""
    return [row.id for row in data.open_items]


# An item's category: the first test that fits names it.
NEEDS: tuple[tuple[str, Callable[[Row], bool]], ...] = (
    ("uncertain", lambda r: r.status == OutboxStatus.UNCERTAIN),
    ("failed", lambda r: r.status == OutboxStatus.FAILED),
    ("error", lambda r: r.policy_rule == P.PROCESSING_ERROR),
    ("spoof", lambda r: r.kind == Kind.SPOOFED_LINKEDIN),
    ("answer", lambda r: r.policy_rule == P.ANSWER_TO_MODBOT),
    ("review", lambda r: r.status == OutboxStatus.REVIEW),
    ("no-address", lambda r: r.policy_rule == P.NO_ADDRESS),
    ("cap", lambda r: r.policy_rule in (*CAP_RULES, P.REPLIES_PAUSED)),
    ("unverified", lambda r: r.policy_rule == P.UNVERIFIED),
    ("unknown", lambda r: r.kind == Kind.UNKNOWN_LINKEDIN),
    ("held", lambda r: True),
)
# The order they are listed in: what may have gone wrong, then a reply to paste, then what to
# read and decide; last what needs nothing but deleting. Oldest first within a category.
ORDER = ("uncertain", "failed", "no-address", "cap", "unverified", "answer", "review", "error",
         "unknown", "held", "spoof")
NOTHING_TO_DO = frozenset({"spoof"})
_ORDER = {category: index for index, category in enumerate(ORDER)}


@dataclass(frozen=True)
class Need:
    """One item in "Needs you", ready to show."""

    category: str
    number: int  # what "resolve N" names
    kind: str
    name: str | None
    date: str
    reason: str | None  # None: the template says what the category means
    profile_url: str | None
    paste: tuple[tuple[str, ...], ...]  # the reply to paste, as paragraphs of lines


def _day(moment: datetime, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b}"


def _time(moment: datetime, zone: tzinfo) -> str:
    return f"{_day(moment, zone)} {moment.astimezone(zone):%H:%M}"


def _period(start: datetime, end: datetime, zone: tzinfo) -> str:
    first, last = start.astimezone(zone), end.astimezone(zone)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{last.day} {last:%b %Y}"
    year = f" {first.year}" if first.year != last.year else ""
    return f"{first.day} {first:%b}{year} – {last.day} {last:%b %Y}"


def _sentence(text: str) -> str:
    text = clean_text(text, 300) or ""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def _paste(row: Row, templates: Templates, counselor: CounselorSettings
           ) -> tuple[tuple[str, ...], ...]:
    # A reply that may have been sent is given too: where the Sent folder lacks it, paste it.
    held = row.action == "hold" or row.status in (OutboxStatus.FAILED, OutboxStatus.UNCERTAIN)
    template = kinds.TEMPLATE_OF.get(row.kind)
    if template is None or not held:
        return ()
    name = clean_text(row.person_name)
    try:
        text = render.reply_text(templates, template=template, counselor=counselor,
                                 recipient=Recipient(name or "", "", "digest"),
                                 person=Person(name=name))
    except TemplateError:
        return ()  # `modbot check` names the broken template; the digest still goes out
    return tuple(tuple(paragraph.split("\n")) for paragraph in text.split("\n\n"))


def _need(row: Row, templates: Templates, counselor: CounselorSettings, zone: tzinfo) -> Need:
    category = next(category for category, test in NEEDS if test(row))
    profile = row.profile_url if row.authentic and _PROFILE.match(row.profile_url or "") else None
    # A reply's trouble is told by the outbox's error; the policy's reason was to reply.
    troubled = (OutboxStatus.FAILED, OutboxStatus.UNCERTAIN, OutboxStatus.REVIEW)
    reason = row.error if row.status in troubled else row.reason
    return Need(category, row.id, row.kind, clean_text(row.person_name), _day(row.seen_at, zone),
                _sentence(reason) if reason else None, profile, _paste(row, templates, counselor))


def _replies(rows: tuple[Row, ...], status: str) -> list[dict[str, Any]]:
    names: dict[str, list[str | None]] = {}
    for row in rows:
        if row.status == status:
            names.setdefault(row.kind, []).append(clean_text(row.person_name))
    return [{"kind": kind, "count": len(people), "names": people[:MAX_NAMES],
             "more": max(0, len(people) - MAX_NAMES)}
            for kind, people in sorted(names.items(), key=lambda item: -len(item[1]))]


def _chart(data: DigestData, zone: tzinfo) -> list[dict[str, Any]]:
    counts = [[sum(week[k] for k in kinds) for _key, kinds in SERIES] for week in data.weeks]
    peak = max(map(sum, counts), default=0) or 1
    chart = []
    for index, week in enumerate(counts):
        total = sum(week)
        widths = [max(1, round(100 * n / total)) if n else 0 for n in week] if total else []
        if widths:  # the widest segment takes the rounding, so the segments fill the bar
            widths[widths.index(max(widths))] += 100 - sum(widths)
        chart.append({
            "label": _day(data.end - (WEEKS - index) * PERIOD, zone).split(" ", 1)[1],
            "total": total, "width": max(1, round(100 * total / peak)) if total else 0,
            "segments": [(key, n, width) for (key, _kinds), n, width
                         in zip(SERIES, week, widths, strict=False) if n],
        })
    return chart


def _problems(data: DigestData, now: datetime, zone: tzinfo) -> list[dict[str, Any]]:
    """What is wrong with modbot itself, worst first: each goes before every held item and the
    first one names the digest. Keys, for the template's words: ``never`` (no poll has ever
    worked), ``cannot-read`` (the polls fail and none worked lately), ``stopped`` (no poll ran
    lately), ``often-failed`` (a quarter or more of the week's polls failed, though the last
    worked), ``paused`` (a reached cap stops automatic replies), ``sign-in`` (it ends soon)."""
    problems: list[dict[str, Any]] = []
    last, failed = data.last_good_poll, len(data.failed_polls)
    stale = last is None or now - last > _stale_after(data)
    error = _sentence(max(data.failed_polls)[1].split("\n")[0]) if failed else None
    since = _time(last, zone) if last else None
    counts = {"failed": failed, "polls": data.polls, "error": error, "since": since}
    if stale and failed:
        problems.append({"key": "cannot-read", **counts})
    elif stale and last is None:
        problems.append({"key": "never", **counts})
    elif stale:
        problems.append({"key": "stopped", **counts})
    elif failed and 4 * failed >= data.polls:
        problems.append({"key": "often-failed", **counts})
    if data.paused is not None:
        started, reason = data.paused
        problems.append({"key": "paused", "since": _time(started, zone),
                         "reason": _sentence(reason.split(";")[0])})
    problems += [{"key": "sign-in", "text": _sentence(w)} for w in data.warnings]
    return problems


def _stale_after(data: DigestData) -> timedelta:
    """How long without a good poll means modbot is not reading the inbox."""
    return max(timedelta(seconds=3 * data.poll_seconds), timedelta(minutes=30))


def _context(data: DigestData, templates: Templates, counselor: CounselorSettings,
             now: datetime, reference: str | None = None) -> dict[str, Any]:
    try:
        zone: tzinfo = ZoneInfo(data.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    rows = sorted(data.open_items, key=lambda row: row.seen_at)
    needs = sorted((_need(row, templates, counselor, zone) for row in rows),
                   key=lambda need: _ORDER[need.category])
    failures: dict[str, list[datetime]] = {}
    for started_at, error in data.failed_polls:
        failures.setdefault(_sentence(error.split("\n")[0]), []).append(started_at)
    last = data.last_good_poll
    return {
        "counselor": counselor.name, "period": _period(data.start, data.end, zone),
        "generated": _time(now, zone), "needs": needs,
        "problems": _problems(data, now, zone),
        "to_do": sum(n.category not in NOTHING_TO_DO for n in needs),
        "to_delete": sum(n.category in NOTHING_TO_DO for n in needs),
        "reference": reference, "counselor_email": counselor.email,
        "kinds": {kind: label for kind, (label, _phrase) in words.KINDS.items()},
        "sent": _replies(data.replies, OutboxStatus.SENT),
        "shadow": _replies(data.replies, OutboxStatus.SHADOW),
        "logged": sorted(data.logged.items()),
        "mode": data.policy.mode.value, "redirect": data.policy.redirect_all_to,
        "overrides": [(kind.value, mode.value) for kind, mode in data.policy.modes.items()],
        "last_good_poll": _time(last, zone) if last else None,
        "poll_stale": last is None or now - last > _stale_after(data), "polls": data.polls,
        "warnings": list(data.warnings),
        "failed_polls": len(data.failed_polls),
        "poll_failures": [{"error": error, "count": len(times), "last": _time(max(times), zone)}
                          for error, times in failures.items()],
        "caps": sorted(data.caps.items()), "waiting": data.waiting,
        "directory_skipped": data.directory_skipped,
        "series": [key for key, _kinds in SERIES], "weeks": _chart(data, zone),
        "series_names": {s.key: (s.label, s.colour) for s in kinds.SERIES},
    }


@lru_cache(maxsize=8)  # keeps the compiled template for the next digest
def _environment(templates: Templates, html: bool) -> Environment:
    """The templates' sandbox, autoescaping for HTML, falling back to the shipped digest."""
    from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader

    fallback: BaseLoader = FileSystemLoader(render.default_templates_dir())
    loader = templates.environment.loader
    return templates.environment.overlay(
        loader=ChoiceLoader([fallback] if loader is None else [loader, fallback]),
        autoescape=html)


def _render(templates: Templates, context: dict[str, Any], *, html: bool) -> tuple[str, str]:
    """The template rendered as text or HTML, and the subject it sets."""
    from jinja2 import TemplateError as JinjaError

    try:
        template = _environment(templates, html).get_template(TEMPLATE)
        module = template.make_module({**context, "html": html})
        body, subject = str(module), str(getattr(module, "subject", ""))
    except JinjaError as exc:
        raise TemplateError(f"template {TEMPLATE} does not render: {exc}") from None
    except Exception as exc:  # the counselor's template code, e.g. a TypeError
        raise TemplateError(f"template {TEMPLATE} does not render: {type(exc).__name__}") from None
    if html:
        return re.sub(r"\n\s*\n", "\n", body).strip() + "\n", subject
    lines = "\n".join(line.rstrip() for line in body.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", lines).strip() + "\n", subject


def preview_html(data: DigestData, templates: Templates, counselor: CounselorSettings,
                 now: datetime, reference: str | None = None) -> str:
    """The digest's HTML part, exactly as ``build`` sends it, e.g. to open in a browser."""
    return _render(templates, _context(data, templates, counselor, now, reference),
                   html=True)[0]


def build(data: DigestData, templates: Templates, counselor: CounselorSettings, *,
          now: datetime, message_id: str, reference: str | None = None) -> EmailMessage:
    """The digest email from the counselor to the counselor, text and HTML from one template.

    ``reference`` is the one-time token ``review.register_digest`` recorded for this digest's
    Message-ID: with it, the digest tells how to resolve its items by answering it. Raises
    ``TemplateError`` if ``digest.j2`` does not render or sets no subject.
    """
    context = _context(data, templates, counselor, now, reference)
    text, subject = _render(templates, context, html=False)
    html, _ = _render(templates, context, html=True)
    subject = render.header_text(clean_text(subject, 998) or "")
    if not subject:
        raise TemplateError(f"template {TEMPLATE} sets no subject")
    message = render.to_counselor(name=counselor.name, email=counselor.email, subject=subject,
                                  date=now, message_id=message_id)
    message.set_content(text, charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    render.set_boundary(message)
    return message
