"""The ``modbot`` command line: thin wrappers that load settings and call the stages.

Commands read the clock and pass ``now`` down; heavy libraries are imported inside the command
that needs them so short commands start fast. Errors reach the person as one sentence on
stderr, never a traceback, and never a secret or a message body.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modbot import cli_review, cli_setup
from modbot.cli_base import _config, _fail, _settings, _setup_logging, _version
from modbot.cli_setup import health_problem  # noqa: F401 - where the tests and callers find it
from modbot.errors import ModbotError

if TYPE_CHECKING:
    from modbot.config import Account
    from modbot.poll import PollReport
    from modbot.store import Store

app = typer.Typer(
    name="modbot",
    help=(
        "Answer LinkedIn invitations, group requests, messages and recommendation requests "
        "with the counselor's boundaries and confidential contact route."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: "[schedule]" stays text, and rich is not imported
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True, rich_markup_mode=None)
# In this order, which is the order of `modbot --help`, after the commands defined below.
app.add_typer(cli_review.app)  # held, resolve, resume
app.add_typer(db_app, name="db")
app.add_typer(cli_setup.app)  # init, health, auth
app.add_typer(cli_review.review_app, name="review")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="MODBOT_CONFIG", metavar="FILE",
                 help="Configuration file (TOML). Default: $MODBOT_CONFIG."),
]


def _plain_argument_help() -> None:
    """Show an argument in --help by its metavar alone: typer adds the Python type after it
    ("ID <int>"), which says nothing to the admin reading it."""
    from typer.core import TyperArgument

    def no_type(self: TyperArgument, ctx: object) -> None:
        return None

    TyperArgument.display_type_rich = no_type  # type: ignore[assignment,method-assign]


_plain_argument_help()


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"modbot {_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config_path: ConfigOption = None,
    account: Annotated[str | None, typer.Option(
        "--account", "-a", envvar="MODBOT_ACCOUNT", metavar="USER@HOST",
        help="With several [[accounts]]: act on this one only (default: every account for "
             "run, run-once and check; the first for other commands).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print modbot's version and exit.")] = False,
) -> None:
    """modbot: keeps a counselor's LinkedIn boundaries, politely and the same for everyone."""
    # Every file modbot creates (database, logs, tokens) holds personal data: owner-only.
    os.umask(0o077)
    ctx.obj = {"config": config_path, "account": account}


def _print_report(report: PollReport, *, dry: bool = False) -> None:
    from modbot import words

    if dry:
        replies = f"replies that would be sent: {sum(h.status == 'queued' for h in report.handled)}"
    else:
        replies = f"replies sent: {len(report.sent)}"
    typer.echo(f"new messages: {report.new_messages}, LinkedIn notifications: "
               f"{report.candidates}, {replies}")
    for item in report.handled:
        who = f" from {item.person}" if item.person else ""
        to = f" to {item.recipient}" if item.recipient else ""
        if dry and item.status == "queued":
            done = "would be answered"
        else:
            done = words.action(item.action, item.status)
        typer.echo(f"  uid {item.uid}: {words.kind_phrase(item.kind, item.rule)}{who}: "
                   f"{done}{to} — {item.reasons[0] if item.reasons else item.rule}")
    for error in report.errors:
        typer.echo(f"  problem: {error}")


