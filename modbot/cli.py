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
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from modbot.errors import ConfigError, ModbotError

if TYPE_CHECKING:
    from modbot.config import Settings
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
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="MODBOT_CONFIG",
                 help="Configuration file (TOML). Default: $MODBOT_CONFIG."),
]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"modbot: {message}", err=True)
    raise typer.Exit(code)


def _settings(ctx: typer.Context, *, resolve_secrets: bool = True) -> Settings:
    from modbot import config

    path = ctx.obj.get("config") if ctx.obj else None
    account = ctx.obj.get("account") if ctx.obj else None
    try:
        settings = config.load(path, resolve_secrets=resolve_secrets)
        if account:
            settings = settings.select(account)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    _setup_logging(settings.logging.level, settings.logging.format)
    return settings


def _setup_logging(level: str, fmt: str = "text") -> None:
    import logging

    from modbot.logs import install

    install(level, fmt)
    # Library loggers that print envelopes (names, addresses, subjects) or SQL parameters.
    for noisy in ("imapclient", "sqlalchemy", "aiosmtplib", "mail", "mailparser", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.callback()
def main_options(
    ctx: typer.Context,
    config_path: ConfigOption = None,
    account: Annotated[str | None, typer.Option(
        "--account", "-a", envvar="MODBOT_ACCOUNT", metavar="USER@HOST",
        help="With several [[accounts]]: act on this one only (default: every account for "
             "run, run-once and check; the first for other commands).")] = None,
) -> None:
    """modbot: keeps a counselor's LinkedIn boundaries, politely and the same for everyone."""
    # Every file modbot creates (database, logs, tokens) holds personal data: owner-only.
    os.umask(0o077)
    ctx.obj = {"config": config_path, "account": account}


def _print_report(report: PollReport) -> None:
    typer.echo(f"new messages: {report.new_messages}, LinkedIn candidates: "
               f"{report.candidates}, replies sent: {len(report.sent)}")
    from modbot import words

    for item in report.handled:
        who = f" from {item.person}" if item.person else ""
        to = f" to {item.recipient}" if item.recipient else ""
        typer.echo(f"  {words.kind_label(item.kind)}{who}: "
                   f"{words.action(item.action, item.status)}{to}"
                   f" — {item.reasons[0] if item.reasons else item.rule}")
    for error in report.errors:
        typer.echo(f"  problem: {error}")


@app.command("run-once")
def run_once(ctx: typer.Context) -> None:
    """Poll every inbox once: handle new notifications, send due replies, then exit."""
    import asyncio

    settings = _settings(ctx)
    accounts = settings.accounts()
    if len(accounts) == 1:
        try:
            report = asyncio.run(_poll_account(settings, None, _progress_bar()))
        except ModbotError as exc:
            _fail(str(exc))
        _print_report(report)
        if report.errors:
            raise typer.Exit(1)
        return
    from modbot.store import Store

    try:
        store = Store.open(settings.database.url)
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
            typer.echo(f"  problem: {outcome}")
            failed = True
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            _print_report(outcome)
            failed = failed or bool(outcome.errors)
    store.close()
    if failed:
        raise typer.Exit(1)


async def _poll_account(settings: Settings, store: Store | None,
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
def run(ctx: typer.Context) -> None:
    """Run the daemon: poll on an interval, send the weekly digest; stop on SIGTERM/SIGINT."""
    import asyncio

    from modbot.daemon import run_daemon

    settings = _settings(ctx)
    try:
        asyncio.run(run_daemon(settings))
    except ModbotError as exc:
        _fail(str(exc))


def _classify_one(path: Path, settings: Settings | None, dns: bool,
                  trust: list[str]) -> dict[str, Any]:
    from modbot.config import PolicySettings
    from modbot.judging import judge
    from modbot.model import History
    from modbot.recipients import open_directory

    raw = path.read_bytes()
    directory = open_directory(settings.directory) if settings is not None else None
    rules = settings.classify.compiled_rules if settings is not None else ()
    policy = settings.policy if settings is not None else PolicySettings()
    if trust:
        trusted = (*policy.trusted_authserv_ids, *trust)
        policy = policy.model_copy(update={"trusted_authserv_ids": trusted})
    lookup: Callable[[bytes], bytes | None] | None = None
    if dns:  # the poll module, and with it the store, only for DNS look-ups
        from modbot.poll import dns_txt_lookup

        lookup = dns_txt_lookup
    j = judge(raw, policy, directory, lambda *_: History(), lookup, rules)
    person = j.classification.person
    return {
        "file": str(path),
        "kind": j.classification.kind.value,
        "authentic": j.authenticity.authentic,
        "person": {"name": person.name, "profile_url": person.profile_url},
        "decision": j.decision.action.value,
        "reasons": list(j.decision.reasons),
        "rule": j.classification.rule,
        "policy_rule": j.decision.rule,
        "authenticity": {"verdict": j.authenticity.verdict.value,
                         "evidence": list(j.authenticity.reasons)},
        "invitation_id": person.invitation_id,
        "address_source": j.address_source,
    }


@app.command("classify")
def classify_cmd(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Email files (.eml) to classify.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show every reason.")] = False,
    dns: Annotated[bool, typer.Option("--dns", help="Verify DKIM signatures over DNS.")] = False,
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
        reasons = result["reasons"] if explain else result["reasons"][:1]
        for reason in reasons:
            typer.echo(f"    {reason}")
    if failed:
        raise typer.Exit(1)


@app.command()
def texts(ctx: typer.Context) -> None:
    """Print the three texts of the practice: group welcome, advice for contacting, reply."""
    from modbot.render import Templates, practice_texts

    settings = _settings(ctx, resolve_secrets=False)
    try:
        rendered = practice_texts(Templates.load(settings.templates.dir), settings.counselor)
    except ModbotError as exc:
        _fail(str(exc))
    titles = {"group_welcome": "Group welcome message",
              "advice_for_contacting": "Advice for contacting (profile section)",
              "individual_reply": "Individual reply"}
    for key, title in titles.items():
        text = rendered[key]
        typer.echo(f"=== {title} ===")
        if key == "individual_reply":
            typer.echo(f"Subject: {text.subject}\n")
        typer.echo(text.text.rstrip() + "\n")


@app.command()
def check(ctx: typer.Context) -> None:
    """Check everything once and list each problem with what to do: the configuration, the
    database, and for every inbox the templates, the directory, IMAP and SMTP.

    Changes nothing: no database is created, the IMAP folder is only read. Exit status 0 when
    all is well, 1 when something must be fixed, 2 when the configuration cannot be read.
    """
    from modbot import checks

    obj = ctx.obj or {}
    _setup_logging("ERROR")  # the findings say it all; a library's warning would repeat them
    raise typer.Exit(checks.run(obj.get("config"), obj.get("account"), typer.echo))


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(
        help="Keep the demo's database and config in this directory.")] = None,
) -> None:
    """Run one real poll against embedded IMAP and SMTP servers seeded with sample mail."""
    import asyncio

    from modbot.demo import run_demo

    try:
        code = asyncio.run(run_demo(keep))
    except ModbotError as exc:
        _fail(str(exc))
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
            data = weekly.gather(context.store, settings, now)
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


@app.command()
def held(ctx: typer.Context) -> None:
    """List what waits for the counselor: held notifications and replies needing a decision."""
    from rich.console import Console
    from rich.table import Table

    from modbot.store import Store

    settings = _settings(ctx, resolve_secrets=False)
    try:
        items = Store.open(settings.database.url).open_items()
    except ModbotError as exc:
        _fail(str(exc))
    table = Table("#", "arrived", "kind", "person", "why")
    for item in items:
        reason = item.get("last_error") or (item["reasons"][0] if item["reasons"] else "")
        table.add_row(str(item["id"]), f"{item['seen_at']:%Y-%m-%d %H:%M}", item["kind"],
                      item.get("person_name") or "-", reason)
    if items:
        Console().print(table)
    else:
        typer.echo("nothing waits for you")


@app.command()
def resolve(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Numbers from `modbot held`.")] = None,
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
        outcome = close(Store.open(settings.database.url), None if resolve_all else ids,
                        datetime.now(UTC))
    except ModbotError as exc:
        _fail(str(exc))
    count = len(outcome.resolved)
    typer.echo(f"{count} item{'s' if count != 1 else ''} resolved")
    for finding in outcome.findings:
        typer.echo(f"modbot: {finding} `modbot held` lists the held items.", err=True)
    if outcome.findings:
        raise typer.Exit(1)


review_app = typer.Typer(invoke_without_command=True, rich_markup_mode=None)
app.add_typer(review_app, name="review")
ReviewIds = Annotated[list[int] | None, typer.Argument(
    metavar="ID...", help="Numbers from `modbot review`.", show_default=False)]
ReviewId = Annotated[int, typer.Argument(metavar="ID", help="A number from `modbot review`.")]
ReviewAll = Annotated[bool, typer.Option("--all", help="Every reply that waits.")]


def _review_store(ctx: typer.Context) -> tuple[Settings, Store]:
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

    from modbot import review

    _, store = _review_store(ctx)
    items = review.waiting(store, datetime.now(UTC))
    if not items:
        typer.echo("no reply waits for review")
        return
    table = Table("#", "kind", "person", "recipient", "age", "reason")
    for w in items:  # Text(): a name from mail is never read as rich markup
        table.add_row(str(w.id), w.kind.replace("_", " "), Text(w.person or "-"),
                      Text(w.redirected_to or w.recipient), review.age_text(w.age), Text(w.reason))
    Console().print(table)


def _review_decide(ctx: typer.Context, ids: list[int] | None, every: bool, *,
                   approving: bool) -> None:
    from modbot import review

    if bool(ids) == every:
        _fail("give the numbers from `modbot review`, or --all", code=2)
    _, store = _review_store(ctx)
    decide = review.approve if approving else review.reject
    try:
        outcome = decide(store, None if every else ids, datetime.now(UTC))
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
        found = review.preview(store, settings, Templates.load(settings.templates.dir), item)
    except ModbotError as exc:
        _fail(str(exc))
    if found is None:
        _fail(f"number {item} does not wait for review")
    typer.echo(f"To: {found[0]}\n\n{found[1]}")


@review_app.command("edit")
def review_edit(ctx: typer.Context, item: ReviewId, to: Annotated[str, typer.Option(
        "--to", metavar="ADDRESS", help="Where the reply should go instead.")]) -> None:
    """Send the waiting reply ID to another address, such as a corrected one (--to ADDRESS).

    Only the address can change, not the words: every person gets the same reply by design.

    modbot keeps no message text to edit; to reword replies, edit the template (`modbot texts`).
    """
    from modbot import review

    _, store = _review_store(ctx)
    try:
        changed = review.readdress(store, item, to)
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


# --- operations: init and health --------------------------------------------------------------

InitAnswer = Annotated[str | None, typer.Option(show_default=False)]


@app.command()
def init(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(
        help="File to write. Default: --config / $MODBOT_CONFIG, else ./modbot.toml.")] = None,
    non_interactive: Annotated[bool, typer.Option(
        "--non-interactive", help="Ask nothing: answers come from the options below.")] = False,
    name: InitAnswer = None, email: InitAnswer = None, contact: InitAnswer = None,
    imap_host: InitAnswer = None, imap_user: InitAnswer = None, smtp_host: InitAnswer = None,
    smtp_user: InitAnswer = None, security: InitAnswer = None, directory: InitAnswer = None,
    database: InitAnswer = None,
) -> None:
    """Write a first configuration from a few questions (owner-only; never overwrites a file)."""
    from modbot import newconfig

    target = path or (ctx.obj or {}).get("config") or Path("modbot.toml")
    if target.exists():
        _fail(f"{target} already exists; modbot init never overwrites a configuration")
    given = {"name": name, "email": email, "contact": contact, "imap_host": imap_host,
             "imap_user": imap_user, "smtp_host": smtp_host, "smtp_user": smtp_user,
             "security": security, "directory": directory, "database": database}
    answers: dict[str, str] = {}
    missing: list[str] = []
    for question in newconfig.QUESTIONS:
        value = given[question.key]
        default = newconfig.default_for(question, answers)
        if value is None and non_interactive:
            if default is None:
                missing.append("--" + question.key.replace("_", "-"))
                continue
            value = default
        elif value is None:
            value = _ask(question.prompt, default, question.choices)
        answers[question.key] = str(value)
    if missing:
        _fail(f"--non-interactive needs {', '.join(missing)}", code=2)
    try:
        text = newconfig.render(answers)
        newconfig.check(text, target)
        newconfig.write(target, text)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    typer.echo(f"wrote {target} (readable by its owner only). Next:\n"
               f"  export {newconfig.IMAP_PASSWORD_ENV}=...   (and {newconfig.SMTP_PASSWORD_ENV} "
               "if the SMTP server needs a login)\n"
               f"  modbot --config {target} check\n"
               "modbot starts in shadow mode: it decides and records, and sends nothing, until "
               "[policy] mode says otherwise.")


def _ask(prompt: str, default: str | None, choices: tuple[str, ...]) -> str:
    if choices:
        prompt = f"{prompt} [{'/'.join(choices)}]"
    while True:
        value = str(typer.prompt(prompt, default=default, show_default=bool(default))).strip()
        if not choices or value in choices:
            return value
        typer.echo(f"Please answer one of: {', '.join(choices)}", err=True)


def health_problem(last_good: datetime | None, now: datetime, poll_seconds: int) -> str | None:
    """None if a poll succeeded within 3 × ``poll_seconds`` before ``now``, else why not."""
    if last_good is None:
        return "no poll has succeeded yet"
    age = (now - last_good).total_seconds()
    if age < 3 * poll_seconds:
        return None
    return (f"the last successful poll was {_ago(age)} ago, more than three poll intervals "
            f"({_ago(3 * poll_seconds)})")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@app.command()
def health(ctx: typer.Context) -> None:
    """For container health checks: exit 0 if a poll succeeded recently, else 1 and why.

    Recently means within three poll intervals (3 × [schedule] poll_seconds).
    """
    from sqlalchemy.engine import make_url

    from modbot import config
    from modbot.store import Store

    try:
        settings = config.load((ctx.obj or {}).get("config"), resolve_secrets=False)
        url = settings.database.url
        if make_url(url).get_backend_name() == "sqlite":
            database = make_url(url).database or ""
            if database not in ("", ":memory:") and not Path(database).expanduser().exists():
                _fail(f"unhealthy: there is no database at {database} yet")
        store = Store.open(url, migrate=False)
        try:
            last = store.last_good_poll(settings.account)
        finally:
            store.close()
    except ModbotError as exc:  # exit 1, not 2: Docker reserves 2 in health checks
        _fail(f"unhealthy: {exc}")
    now = datetime.now(UTC)
    problem = health_problem(last, now, settings.schedule.poll_seconds)
    if problem is not None:
        _fail(f"unhealthy: {problem}")
    assert last is not None
    typer.echo(f"healthy: the last successful poll was {_ago((now - last).total_seconds())} ago")


@app.command("auth")
def auth_cmd(
    ctx: typer.Context,
    provider: Annotated[str, typer.Argument(
        metavar="google|microsoft|generic",
        help="The provider of the oauth2 table; must match the configuration.")],
    smtp: Annotated[bool, typer.Option(
        "--smtp", help="Sign in for [smtp.oauth2] rather than [imap.oauth2].")] = False,
    port: Annotated[int, typer.Option(
        min=0, max=65535,
        help="Loopback port for the browser's answer (google, generic); 0: any free one.")] = 0,
    browser: Annotated[bool, typer.Option(
        "--browser/--no-browser", help="Also open the sign-in page in a browser here.")] = False,
    timeout: Annotated[float, typer.Option(
        min=10, help="Seconds to wait for the sign-in.")] = 300.0,
) -> None:
    """Sign in once with Google, Microsoft 365 or another OAuth2 provider; save the tokens.

    Google and generic providers: open the printed address and sign in; the browser comes back
    to modbot on 127.0.0.1. Microsoft: open Microsoft's page on any device and type the code.
    """
    import webbrowser

    from modbot import signin
    from modbot.tls import client_context

    settings = _settings(ctx)
    section, server = ("smtp", settings.smtp) if smtp else ("imap", settings.imap)
    oauth2 = server.oauth2
    if server.auth != "oauth2" or oauth2 is None:
        _fail(f'[{section}] does not say auth = "oauth2", so there is nothing to sign in for',
              code=2)
    if oauth2.provider != provider:
        _fail(f'[{section}.oauth2] says provider = "{oauth2.provider}", not "{provider}"',
              code=2)
    try:
        answer = signin.sign_in(oauth2, client_context(server.ca_file),
                                username=server.username or "", say=typer.echo,
                                open_browser=webbrowser.open if browser else None,
                                port=port, timeout=timeout)
        signin.save(oauth2, answer, datetime.now(UTC))
    except ModbotError as exc:
        _fail(str(exc))
    typer.echo(f"signed in; the tokens are in {oauth2.token_file} (readable by you alone)")
    shared = settings.smtp.oauth2
    if not smtp and settings.smtp.auth == "oauth2" and shared is not None \
            and shared.token_file == oauth2.token_file:
        typer.echo("the SMTP login uses the same tokens")


def main() -> None:
    app()
