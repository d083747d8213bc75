"""The weekly digest: what needs the counselor, what modbot did, and whether modbot is healthy.

``gather`` reads the store, and nothing else, into a ``DigestData`` value; ``build`` turns that
value into the email to the counselor and ``preview_html`` into the same HTML for a browser. Both
are pure. The digest must never carry a message body or subject: the store keeps none, and of a
message's reasons only the first, the policy's own sentence, is read, because the later reasons
are evidence and may quote a line of the notification.

One source, two parts: ``digest.j2`` is rendered twice from one context, with ``html`` false for
the plain-text part and with ``html`` true in an autoescaping overlay of the same sandboxed, strict
environment for the HTML part. The words are written once, in the template's body; its macros are
the only place where the two parts differ. A template directory without ``digest.j2`` uses the
shipped one. The HTML is tables with inline styles only (no script, SVG, image or ``<style>``),
because Gmail and Outlook drop the rest; the eight-week chart is table cells of set widths.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader
from jinja2 import TemplateError as JinjaError
from sqlalchemy import func, select

from modbot.config import CounselorSettings, Settings
from modbot.errors import TemplateError
from modbot.model import Person, Recipient
from modbot.render import (
    REPLY_TEMPLATES,
    Templates,
    clean_text,
    default_templates_dir,
    header_text,
    reply_text,
)
from modbot.store import (
    FAILED,
    QUEUED,
    RETRY,
    REVIEW,
    SENDING,
    SENT,
    SHADOW,
    UNCERTAIN,
    Store,
    messages,
    outbox,
)

PERIOD, WEEKS = timedelta(days=7), 8
TEMPLATE = "digest.j2"
CAP_RULES = ("hourly-cap", "daily-cap")
MAX_NAMES = 12  # names listed per kind of reply; the rest are counted
KINDS = {
    "connection_invitation": "Connection invitation", "group_join_request": "Group join request",
    "group_activity": "Group activity", "linkedin_message": "LinkedIn message",
    "recommendation_request": "Recommendation request", "other_linkedin": "Other LinkedIn mail",
    "spoofed_linkedin": "Spoofed LinkedIn mail", "unknown_linkedin": "Unknown LinkedIn mail",
    "not_linkedin": "Email",
}
# The chart's series, in stacking order: (key, label, kinds). Colours are the template's.
SERIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("invitations", "Invitations", ("connection_invitation",)),
    ("groups", "Group requests", ("group_join_request",)),
    ("messages", "Messages", ("linkedin_message",)),
    ("recommendations", "Recommendations", ("recommendation_request",)),
    ("other", "Other LinkedIn", ("group_activity", "other_linkedin")),
    ("suspect", "Spoofed or unknown", ("spoofed_linkedin", "unknown_linkedin")),
)
# Profile links are shown only from authentic mail and only to linkedin.com: a spoof's could
# lead anywhere.
_PROFILE = re.compile(r"^https://www\.linkedin\.com/[^\s<>\"'\\]*$")
_SPECIALS = re.compile(r'["(),:;<>@\[\]\\]')  # as in render: no RFC 5322 specials in names


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

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Row:
        reasons = row["reasons"]
        reasons = json.loads(reasons) if isinstance(reasons, str) else reasons
        return cls(row["kind"], row["person_name"], row["seen_at"], row["action"],
                   row["policy_rule"], reasons[0] if reasons else row["policy_rule"],
                   row["authentic"], row["profile_url"], row["outbox_status"], row["last_error"])


@dataclass(frozen=True)
class DigestData:
    """What the digest for the week ending ``end`` shows, as read from the store."""

    start: datetime
    end: datetime
    timezone: str
    mode: str
    mode_overrides: tuple[tuple[str, str], ...]  # (kind, mode) where a kind has its own
    redirect_all_to: str | None
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


def gather(store: Store, settings: Settings, now: datetime) -> DigestData:
    """Read what the digest for the week ending ``now`` needs; raises ``StoreError``."""
    start, first = now - PERIOD, now - WEEKS * PERIOD
    replies = (
        select(messages, outbox.c.status.label("outbox_status"), outbox.c.last_error)
        .join(outbox, outbox.c.message_row == messages.c.id)
        .where(((outbox.c.status == SENT) & (outbox.c.sent_at >= start)
                & (outbox.c.sent_at < now))
               | ((outbox.c.status == SHADOW) & (outbox.c.created_at >= start)
                  & (outbox.c.created_at < now)))
        .order_by(outbox.c.id))
    recent = select(messages.c.seen_at, messages.c.kind, messages.c.action,
                    messages.c.policy_rule).where(messages.c.seen_at >= first,
                                                  messages.c.seen_at < now)
    waiting = select(func.count()).select_from(outbox).where(
        outbox.c.status.in_((QUEUED, RETRY, SENDING)))
    with store.transaction() as c:
        reply_rows = [Row.of(r._mapping) for r in c.execute(replies)]
        recent_rows = c.execute(recent).all()
        waiting_count = int(c.execute(waiting).scalar_one())
    weeks: list[Counter[str]] = [Counter() for _ in range(WEEKS)]
    for seen_at, kind, _action, _rule in recent_rows:
        if kind != "not_linkedin":
            weeks[WEEKS - 1 - (now - seen_at) // PERIOD][kind] += 1
    this_week = [r for r in recent_rows if r.seen_at >= start]
    polls = store.polls_between(start, now)
    stuck = now - timedelta(hours=1)  # a poll unfinished this long ago died or hung
    return DigestData(
        start=start, end=now, timezone=settings.digest.timezone,
        mode=settings.policy.mode.value,
        mode_overrides=tuple((k.value, m.value) for k, m in settings.policy.modes.items()),
        redirect_all_to=settings.policy.redirect_all_to,
        open_items=tuple(Row.of(r) for r in store.open_items()),
        replies=tuple(reply_rows),
        logged=Counter(r.kind for r in this_week if r.action == "log"),
        caps=Counter(r.policy_rule for r in this_week if r.policy_rule in CAP_RULES),
        waiting=waiting_count, polls=len(polls),
        failed_polls=tuple(
            (p["started_at"], p["error"] or "The poll did not finish.") for p in polls
            if not p["ok"] and (p["finished_at"] is not None or p["started_at"] < stuck)),
        last_good_poll=store.last_good_poll(), poll_seconds=settings.schedule.poll_seconds,
        weeks=tuple(weeks),
    )


# What needs a person, most urgent first: (label, tone, test); the first that fits names a row.
NEEDS: tuple[tuple[str, str, Callable[[Row], bool]], ...] = (
    ("May have been sent", "alert", lambda r: r.status == UNCERTAIN),
    ("Reply failed", "alert", lambda r: r.status == FAILED),
    ("Could not be processed", "alert", lambda r: r.policy_rule == "processing-error"),
    ("Spoofed LinkedIn mail", "alert", lambda r: r.kind == "spoofed_linkedin"),
    ("A person answered modbot", "warn", lambda r: r.policy_rule == "answer-to-modbot"),
    ("Waiting for your review", "info", lambda r: r.status == REVIEW),
    ("No address found", "warn", lambda r: r.policy_rule == "no-address"),
    ("Held by a reply cap", "warn", lambda r: r.policy_rule in CAP_RULES),
    ("Not confirmed as LinkedIn's", "warn", lambda r: r.policy_rule == "unverified"),
    ("Unknown LinkedIn mail", "muted", lambda r: r.kind == "unknown_linkedin"),
    ("Held for you", "muted", lambda r: True),
)


@dataclass(frozen=True)
class Need:
    """One item in "Needs you", ready to show."""

    label: str
    tone: str
    kind: str | None  # None when the label already says it
    name: str | None
    date: str
    reason: str
    profile_url: str | None
    paste: tuple[tuple[str, ...], ...]  # the reply to paste, as paragraphs of lines


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _day(moment: datetime, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b}"


def _period(start: datetime, end: datetime, zone: tzinfo) -> str:
    first, last = start.astimezone(zone), end.astimezone(zone)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{last.day} {last:%b %Y}"
    year = f" {first.year}" if first.year != last.year else ""
    return f"{first.day} {first:%b}{year} – {last.day} {last:%b %Y}"


def _time(moment: datetime, zone: tzinfo) -> str:
    return f"{_day(moment, zone)} {moment.astimezone(zone):%H:%M}"


def _sentence(text: str) -> str:
    text = clean_text(text, 300) or ""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def _paste(row: Row, templates: Templates, counselor: CounselorSettings) -> tuple[
        tuple[str, ...], ...]:
    if row.kind not in REPLY_TEMPLATES or not (row.action == "hold" or row.status == FAILED):
        return ()
    name = clean_text(row.person_name)
    try:
        text = reply_text(templates, template=row.kind, counselor=counselor,
                          recipient=Recipient(name or "", "", "digest"), person=Person(name=name))
    except TemplateError:
        return ()  # `modbot check` names the broken template; the digest still goes out
    return tuple(tuple(p.split("\n")) for p in text.split("\n\n"))


def _need(row: Row, templates: Templates, counselor: CounselorSettings, zone: tzinfo) -> Need:
    label, tone = next((label, tone) for label, tone, test in NEEDS if test(row))
    profile = row.profile_url if row.authentic and _PROFILE.match(row.profile_url or "") else None
    reason = row.error if row.status in (FAILED, UNCERTAIN, REVIEW) and row.error else row.reason
    kind = KINDS.get(row.kind, row.kind)
    return Need(label, tone, kind if kind != label else None, clean_text(row.person_name),
                _day(row.seen_at, zone), _sentence(reason), profile,
                _paste(row, templates, counselor))


def _replies(rows: tuple[Row, ...], status: str) -> list[dict[str, Any]]:
    names: dict[str, list[str]] = {}
    for row in rows:
        if row.status == status:
            names.setdefault(row.kind, []).append(clean_text(row.person_name) or "(no name)")
    return [{"kind": KINDS.get(kind, kind), "count": len(people),
             "names": people[:MAX_NAMES], "more": max(0, len(people) - MAX_NAMES)}
            for kind, people in sorted(names.items(), key=lambda item: -len(item[1]))]


def _chart(data: DigestData, zone: tzinfo) -> list[dict[str, Any]]:
    totals = [[sum(week[k] for k in kinds) for _key, _label, kinds in SERIES]
              for week in data.weeks]
    peak = max((sum(counts) for counts in totals), default=0) or 1
    chart = []
    for index, counts in enumerate(totals):
        total = sum(counts)
        widths = [max(1, round(100 * n / total)) if n else 0 for n in counts] if total else []
        if widths:  # make the segments fill the bar exactly
            widths[max(range(len(widths)), key=widths.__getitem__)] += 100 - sum(widths)
        start = data.end - (WEEKS - index) * PERIOD
        chart.append({
            "label": _day(start, zone).split(" ", 1)[1], "total": total, "counts": counts,
            "width": max(1, round(100 * total / peak)) if total else 0,
            "segments": [(key, label, n, w) for (key, label, _k), n, w
                         in zip(SERIES, counts, widths, strict=False) if n],
        })
    return chart


def _context(data: DigestData, templates: Templates, counselor: CounselorSettings,
             now: datetime) -> dict[str, Any]:
    zone = _zone(data.timezone)
    order = {label: index for index, (label, _tone, _test) in enumerate(NEEDS)}
    needs = sorted((_need(row, templates, counselor, zone) for row in
                    sorted(data.open_items, key=lambda row: row.seen_at)),
                   key=lambda need: order[need.label])
    failures: dict[str, list[datetime]] = {}
    for started_at, error in data.failed_polls:
        failures.setdefault(_sentence(error.split("\n")[0]), []).append(started_at)
    last = data.last_good_poll
    stale_after = max(timedelta(seconds=3 * data.poll_seconds), timedelta(minutes=30))
    return {
        "counselor": counselor.name,
        "period": _period(data.start, data.end, zone),
        "generated": _time(now, zone),
        "needs": needs,
        "sent": _replies(data.replies, SENT), "shadow": _replies(data.replies, SHADOW),
        "logged": [(KINDS.get(k, k), n) for k, n in sorted(data.logged.items())],
        "mode": data.mode, "redirect": data.redirect_all_to,
        "overrides": [(KINDS.get(k, k), m) for k, m in data.mode_overrides],
        "last_good_poll": _time(last, zone) if last else None,
        "poll_stale": last is None or now - last > stale_after,
        "polls": data.polls,
        "poll_failures": [{"error": e, "count": len(at), "last": _time(max(at), zone)}
                          for e, at in failures.items()],
        "failed_polls": len(data.failed_polls),
        "caps": [(rule.split("-")[0], n) for rule, n in sorted(data.caps.items())],
        "waiting": data.waiting,
        "series": [{"key": key, "label": label} for key, label, _kinds in SERIES],
        "weeks": _chart(data, zone),
    }


def _render(templates: Templates, context: dict[str, Any], *, html: bool) -> tuple[str, str]:
    """The template rendered as text or HTML, and the subject it sets."""
    fallback: BaseLoader = FileSystemLoader(default_templates_dir())
    loaders = [fallback] if templates.environment.loader is None else [
        templates.environment.loader, fallback]
    environment = templates.environment.overlay(loader=ChoiceLoader(loaders), autoescape=html)
    try:
        module = environment.get_template(TEMPLATE).make_module({**context, "html": html})
        body, subject = str(module), str(getattr(module, "subject", ""))
    except JinjaError as exc:
        raise TemplateError(f"template {TEMPLATE} does not render: {exc}") from None
    if html:
        return re.sub(r"\n\s*\n", "\n", body).strip() + "\n", subject
    lines = "\n".join(line.rstrip() for line in body.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", lines).strip() + "\n", subject


def preview_html(data: DigestData, templates: Templates, counselor: CounselorSettings,
                 now: datetime) -> str:
    """The digest's HTML part, as ``build`` would send it, e.g. to open in a browser."""
    return _render(templates, _context(data, templates, counselor, now), html=True)[0]


def build(data: DigestData, templates: Templates, counselor: CounselorSettings, *,
          now: datetime, message_id: str) -> EmailMessage:
    """The digest email from the counselor to the counselor, text and HTML from one template.

    Raises ``TemplateError`` if ``digest.j2`` does not render or sets no subject.
    """
    context = _context(data, templates, counselor, now)
    text, subject = _render(templates, context, html=False)
    html, _ = _render(templates, context, html=True)
    subject = clean_text(subject, 998) or ""
    if not subject:
        raise TemplateError(f"template {TEMPLATE} sets no subject")
    display = " ".join(_SPECIALS.sub(" ", clean_text(counselor.name) or "").split())
    message = EmailMessage()
    message["From"] = Address(header_text(display), addr_spec=counselor.email)
    message["To"] = Address(header_text(display), addr_spec=counselor.email)
    message["Subject"] = header_text(subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: made by a program, not a reply
    message["X-Auto-Response-Suppress"] = "All"  # asks Exchange not to answer it
    message.set_content(text, charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message
