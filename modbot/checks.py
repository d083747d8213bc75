"""``modbot check``: every problem of an installation, one line each, with what to do.

The checks run in order (configuration, database, then for each account its templates,
directory, IMAP server and SMTP server) and each one runs whatever the ones before found, so a
single run lists everything to fix. Nothing is created or changed: a database that does not
exist is not created (the folder it would go in is checked instead), an existing one is only
read, the IMAP folder is opened read-only (EXAMINE), and the SMTP server is only greeted and
logged in to. No traceback reaches the admin: an unexpected failure is one more line.

Once logged in, the check surveys the last 30 days of the folder (``survey_mail``): every
LinkedIn notification is judged as a poll would judge it, and ``modbot.survey`` reports what
the gate proves, why not the rest, and the trust settings the mail suggests. Messages are read
with ``BODY.PEEK`` in the folder opened read-only, so not even ``\\Seen`` changes.

Each line starts with its level: ``ok``, ``note`` (worth knowing), ``warning`` (works, but
should be fixed) or ``problem`` (modbot will not work as configured).
"""

from __future__ import annotations

import datetime
import os
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from modbot.errors import ConfigError, ModbotError

if TYPE_CHECKING:
    from modbot.config import Account, Config
    from modbot.mailbox import Mailbox

Say = Callable[[str], None]
DnsLookup = Callable[[bytes], bytes | None]


class Report:
    """Prints findings as they come and counts them."""

    def __init__(self, say: Say, indent: str = "") -> None:
        self.say = say
        self.indent = indent
        self.problems = 0
        self.warnings = 0

    def __call__(self, level: str, text: str) -> None:
        if level == "problem":
            self.problems += 1
        elif level == "warning":
            self.warnings += 1
        self.say(f"{self.indent}{level}: {text}")

    def progress(self, text: str) -> None:
        """A line saying what is being waited for (a server that may take its time)."""
        self.say(f"{self.indent}{text}")


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _guarded(report: Report, area: str, check: Callable[[], None]) -> None:
    """Run one check; whatever escapes it becomes one line and the next check runs."""
    try:
        check()
    except ModbotError as exc:
        report("problem", f"{area}: {exc}")
    except Exception as exc:  # a bug must not hide the checks after it
        report("problem", f"{area}: could not be checked ({type(exc).__name__}: {exc})")


# --- configuration --------------------------------------------------------------------------

def _mode_words(settings: Account) -> str:
    policy = settings.policy
    words = {"shadow": "shadow mode (decides and records, sends nothing)",
             "review": "review mode (replies wait for approval)",
             "auto": "auto mode (replies are sent)"}[policy.mode.value]
    if policy.modes:
        words += "; " + ", ".join(f"{kind.value}: {mode.value}"
                                  for kind, mode in policy.modes.items())
    if policy.redirect_all_to:
        words += f"; every reply goes to {policy.redirect_all_to}"
    return words


def load_config(path: Path | None, account: str | None,
                report: Report) -> tuple[Config | None, bool]:
    """The configuration, and whether its secrets could be read.

    Without its secrets the checks still run, and the servers are reached without logging in.
    """
    from modbot import config

    try:
        loaded = config.load(path, resolve_secrets=False)
        if account:
            loaded = loaded.only(account)
    except config.ConfigProblems as exc:
        for problem in exc.problems:
            report("problem", f"configuration {exc.source}: {problem}")
        return None, False
    except ConfigError as exc:
        report("problem", str(exc))
        return None, False
    shown = Path(path or os.environ.get(config.CONFIG_ENV) or "").absolute()
    count = len(loaded.accounts)
    report("ok", f"configuration {shown}: {_mode_words(loaded.first)}; "
                 f"{count} account{'s' if count != 1 else ''}")
    try:
        with_secrets = config.load(path)
        if account:
            with_secrets = with_secrets.only(account)
    except config.ConfigProblems as exc:
        for problem in exc.problems:
            report("problem", f"configuration: {problem} (the servers are checked without "
                              "logging in)")
        return loaded, False
    return with_secrets, True


# --- database -------------------------------------------------------------------------------

