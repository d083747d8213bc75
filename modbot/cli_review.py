"""The commands about what waits for the counselor: ``held``, ``resolve``, ``review`` and
``resume``.

``app`` (held, resolve, resume) and ``review_app`` (the ``review`` group) are registered on
``modbot.cli.app``, which imports this module; the conventions are the same (thin wrappers that
act on one account, one sentence on stderr for an error, heavy imports inside the command).
It must never import ``modbot.cli``, and never print a secret or a message body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modbot.cli_base import _fail, _settings
from modbot.errors import ModbotError

if TYPE_CHECKING:
    from modbot.config import Account
    from modbot.store import Item, Store

app = typer.Typer(rich_markup_mode=None)


@app.command()
def held(ctx: typer.Context) -> None:
    """List what waits for the counselor, oldest first: why each item is held, the person's
    LinkedIn profile, and the reply ready to paste into LinkedIn where one is due."""
    from modbot import words
    from modbot.render import Templates, clean_text
    from modbot.store import Store

    settings = _settings(ctx, resolve_secrets=False)
    try:
        items = Store.open(settings.database.url).open_items(settings.account)
        templates = Templates.load(settings.templates.dir)
    except ModbotError as exc:
        _fail(str(exc))
    if not items:
        typer.echo("nothing waits for you")
        return
    for item in items:
        who = clean_text(item.person_name)
        seen = words.local_time(item.seen_at, settings.digest.timezone)
        typer.echo(f"#{item.id}  {seen}  "
                   f"{words.kind_label(item.kind)}{f' from {who}' if who else ''}")
        reason = clean_text(item.last_error or (item.reasons or ("",))[0], 300)
        if reason:
            typer.echo(f"    why: {reason}")
        profile = _profile_link(item)
        if profile:
            typer.echo(f"    profile: {profile}")
        paste = _paste_text(item, templates, settings)
        if paste:
            typer.echo("    reply to paste into LinkedIn:")
            typer.echo("\n".join(f"      {line}".rstrip() for line in paste.splitlines()))
        typer.echo("")
    typer.echo(f"{len(items)} item{'s' if len(items) != 1 else ''}; when one is dealt with: "
               "modbot resolve NUMBER")


def _profile_link(item: Item) -> str | None:
    """The person's LinkedIn profile, only from mail proven to be LinkedIn's: a fake
    notification's link goes wherever its sender wants."""
    import re

    url = item.profile_url or ""
    if item.authentic is True and re.match(r"^https://www\.linkedin\.com/[^\s<>\"'\\]*$",
                                                  url):
        return str(url)
    return None


def _paste_text(item: Item, templates: Any, settings: Account) -> str | None:
    """The reply the person would have had, to paste into LinkedIn by hand; None for an item
    whose kind gets no reply (a fake notification, unknown mail)."""
    from modbot.kinds import TEMPLATE_OF
    from modbot.model import Person, Recipient
    from modbot.render import clean_text, reply_text
    from modbot.store import OutboxStatus

    template = TEMPLATE_OF.get(item.kind)
    if template is None or item.outbox_status is OutboxStatus.REVIEW:
        return None  # a reply waiting for review is seen with `modbot review show`
    name = clean_text(item.person_name)
    try:
        return reply_text(templates, template=template, counselor=settings.counselor,
                          recipient=Recipient(name or "", "", "held"), person=Person(name=name))
    except ModbotError:
        return None  # `modbot check` names the broken template


@app.command()
def resolve(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(
        metavar="ID...", show_default=False, help="Numbers from `modbot held`.")] = None,
    resolve_all: Annotated[bool, typer.Option("--all", help="Resolve every held item.")] = False,
) -> None:
    """Mark held items as dealt with, so the digest stops listing them; a reply that waits for
    review is rejected with its item. Fails when a number names no held item."""
    from modbot.review_queue import resolve as close
    from modbot.store import Store

    if not ids and not resolve_all:
        _fail("give the numbers from `modbot held`, or --all", code=2)
    settings = _settings(ctx, resolve_secrets=False)
    try:
        outcome = close(Store.open(settings.database.url), settings.account,
                        None if resolve_all else ids, datetime.now(UTC))
    except ModbotError as exc:
        _fail(str(exc))
    count = len(outcome.resolved)
    typer.echo(f"{count} item{'s' if count != 1 else ''} resolved")
    for finding in outcome.findings:
        typer.echo(f"modbot: {finding} `modbot held` lists the held items.", err=True)
    if outcome.findings:
        raise typer.Exit(1)


review_app = typer.Typer(invoke_without_command=True, rich_markup_mode=None)
ReviewIds = Annotated[list[int] | None, typer.Argument(
    metavar="ID...", help="Numbers from `modbot review`.", show_default=False)]
ReviewId = Annotated[int, typer.Argument(metavar="ID", help="A number from `modbot review`.")]
ReviewAll = Annotated[bool, typer.Option("--all", help="Every reply that waits.")]


