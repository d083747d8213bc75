"""The setup and operations commands of ``modbot``: ``init``, ``health`` and ``auth``.

Registered on ``modbot.cli.app`` when that module imports this one; the conventions are the
same (thin wrappers, one sentence on stderr for an error, heavy imports inside the command).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from modbot.cli_base import _fail, _settings
from modbot.errors import ConfigError, ModbotError

app = typer.Typer(rich_markup_mode=None)


def _answer(metavar: str, help_text: str) -> Any:
    return typer.Option(metavar=metavar, show_default=False, help=help_text)


@app.command()
def init(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(
        metavar="FILE", show_default=False,
        help="File to write. Default: --config / $MODBOT_CONFIG, else ./modbot.toml.")] = None,
    non_interactive: Annotated[bool, typer.Option(
        "--non-interactive", help="Ask nothing: answers come from the options below.")] = False,
    name: Annotated[str | None, _answer("NAME", "Counselor's name, as it signs every "
                                                "reply.")] = None,
    email: Annotated[str | None, _answer("ADDRESS", "Counselor's address: replies come from "
                                                    "it, the digest goes to it.")] = None,
    contact: Annotated[str | None, _answer("CONTACT", "The confidential way to reach the "
                                                   "counselor (a URL or phone number).")] = None,
    imap_host: Annotated[str | None, _answer("HOST", "IMAP server of the inbox.")] = None,
    imap_user: Annotated[str | None, _answer("USER", "IMAP user name. Default: the "
                                                     "--email address.")] = None,
    smtp_host: Annotated[str | None, _answer("HOST", "SMTP server for replies. Default: the "
                                                     "--imap-host.")] = None,
    smtp_user: Annotated[str | None, _answer("USER", 'SMTP user name, "-" for none. Default: '
                                                     "the --imap-user.")] = None,
    security: Annotated[str | None, _answer("tls|starttls|none", "Connection security of "
                                            "both servers (none: this machine only). "
                                            "Default: tls.")] = None,
    directory: Annotated[str | None, _answer("FILE.csv", "Campus directory CSV "
                                             "(name,email,linkedin_url). Default: none.")] = None,
    database: Annotated[str | None, _answer("FILE|URL", "Database file or SQLAlchemy URL. "
                                            "Default: /var/lib/modbot/modbot.db.")] = None,
    mail_system: Annotated[str | None, _answer(
        "SYSTEM", "Which system receives the college's mail: microsoft365, google, server "
                  "(your own Postfix or other), proofpoint, mimecast, barracuda or cisco (a "
                  "gateway in front of Microsoft 365), or unknown. It decides whose verdict "
                  "modbot believes (docs/deployment.md).")] = None,
    tenant: Annotated[str | None, _answer(
        "TENANT-ID", "Microsoft 365 tenant id (a GUID: Entra admin center, Overview). Needed "
                     "for microsoft365; for a gateway, when it hands mail to Microsoft 365.")
    ] = None,
    gateway_hosts: Annotated[str | None, _answer(
        "HOST,...", "The gateway's inbound hosts, comma-separated (its MX records), for "
                    "proofpoint, barracuda and cisco.")] = None,
    authserv_ids: Annotated[str | None, _answer(
        "ID,...", "For server: the authserv-id your MX writes in Authentication-Results "
                  "(OpenDKIM's AuthservID). Default: none; modbot verifies DKIM itself.")
    ] = None,
) -> None:
    """Write a first configuration from a few questions (owner-only; never overwrites a file)."""
    from modbot import newconfig

    target = path or (ctx.obj or {}).get("config") or Path("modbot.toml")
    if target.exists():
        _fail(f"{target} already exists; modbot init never overwrites a configuration")
    given = {"name": name, "email": email, "contact": contact, "imap_host": imap_host,
             "imap_user": imap_user, "smtp_host": smtp_host, "smtp_user": smtp_user,
             "security": security, "directory": directory, "database": database,
             "mail_system": mail_system, "tenant": tenant, "gateway_hosts": gateway_hosts,
             "authserv_ids": authserv_ids}
    answers: dict[str, str] = {}
    missing: list[str] = []
    problems: list[str] = []
    for question in newconfig.QUESTIONS:
        option = "--" + question.key.replace("_", "-")
        value = given[question.key]
        if not newconfig.asked(question, answers):
            if value is not None:
                unused = (f"{option} does not apply to --mail-system "
                          f"{answers.get('mail_system', '')}")
                if non_interactive:
                    problems.append(unused)
                else:
                    typer.echo(f"note: {unused}; it is left out", err=True)
            answers[question.key] = ""
            continue
        default = newconfig.default_for(question, answers)
        if value is None and non_interactive:
            if default is None:
                missing.append(option)
                continue
            value = default
        if value is None:
            value = _ask(question, default, answers)
        else:  # given as an option: checked the same way, asked again if there is a terminal
            verdict = newconfig.check_answer(question.key, value, answers)
            if verdict.problem and non_interactive:
                problems.append(f"{option}: {verdict.problem}")
            elif verdict.problem:
                typer.echo(f"{option}: {verdict.problem}", err=True)
                value = _ask(question, default, answers)
            elif verdict.warning:
                typer.echo(f"note: {verdict.warning}", err=True)
        answers[question.key] = str(value).strip()
    if missing:
        _fail(f"--non-interactive needs {', '.join(missing)}", code=2)
    if problems:
        _fail("nothing was written:\n" + "\n".join(f"  - {p}" for p in problems), code=2)
    text = newconfig.render(answers)
    try:
        newconfig.check(text, target)
        newconfig.write(target, text)
    except ConfigError as exc:
        # Every answer was checked as it came, so this is rare; the answers are kept anyway.
        typer.echo(text)
        _fail(f"{exc}\nThe configuration above was not written; save it, correct it and "
              "run `modbot check` on it.", code=2)
    typer.echo(f"wrote {target} (readable by its owner only). Next:\n"
               f"  export {newconfig.IMAP_PASSWORD_ENV}=...   (and {newconfig.SMTP_PASSWORD_ENV} "
               "if the SMTP server needs a login)\n"
               f"  modbot --config {target} check\n"
               "modbot starts in shadow mode: it decides and records, and sends nothing, until "
               "[policy] mode says otherwise. `check` also reports which LinkedIn "
               "notifications of the last 30 days modbot can prove (docs/deployment.md).")


def _ask(question: Any, default: str | None, answers: dict[str, str]) -> str:
    """Ask ``question`` until the answer can be used; say at once what is wrong with one."""
    from modbot import newconfig

    prompt = question.prompt
    if question.choices:
        prompt = f"{prompt} [{'/'.join(question.choices)}]"
    while True:
        value = str(typer.prompt(prompt, default=default, show_default=bool(default))).strip()
        if question.choices and value not in question.choices:
            typer.echo(f"Please answer one of: {', '.join(question.choices)}", err=True)
            continue
        verdict = newconfig.check_answer(question.key, value, answers)
        if verdict.problem:
            typer.echo(f"  {verdict.problem}; please answer again", err=True)
            continue
        if verdict.warning:
            typer.echo(f"  note: {verdict.warning}", err=True)
        return value


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
    from modbot import config
    from modbot.store import Store, locate

    try:
        loaded = config.load((ctx.obj or {}).get("config"), resolve_secrets=False)
        url = loaded.database.url
        try:
            database = locate(url).file
        except ValueError:
            database = None  # Store.open says what is wrong with it
        if database is not None and not database.exists():
            _fail(f"unhealthy: there is no database at {database} yet")
        store = Store.open(url, migrate=False)
        try:
            last = store.last_good_poll(loaded.first.account)
        finally:
            store.close()
    except ModbotError as exc:  # exit 1, not 2: Docker reserves 2 in health checks
        _fail(f"unhealthy: {exc}")
    now = datetime.now(UTC)
    problem = health_problem(last, now, loaded.schedule.poll_seconds)
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
        metavar="PORT",
        help="Loopback port for the browser's answer (google, generic); 0: any free one.")] = 0,
    browser: Annotated[bool, typer.Option(
        "--browser/--no-browser", help="Also open the sign-in page in a browser here.")] = False,
    timeout: Annotated[float, typer.Option(
        metavar="SECONDS", help="Seconds to wait for the sign-in (at least 10).")] = 300,
) -> None:
    """Sign in once with Google, Microsoft 365 or another OAuth2 provider; save the tokens.

    Google and generic providers: open the printed address and sign in; the browser comes back
    to modbot on 127.0.0.1. Microsoft: open Microsoft's page on any device and type the code.
    """
    import webbrowser

    from modbot import signin
    from modbot.tls import client_context

    if not 0 <= port <= 65535:
        _fail(f"--port {port} is not a port: give 0 to 65535", code=2)
    if timeout < 10:
        _fail(f"--timeout {timeout:g} is too short: give at least 10 seconds", code=2)
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