def check_database(url: str, report: Report) -> None:
    """Whether the database can be opened or created by this user; never creates it."""
    from modbot.store import locate

    try:
        where = locate(url)
    except ValueError:
        report("problem", f"database: {url!r} is not a database URL — fix [database] url")
        return
    if where.backend != "sqlite":
        _check_server_database(url, report)
        return
    if where.file is None:
        report("note", "database: in memory; everything is forgotten when modbot stops")
        return
    _check_sqlite_file(where.file, report)


def _check_sqlite_file(path: Path, report: Report) -> None:
    user = _user()
    if not path.exists():
        folder = path.parent
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            report("problem", f"database: cannot create {path}: {existing} is not writable by "
                              f"user {user} — create the folder for that user (sudo install -d "
                              f"-o {user} -m 700 {folder}) or set [database] url elsewhere")
        else:
            report("note", f"database: {path} does not exist yet; modbot creates it "
                           "(owner-only) when it starts")
        return
    if not path.is_file():
        report("problem", f"database: {path} is not a file — fix [database] url")
        return
    if not os.access(path, os.R_OK | os.W_OK):
        report("problem", f"database: {path} is not readable and writable by user {user} — "
                          f"sudo chown {user} {path}")
        return
    if not os.access(path.parent, os.W_OK | os.X_OK):
        report("problem", f"database: the folder {path.parent} is not writable by user {user}, "
                          f"and SQLite keeps its journal beside the file — sudo chown {user} "
                          f"{path.parent}")
        return
    from modbot.store import HEAD_REVISION

    try:
        # Read-only: the check must not change the file, whatever it holds.
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = None
            if "alembic_version" in tables:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
        finally:
            connection.close()
    except sqlite3.Error as exc:
        report("problem", f"database: {path} cannot be read as SQLite ({exc}) — move it away "
                          "and let modbot create a new one, or fix [database] url")
        return
    if not tables:
        report("note", f"database: {path} is empty; modbot fills it when it starts")
    elif revision is None:
        report("problem", f"database: {path} is not modbot's (no schema version) — fix "
                          "[database] url")
    elif revision != HEAD_REVISION:
        report("note", f"database: {path} will be upgraded when modbot starts "
                       "(`modbot db upgrade` does it now)")
    else:
        report("ok", f"database: {path}, up to date")


def _check_server_database(url: str, report: Report) -> None:
    from modbot.errors import StoreError
    from modbot.store import HEAD_REVISION, Store

    store = Store.open(url, migrate=False)  # creates nothing on a server
    try:
        revision = store.revision()
    except StoreError as exc:
        report("problem", f"database: cannot connect ({exc}) — check [database] url and "
                          "that the database server lets this machine in")
        return
    finally:
        store.close()
    if revision == HEAD_REVISION:
        report("ok", "database: reachable, up to date")
    else:
        report("note", "database: reachable; its tables are created or upgraded when modbot "
                       "starts (`modbot db upgrade` does it now)")


# --- templates and directory ----------------------------------------------------------------

def check_templates(settings: Account, secrets: bool, report: Report) -> None:
    from modbot.errors import TemplateError
    from modbot.render import DEFAULT_FORBIDDEN, Templates, lint

    folder = settings.templates.dir
    where = str(folder) if folder else "the shipped templates"
    try:
        templates = Templates.load(folder)
    except TemplateError as exc:
        todo = ("copy config/templates from modbot's source there, or fix [templates] dir"
                if "does not exist" in str(exc) or "lacks" in str(exc) else
                "fix that line; `modbot texts` shows the result")
        report("problem", f"templates: {exc} — {todo}")
        return
    forbidden = settings.templates.forbidden_phrases
    problems = lint(templates, settings.counselor,
                    forbidden_phrases=DEFAULT_FORBIDDEN if forbidden is None else forbidden)
    for problem in problems:
        report("problem", f"templates: {problem.rstrip('.')} — edit it in {where}")
    if not problems:
        report("ok", f"templates: {where} pass every check")