def _review_store(ctx: typer.Context) -> tuple[Account, Store]:
    from modbot.store import Store

    settings = _settings(ctx, resolve_secrets=False)
    try:
        return settings, Store.open(settings.database.url)
    except ModbotError as exc:
        _fail(str(exc))


@review_app.callback()
def review_list(ctx: typer.Context) -> None:
    """Replies waiting for approval (review mode): without a command, list them, oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from modbot import review, words

    settings, store = _review_store(ctx)
    items = review.waiting(store, settings.account, datetime.now(UTC))
    if not items:
        typer.echo("no reply waits for review")
        return
    table = Table("#", "kind", "person", "recipient", "age", "reason")
    for w in items:  # Text(): a name from mail is never read as rich markup
        table.add_row(str(w.id), words.kind_label(w.kind), Text(w.person or "-"),
                      Text(w.redirected_to or w.recipient), review.age_text(w.age), Text(w.reason))
    Console().print(table)


def _review_decide(ctx: typer.Context, ids: list[int] | None, every: bool, *,
                   approving: bool) -> None:
    from modbot import review

    if bool(ids) == every:
        _fail("give the numbers from `modbot review`, or --all", code=2)
    settings, store = _review_store(ctx)
    decide = review.approve if approving else review.reject
    try:
        outcome = decide(store, settings.account, None if every else ids, datetime.now(UTC))
    except ModbotError as exc:
        _fail(str(exc))
    done = len(outcome.approved if approving else outcome.rejected)
    verb = "approved; sent at the next poll" if approving else "rejected; nothing is sent"
    typer.echo(f"{done} repl{'y' if done == 1 else 'ies'} {verb}")
    for finding in outcome.findings:
        typer.echo(f"modbot: {finding}", err=True)
    if outcome.findings:
        raise typer.Exit(1)


@review_app.command("approve")
def review_approve(ctx: typer.Context, ids: ReviewIds = None, every: ReviewAll = False) -> None:
    """Approve waiting replies: the next poll sends them."""
    _review_decide(ctx, ids, every, approving=True)


@review_app.command("reject")
def review_reject(ctx: typer.Context, ids: ReviewIds = None, every: ReviewAll = False) -> None:
    """Reject waiting replies: they are never sent, and the notification counts as dealt with."""
    _review_decide(ctx, ids, every, approving=False)


@review_app.command("show")
def review_show(ctx: typer.Context, item: ReviewId) -> None:
    """Print the exact text the waiting reply ID would send, and where it would go."""
    from modbot import review
    from modbot.render import Templates

    settings, store = _review_store(ctx)
    try:
        templates = Templates.load(settings.templates.dir)
        found = review.preview(store, settings, templates, item)
        subject = _review_subject(store, settings, templates, item) if found else None
    except ModbotError as exc:
        _fail(str(exc))
    if found is None:
        _fail(f"number {item} does not wait for review")
    typer.echo(f"To: {found[0]}\nSubject: {subject}\n\n{found[1]}")


def _review_subject(store: Store, settings: Account, templates: Any, item_id: int) -> str:
    """The Subject the waiting reply ``item_id`` would carry, built as it will be sent."""
    from email.header import decode_header, make_header

    from modbot.model import Person, Recipient
    from modbot.render import reply_message
    from modbot.store import OutboxStatus

    item = next(i for i in store.items(settings.account, OutboxStatus.REVIEW)
                if i.id == item_id)
    message = reply_message(
        templates, template=item.template, counselor=settings.counselor,
        recipient=Recipient(item.recipient_name or "", item.recipient_email, "outbox"),
        person=Person(name=item.person_name), message_id=item.message_id,
        date=datetime.now(UTC))
    return str(make_header(decode_header(str(message["Subject"]))))


@review_app.command("edit")
def review_edit(ctx: typer.Context, item: ReviewId, to: Annotated[str, typer.Option(
        "--to", metavar="ADDRESS", help="Where the reply should go instead.")]) -> None:
    """Send the waiting reply ID to another address, such as a corrected one (--to ADDRESS).

    Only the address can change, not the words: every person gets the same reply by design.

    modbot keeps no message text to edit; to reword replies, edit the template (`modbot texts`).
    """
    from modbot import review

    settings, store = _review_store(ctx)
    try:
        changed = review.readdress(store, settings.account, item, to)
    except ValueError:
        _fail(f"{to!r} is not one plain email address", code=2)
    except ModbotError as exc:
        _fail(str(exc))
    if not changed:
        _fail(f"number {item} does not wait for review")
    typer.echo(f"number {item} will go to {to.strip()}")


@app.command()
def resume(ctx: typer.Context) -> None:
    """Start automatic replies again after a reached cap paused them."""
    from modbot.store import Store

    settings = _settings(ctx, resolve_secrets=False)
    try:
        store = Store.open(settings.database.url)
        try:
            resumed = store.resume(settings.account, datetime.now(UTC)) > 0
        finally:
            store.close()
    except ModbotError as exc:
        _fail(str(exc))
    typer.echo("replies resumed" if resumed else "replies were not paused")