@app.command("run-once")
def run_once(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Decide and show what this poll would do; send, record and mark "
                          "nothing (the inbox is only read).")] = False,
) -> None:
    """Poll every inbox once: handle new notifications, send due replies, then exit.

    Exit status 1 when something failed; each problem is printed.
    """
    import asyncio

    from modbot.advice import explain

    loaded = _config(ctx)
    accounts, settings = loaded.accounts, loaded.first
    if dry_run:
        _dry_run(accounts)
        return
    if len(accounts) == 1:
        try:
            report = asyncio.run(_poll_account(settings, None, _progress_bar()))
        except ModbotError as exc:
            _fail(explain(exc, settings))
        _print_report(report)
        if report.errors:
            raise typer.Exit(1)
        return
    from modbot.store import Store

    try:
        store = Store.open(loaded.database.url)
    except ModbotError as exc:
        _fail(str(exc))

    async def every() -> list[PollReport | BaseException]:
        # Side by side: one account's silent server or refused login holds up no other.
        return await asyncio.gather(*(_poll_account(a, store) for a in accounts),
                                    return_exceptions=True)

    failed = False
    for account, outcome in zip(accounts, asyncio.run(every()), strict=True):
        typer.echo(f"{account.account}:")
        if isinstance(outcome, ModbotError):
            typer.echo(f"  problem: {explain(outcome, account)}")
            failed = True
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            _print_report(outcome)
            failed = failed or bool(outcome.errors)
    store.close()
    if failed:
        raise typer.Exit(1)


def _dry_run(accounts: tuple[Account, ...]) -> None:
    """``run-once --dry-run`` for each account, one after the other."""
    import asyncio

    from modbot.advice import explain
    from modbot.dryrun import dry_run

    failed = False
    for account in accounts:
        if len(accounts) > 1:
            typer.echo(f"{account.account}:")
        try:
            report, note = asyncio.run(dry_run(account, datetime.now(UTC)))
        except ModbotError as exc:
            typer.echo(f"modbot: {explain(exc, account)}", err=True)
            failed = True
            continue
        typer.echo("dry run: nothing was sent, recorded or marked"
                   + (f" ({note})" if note else ""))
        _print_report(report, dry=True)
        failed = failed or bool(report.errors)
    if failed:
        raise typer.Exit(1)


async def _poll_account(settings: Account, store: Store | None,
                        progress: Callable[[int, int], None] | None = None) -> PollReport:
    """One poll of one account, under its lock; ``store`` shared, else one of its own."""
    from modbot.lock import acquire_account_lock
    from modbot.poll import Context, poll_once

    with acquire_account_lock(settings.database.url, settings.account):
        context = Context.build(settings, store_=store)
        return await poll_once(context, datetime.now(UTC), progress)