def check_directory(settings: Account, secrets: bool, report: Report) -> None:
    from modbot.directory.combined import CombinedDirectory, open_directory
    from modbot.directory.csv import CsvDirectory
    from modbot.errors import DirectoryError

    chosen = settings.directory
    if chosen.csv is None and chosen.ldap_url is None:
        report("note", "directory: none configured; every invitation is held for the counselor "
                       "with the reply to paste ([directory] csv or ldap_url)")
        return
    try:
        directory = open_directory(chosen)
    except DirectoryError as exc:
        todo = ("export the campus directory there, or fix [directory] csv"
                if "cannot read" in str(exc) else "correct the export")
        report("problem", f"directory: {exc} — {todo}")
        return
    assert directory is not None
    for warning in directory.warnings:
        report("warning", f"directory: {warning}")
    parts = directory.parts if isinstance(directory, CombinedDirectory) else (directory,)
    for part in parts:
        if isinstance(part, CsvDirectory) and part.people:
            report("ok", f"directory: {chosen.csv} lists {part.people} "
                         f"{'person' if part.people == 1 else 'people'}")
    if chosen.ldap_url is not None:
        report.progress(f"checking LDAP {chosen.ldap_host}:{chosen.ldap_port}…")
        try:
            directory.check()
        except DirectoryError as exc:
            report("problem", f"directory: {exc} — check the ldap_ keys of [directory]")
            return
        report("ok", f"directory: LDAP {chosen.ldap_host} answers")


# --- mail servers ---------------------------------------------------------------------------

def check_imap(settings: Account, secrets: bool, report: Report, *,
               since: datetime.date | None = None, dkim_lookup: DnsLookup | None = None) -> None:
    """Log in, open the folder read-only, and survey its mail since ``since`` (when given)."""
    from modbot.advice import explain
    from modbot.errors import MailboxError
    from modbot.mailbox import Mailbox
    from modbot.tls import client_context

    imap = settings.imap
    report.progress(f"checking IMAP {imap.host}:{imap.port}…")
    login = secrets or imap.auth == "oauth2"
    server = imap if login else imap.model_copy(update={"password": None})
    try:
        with Mailbox(server, client_context(imap.ca_file)) as mailbox:
            if not login:
                report("note", f"IMAP: {imap.host}:{imap.port} answers; the login was not "
                               "tried without the password")
                return
            state = mailbox.select(imap.folder, readonly=True)
            idle = imap.idle and mailbox.supports_idle()
            report("ok", f"IMAP: logged in as {imap.username}; {imap.folder} holds "
                         f"{state.exists} message{'s' if state.exists != 1 else ''}")
            if imap.idle and not idle:
                report("note", "IMAP: the server offers no IDLE; new mail is found every "
                               f"{settings.schedule.poll_seconds} s ([schedule] poll_seconds)")
            if since is not None:
                _guarded(report, "mail survey", partial(
                    survey_mail, mailbox, settings, since, dkim_lookup, report))
    except MailboxError as exc:
        report("problem", f"IMAP: {explain(exc, settings)}")


# --- the last 30 days of mail --------------------------------------------------------------------

class RememberedDns:
    """The DKIM key lookup, asked once per name: the survey judges many copies of few keys.

    A lookup that failed (no answer at all) fails again at once for every later name, as the
    gate itself stops asking once DNS has failed.
    """

    def __init__(self, lookup: DnsLookup) -> None:
        self._lookup = lookup
        self._answers: dict[bytes, bytes | None] = {}
        self._failed: Exception | None = None

    def __call__(self, name: bytes) -> bytes | None:
        if self._failed is not None:
            raise self._failed
        if name not in self._answers:
            try:
                self._answers[name] = self._lookup(name)
            except Exception as exc:
                self._failed = exc
                raise
        return self._answers[name]