def _progress_bar(least: int = 200) -> Callable[[int, int], None] | None:
    """A progress bar on a terminal for a poll with at least ``least`` messages (a first run
    looking back over old mail); None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task: list[Any] = []

    def update(done: int, total: int) -> None:
        if total < least:
            return
        if not task:
            bar.start()
            task.append(bar.add_task("reading the inbox", total=total))
        bar.update(task[0], completed=done)
        if done >= total:
            bar.stop()

    return update


@app.command()
def status(ctx: typer.Context) -> None:
    """Where modbot stands: the mode, each inbox's last poll, the next digest, the replies
    counted against the caps, and what waits for the counselor.

    Only reads: asks no mail server and creates no database.
    """
    from modbot import status as standing

    loaded = _config(ctx, resolve_secrets=False)
    path = (ctx.obj or {}).get("config") or os.environ.get("MODBOT_CONFIG")
    typer.echo(f"modbot {_version()}, configuration {Path(str(path)).absolute()}")
    try:
        lines = standing.lines(loaded, datetime.now(UTC))
    except ModbotError as exc:
        _fail(str(exc))
    for line in lines:
        typer.echo(line)


@app.command()
def run(ctx: typer.Context) -> None:
    """Run the daemon: poll on an interval, send the weekly digest; stop on SIGTERM/SIGINT."""
    import asyncio

    from modbot.daemon import run_daemon

    loaded = _config(ctx)
    try:
        asyncio.run(run_daemon(loaded))
    except ModbotError as exc:
        _fail(str(exc))


def _classify_one(path: Path, settings: Account | None, dns: bool,
                  trust: list[str]) -> dict[str, Any]:
    from modbot.config import PolicySettings
    from modbot.directory.combined import open_directory
    from modbot.judging import judge
    from modbot.model import Action

    raw = path.read_bytes()
    directory = open_directory(settings.directory) if settings is not None else None
    rules = settings.classify.compiled_rules if settings is not None else ()
    policy = settings.policy if settings is not None else PolicySettings()
    if trust:
        trusted = (*policy.trusted_authserv_ids, *trust)
        policy = policy.model_copy(update={"trusted_authserv_ids": trusted})
    lookup: Callable[[bytes], bytes | None] | None = None
    if dns:  # DNS look-ups only when asked for
        from modbot.dns import txt_lookup

        lookup = txt_lookup
    j = judge(raw, policy, directory, lookup, rules)
    person = j.classification.person
    recipient = j.decision.recipient if j.decision.action is Action.REPLY else None
    return {
        "file": str(path),
        "kind": j.classification.kind.value,
        "authentic": j.authenticity.authentic,
        "person": {"name": person.name, "profile_url": person.profile_url},
        "decision": j.decision.action.value,
        "to": recipient.email if recipient is not None else None,
        "reasons": list(j.decision.reasons),
        "rule": j.classification.rule,
        "policy_rule": j.decision.rule,
        "authenticity": {"verdict": j.authenticity.verdict.value,
                         "evidence": list(j.authenticity.reasons),
                         "signed_fields": sorted(j.authenticity.signed)},
        "invitation_id": person.invitation_id,
        "address_source": j.address_source,
    }


@app.command("classify")
def classify_cmd(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Email files (.eml) to classify.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show every reason.")] = False,
    dns: Annotated[bool, typer.Option(
        "--dns", help="Verify DKIM signatures over the system's DNS resolver, as the daemon "
                      "does (without it, only trusted Authentication-Results can prove mail).")
                   ] = False,
    trust: Annotated[list[str] | None, typer.Option(
        "--trust", metavar="AUTHSERV_ID",
        help="Also trust Authentication-Results from this server (repeatable).")] = None,
) -> None:
    """Classify email files offline and say what modbot would do with each, and why."""
    import json

    from modbot import words

    settings = None
    if ctx.obj and ctx.obj.get("config"):
        settings = _settings(ctx, resolve_secrets=False)
    failed = False
    for path in files:
        try:
            result = _classify_one(path, settings, dns, trust or [])
        except (OSError, ModbotError) as exc:
            message = exc.strerror if isinstance(exc, OSError) else str(exc)
            typer.echo(f"modbot: {path}: {message}", err=True)
            failed = True
            continue
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))
            continue
        who = result["person"]["name"] or "-"
        typer.echo(f"{path}: {words.kind_label(result['kind'])} ({who}), "
                   f"{words.authenticity(result['authentic'])} -> "
                   f"{words.action(result['decision'])}")
        if result["to"]:
            typer.echo(f"    a reply would go to {result['to']}")
        reasons = result["reasons"] if explain else result["reasons"][:1]
        for reason in reasons:
            typer.echo(f"    {reason}")
    if failed:
        raise typer.Exit(1)


@app.command()
def texts(ctx: typer.Context) -> None:
    """Print every text of the practice: the group welcome and the "advice for contacting"
    section to paste into LinkedIn, then the reply each kind of notification gets."""
    from modbot import words
    from modbot.render import PRACTICE_TEMPLATES, Templates, every_text

    settings = _settings(ctx, resolve_secrets=False)
    try:
        rendered = every_text(Templates.load(settings.templates.dir), settings.counselor)
    except ModbotError as exc:
        _fail(str(exc))
    titles = {"group_welcome": "Group welcome message (paste into the LinkedIn group)",
              "advice_for_contacting": "Advice for contacting (paste into the profile)"}
    for name, text in rendered.items():
        title = titles.get(name) or f"Reply to {words.kind_phrase(name)}"
        typer.echo(f"=== {title} ===")
        if name not in PRACTICE_TEMPLATES:
            typer.echo(f"Subject: {text.subject}\n")
        typer.echo(text.text.rstrip() + "\n")


@app.command()
def check(
    ctx: typer.Context,
    mail: Annotated[bool, typer.Option(
        "--mail/--no-mail",
        help="Also read the last 30 days of each inbox and report which LinkedIn "
             "notifications modbot can prove, why not the others, and the [policy] settings "
             "the mail suggests.")] = True,
) -> None:
    """Check everything once and list each problem with what to do: the configuration, the
    database, and for every inbox the templates, the directory, IMAP and SMTP, and what the
    last 30 days of mail say about the trust settings (docs/deployment.md).

    Changes nothing: no database is created, the IMAP folder is only read and no flag changes.
    Exit status 0 when all is well, 1 when something must be fixed, 2 when the configuration
    cannot be read.
    """
    from modbot import checks

    obj = ctx.obj or {}
    _setup_logging("ERROR")  # the findings say it all; a library's warning would repeat them
    today = datetime.now(UTC).date() if mail else None
    raise typer.Exit(checks.run(obj.get("config"), obj.get("account"), typer.echo,
                                today=today))


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(
        metavar="DIR", show_default=False,
        help="Keep the demo's database, configuration and servers' mail in this directory "
             "(default: a temporary one, removed at the end).")] = None,
) -> None:
    """Run one real poll against embedded IMAP and SMTP servers seeded with sample mail."""
    import asyncio

    from modbot.demo import run_demo

    try:
        code = asyncio.run(run_demo(keep))
    except ModbotError as exc:
        _fail(str(exc))
    typer.secho("\n== Next ==", bold=True)
    if keep is None:
        typer.echo("The demo's database and configuration were in a temporary folder, now "
                   "removed. To look around afterwards, run it with a folder to keep them:\n"
                   "  modbot demo --keep ./modbot-demo")
    else:
        config = keep / "modbot.toml"
        typer.echo(f"The demo's database and configuration are kept in {keep}. Look around "
                   "(the servers are gone, the database stays):\n"
                   f"  modbot --config {config} status\n"
                   f"  modbot --config {config} held")
    typer.echo("To answer a real inbox: write a configuration, check it, and watch a week in "
               "shadow mode (README, \"Into production\"):\n"
               "  modbot init ./modbot.toml\n"
               "  modbot --config ./modbot.toml check")
    raise typer.Exit(code)


@app.command()
def digest(
    ctx: typer.Context,
    preview: Annotated[Path | None, typer.Option(
        "--preview", metavar="FILE.html",
        help="Write the digest's HTML here; send nothing.")] = None,
    send: Annotated[bool, typer.Option("--send", help="Send the digest now.")] = False,
) -> None:
    """Write the weekly digest for the last seven days to a file, or send it now."""
    from modbot import digest as weekly
    from modbot.poll import Context

    if preview is None and not send:
        _fail("say --preview FILE.html or --send", code=2)
    settings = _settings(ctx, resolve_secrets=send)
    now = datetime.now(UTC)
    try:
        context = Context.build(settings)
        if preview is not None:
            from modbot.daemon import directory_skipped

            data = weekly.gather(context.store, settings, now,
                                 directory_skipped=directory_skipped(context))
            html = weekly.preview_html(data, context.templates, settings.counselor, now)
            preview.write_text(html, encoding="utf-8")
            typer.echo(f"digest written to {preview}")
        if send:
            import asyncio

            from modbot.daemon import send_digest_if_due

            asyncio.run(send_digest_if_due(context, now, force=True))
            typer.echo(f"digest sent to {settings.counselor.email}")
    except (ModbotError, OSError) as exc:
        _fail(exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or upgrade the database schema (also done at every start)."""
    from modbot.store import Store

    settings = _settings(ctx, resolve_secrets=False)
    try:
        Store.open(settings.database.url).close()
    except ModbotError as exc:
        _fail(str(exc))
    typer.echo("database is up to date")


def main() -> None:
    app()