def survey_mail(mailbox: Mailbox, settings: Account, since: datetime.date,
                dkim_lookup: DnsLookup | None, report: Report) -> None:
    """Judge the LinkedIn notifications that arrived since ``since`` as a poll would, and
    report what the gate proves, what it cannot and what configuration the copies suggest.

    The folder is already open read-only; headers and bodies are fetched with ``BODY.PEEK``,
    so no flag changes. Headers are read for every message, bodies only for the newest
    ``MAX_NOTIFICATIONS`` that claim to be LinkedIn's.
    """
    from modbot import survey
    from modbot.dns import txt_lookup

    folder = settings.imap.folder
    report.progress(f"reading the mail of the last {survey.DAYS} days in {folder}…")
    uids = sorted(mailbox.uids_since(since), reverse=True)[:survey.MAX_MESSAGES]
    headers: dict[int, bytes] = {}
    unread = 0
    for start in range(0, len(uids), 500):
        for uid, summary in mailbox.fetch_summaries(uids[start:start + 500]).items():
            if not survey.claims_linkedin(summary.header):
                continue
            if summary.header_truncated or summary.size > settings.imap.max_message_bytes:
                unread += 1
            else:
                headers[uid] = summary.header
    newest = sorted(headers, reverse=True)
    unread += max(len(newest) - survey.MAX_NOTIFICATIONS, 0)
    newest = newest[:survey.MAX_NOTIFICATIONS]
    suggestion = survey.suggest(survey.stamps(headers[uid]) for uid in newest)
    current = settings.policy
    suggested = suggestion.policy(current) if suggestion.adds_to(current) else None
    lookup = RememberedDns(dkim_lookup or txt_lookup)
    findings: list[survey.Finding] = []
    for start in range(0, len(newest), 20):  # a few messages in memory at a time
        for raw in mailbox.fetch_messages(newest[start:start + 20]).values():
            finding = survey.judge(raw, current, lookup, suggested)
            if finding is not None:
                findings.append(finding)
    level, headline, lines = survey.report(survey.Survey(
        folder, len(uids), tuple(findings), current, suggestion, unread))
    report(level, headline)
    for line in lines:
        report.progress(line)


def check_smtp(settings: Account, secrets: bool, report: Report) -> None:
    import asyncio

    from modbot.advice import explain
    from modbot.errors import SendError
    from modbot.outbox import Sender
    from modbot.tls import client_context

    smtp = settings.smtp
    report.progress(f"checking SMTP {smtp.host}:{smtp.port}…")
    login = bool(smtp.username) and (secrets or smtp.auth == "oauth2")
    server = smtp if login or not smtp.username else smtp.model_copy(update={"username": None})

    async def greet() -> None:
        async with Sender(server, client_context(smtp.ca_file)):
            pass

    try:
        asyncio.run(greet())
    except SendError as exc:
        report("problem", f"SMTP: {explain(exc, settings)}")
        return
    if login:
        report("ok", f"SMTP: logged in as {smtp.username}")
    elif smtp.username:
        report("note", f"SMTP: {smtp.host}:{smtp.port} answers; the login was not tried "
                       "without the password")
    else:
        report("ok", f"SMTP: {smtp.host}:{smtp.port} answers (no login configured)")


# --- all of it ------------------------------------------------------------------------------

def run(path: Path | None, account: str | None, say: Say, *,
        today: datetime.date | None = None, dkim_lookup: DnsLookup | None = None) -> int:
    """Run every check, print each finding with ``say``; the exit status (0, 1, or 2 for a
    configuration that cannot be read at all).

    With ``today``, the mail of the last 30 days before it is surveyed in every inbox, its
    DKIM keys looked up with ``dkim_lookup`` (default: DNS, as the daemon does).
    """
    from modbot.survey import DAYS

    since = today - datetime.timedelta(days=DAYS) if today is not None else None
    report = Report(say)
    if os.geteuid() == 0:
        report("note", "checking as root, who may read and write anything: run the check as the "
                       "user modbot runs as to see what it sees (README, \"Into production\")")
    loaded, secrets = load_config(path, account, report)
    if loaded is None:
        say("fix the configuration first; the other checks need it")
        return 2
    _guarded(report, "database", partial(check_database, loaded.database.url, report))
    accounts = loaded.accounts
    failed = report.problems > 0
    for one in accounts:
        own = report
        if len(accounts) > 1:
            say(f"{one.account}:")
            own = Report(say, "  ")
        imap = partial(check_imap, since=since, dkim_lookup=dkim_lookup)
        for area, check in (("templates", check_templates), ("directory", check_directory),
                            ("IMAP", imap), ("SMTP", check_smtp)):
            _guarded(own, area, partial(check, one, secrets, own))
        if own is not report:
            say(f"  {one.account}: " + ("all good" if not own.problems else
                                        f"{own.problems} problem{'s' if own.problems > 1 else ''}"))
            failed = failed or own.problems > 0
            report.warnings += own.warnings
    failed = failed or report.problems > 0
    if not failed:
        warned = f" ({report.warnings} warning{'s' if report.warnings > 1 else ''})" \
            if report.warnings else ""
        say(f"all good{warned}" if len(accounts) == 1 else f"every account is ready{warned}")
        return 0
    say("modbot will not work as configured until the problems above are fixed")
    return 1

