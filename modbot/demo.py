"""``modbot demo``: one real poll against embedded servers seeded with realistic notifications.

The demo writes a configuration, a directory CSV and a database into a scratch directory, starts
the embedded IMAP (pymap) and SMTP (aiosmtpd) servers on loopback, and runs the same
``poll.Poller`` the daemon runs: imapclient and aiosmtplib over real sockets, nothing mocked.
Then it prints what modbot did, polls a second time to show that nothing is sent twice, and
prints the digest the counselor would get. It never listens beyond loopback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from pathlib import Path

import typer

from modbot import config, digest, words
from modbot.demo_servers import DemoServers
from modbot.poll import Context, PollReport, poll_once
from modbot.render import make_message_id

USER, PASSWORD, PASSWORD_ENV = "counselor", "demo-password", "MODBOT_DEMO_IMAP_PASSWORD"
AUTHSERV = "mx.counsel.example.edu"
AUTH_PASS = (
    f"{AUTHSERV}; dkim=pass header.i=@linkedin.com header.s=d2048-202308-00 "
    "header.b=AbCdEfGh; spf=pass (domain of s-3kd7x@bounce.linkedin.com designates "
    "108.174.3.12 as permitted sender) smtp.mailfrom=s-3kd7x@bounce.linkedin.com; "
    "dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=linkedin.com"
)
# LinkedIn's signature as the server found it: the fields it signs (LINKEDIN.md section 1);
# its b= begins with the header.b the verdict above names. The demo server verifies nothing.
LINKEDIN_SIGNATURE = (
    "v=1; a=rsa-sha256; c=relaxed/relaxed; d=linkedin.com; s=d2048-202308-00; "
    "h=From:Subject:MIME-Version:Content-Type:To:Date:X-LinkedIn-Class:X-LinkedIn-Template:"
    "X-LinkedIn-fbl; bh=ZGVtbyBib2R5IGhhc2g=; b=AbCdEfGhZGVtbyBzaWduYXR1cmU="
)
AUTH_FAIL = (
    f"{AUTHSERV}; dkim=none (message not signed); spf=fail (domain of "
    "security@linnkedin.com does not designate 203.0.113.9 as permitted sender) "
    "smtp.mailfrom=security@linnkedin.com; dmarc=fail (p=NONE) header.from=linnkedin.com"
)
DIRECTORY = """name,email,linkedin_url
Jordan Rivera,jrivera@students.example.edu,https://www.linkedin.com/in/jordan-rivera-42
Sam Okafor,sokafor@students.example.edu,
Alex Chen,achen@students.example.edu,https://www.linkedin.com/in/alex-chen-7
"""
CONFIG = """# Written by `modbot demo`: embedded servers on loopback, plain text allowed there only.
[counselor]
name = "Dana Whitfield, Career Services"
email = "counselor@counsel.example.edu"
confidential_contact = "https://counsel.example.edu/appointments or 555-0100"

[imap]
host = "127.0.0.1"
port = {imap_port}
username = "{user}"
password_env = "{password_env}"
security = "none"
folder = "INBOX"
sent_folder = "Sent"
timeout_seconds = 10

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
timeout_seconds = 10

[database]
url = "sqlite:///{db}"

[policy]
mode = "auto"
trusted_authserv_ids = ["{authserv}"]
look_back_days = 7

[directory]
csv = "directory.csv"
"""


def _notification(*, sender: str, subject: str, template: str, text: str, html: str,
                  auth: str, now: datetime, reply_to: str | None = None,
                  extra: dict[str, str] | None = None) -> bytes:
    """A notification in LinkedIn's packaging: multipart/alternative, QP, Feedback-ID."""
    message = EmailMessage()
    message["Authentication-Results"] = auth
    message["From"] = sender
    message["To"] = "Dana Whitfield <counselor@counsel.example.edu>"
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain="ltx1-app1234.prod.linkedin.com")
    message["X-LinkedIn-Template"] = template
    message["Feedback-ID"] = f"{template}:linkedin"
    if reply_to:
        message["Reply-To"] = reply_to
    for name, value in (extra or {}).items():
        message[name] = value
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    if auth != AUTH_PASS:
        return message.as_bytes()
    # The signature the receiving server reports on, folded as a signer folds it: the email
    # package would fold its long tags into encoded words, which no signer writes.
    signature = ";\n\t".join(LINKEDIN_SIGNATURE.split("; "))
    return f"DKIM-Signature: {signature}\n".encode() + message.as_bytes()


def seed_messages(now: datetime) -> list[bytes]:
    """The demo inbox: what a counselor's week of LinkedIn mail looks like, plus noise."""
    jordan = "https://www.linkedin.com/comm/in/jordan-rivera-42?midToken=AQE&trk=eml-{t}-hero"
    accept = ("https://www.linkedin.com/comm/mynetwork/invite-accept/invitationId/"
              "7012345678901234567/?trk=eml-{t}-accept")
    invitation = "email_m2m_invite_single_01"
    reminder = "email_m2m_invite_reminder_02"
    messages = [
        _notification(
            sender="Jordan Rivera <invitations@linkedin.com>",
            subject="I want to connect", template=invitation, auth=AUTH_PASS, now=now,
            text=(f"Hi Dana,\nI'd like to join your LinkedIn network.\n\nJordan Rivera\n"
                  f"Economics student at Example State\n\nAccept: {accept.format(t=invitation)}"
                  f"\n\nView Jordan Rivera's profile: {jordan.format(t=invitation)}\n\n"
                  "This email was intended for Dana Whitfield (Career Counselor)."),
            html=(f'<h3><a href="{jordan.format(t=invitation)}">Jordan Rivera</a></h3>'
                  "<p>Economics student at Example State</p>"
                  f'<a href="{accept.format(t=invitation)}">Accept</a>'),
        ),
        _notification(
            sender="Sam Okafor <inmail-hit-reply@linkedin.com>",
            subject="Sam Okafor sent you a message", template="email_member_message_v2",
            auth=AUTH_PASS, now=now, reply_to="Sam Okafor <c0ffee42-9d1b-4e5a@reply.linkedin.com>",
            text=("Sam Okafor\nCould we talk about my internship offer?\n\nReply: "
                  "https://www.linkedin.com/comm/messaging/thread/2-abc/?trk=eml-"
                  "email_member_message_v2-reply"),
            html="<p><b>Sam Okafor</b></p><p>Could we talk about my internship offer?</p>",
        ),
        _notification(
            sender="Priya Natarajan <invitations@linkedin.com>",
            subject="Priya Natarajan wants to connect", template=invitation, auth=AUTH_PASS,
            now=now,
            text=("Hi Dana,\nI'd like to join your LinkedIn network.\n\nPriya Natarajan\n"
                  "Biology student\n\nView Priya Natarajan's profile: "
                  "https://www.linkedin.com/comm/in/priya-n-1?trk=eml-"
                  f"{invitation}-hero"),
            html="<h3>Priya Natarajan</h3><p>Biology student</p>",
        ),
        _notification(
            sender="LinkedIn Security <security@linnkedin.com>",
            subject="Your account will be suspended", template="security_alert",
            auth=AUTH_FAIL, now=now,
            text="Verify your account now: https://linkedin-security.net/verify",
            html='<a href="https://linkedin-security.net/verify">Verify</a>',
        ),
        _notification(
            sender="LinkedIn Job Alerts <jobalerts-noreply@linkedin.com>",
            subject="12 new jobs for career counselor", template="email_job_alert_digest_01",
            auth=AUTH_PASS, now=now,
            text="Career Counselor - Example College\nhttps://www.linkedin.com/comm/jobs/view/1",
            html='<a href="https://www.linkedin.com/comm/jobs/view/1">Career Counselor</a>',
        ),
        _notification(
            sender="Jordan Rivera <invitations@linkedin.com>",
            subject="Jordan Rivera's invitation is awaiting your response", template=reminder,
            auth=AUTH_PASS, now=now,
            text=(f"Jordan Rivera is waiting for your response.\n\nAccept: "
                  f"{accept.format(t=reminder)}\n\nView Jordan Rivera's profile: "
                  f"{jordan.format(t=reminder)}"),
            html=f'<h3>Jordan Rivera</h3><a href="{accept.format(t=reminder)}">Accept</a>',
        ),
    ]
    plain = EmailMessage()
    plain["From"] = "Registrar <registrar@example.edu>"
    plain["To"] = "counselor@counsel.example.edu"
    plain["Subject"] = "Spring calendar"
    plain["Date"] = format_datetime(now)
    plain["Message-ID"] = make_msgid(domain="example.edu")
    plain.set_content("The spring calendar is attached.")
    messages.insert(2, plain.as_bytes())
    return messages


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True, mode=0o700)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="modbot-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _show_poll(title: str, report: PollReport) -> None:
    typer.secho(f"\n== {title} ==", bold=True)
    typer.echo(f"{words.plural(report.new_messages, 'new email')}, "
               f"{report.candidates} from LinkedIn or pretending to be, "
               f"{words.plural(len(report.sent), 'reply', 'replies')} sent")
    for item in report.handled:
        who = f" from {item.person}" if item.person else ""
        to = f" to {item.recipient}" if item.recipient else ""
        typer.echo(f"  {words.kind_label(item.kind)}{who}: "
                   f"{words.action(item.action, item.status)}{to}")
        if item.reasons:
            typer.echo(f"      why: {item.reasons[0]}")
    for error in report.errors:
        typer.echo(f"  problem: {error}")


async def run_demo(keep: Path | None = None) -> int:
    """Run the demo; return the process exit code.

    Its clock ends at the present: the mail arrives, the first poll runs five minutes before
    the demo started and the second one two minutes before, and the digest is written at the
    start, so `modbot status` on the kept data tells how long ago the last poll was.
    """
    now = datetime.now(UTC)
    first_poll, second_poll = now - timedelta(minutes=5), now - timedelta(minutes=2)
    with _workdir(keep) as work:
        (work / "directory.csv").write_text(DIRECTORY, encoding="utf-8")
        messages = seed_messages(first_poll - timedelta(minutes=30))
        os.environ[PASSWORD_ENV] = PASSWORD
        async with DemoServers(username=USER, password=PASSWORD, messages=messages,
                               folders=["Sent"]) as servers:
            config_path = work / "modbot.toml"
            config_path.write_text(CONFIG.format(
                imap_port=servers.imap_port, smtp_port=servers.smtp_port, user=USER,
                password_env=PASSWORD_ENV, db=work / "modbot.db", authserv=AUTHSERV,
            ), encoding="utf-8")
            settings = config.load(config_path).first
            ctx = Context.build(settings, dkim_lookup=None)
            typer.secho(f"modbot demo: IMAP 127.0.0.1:{servers.imap_port} (pymap), "
                        f"SMTP 127.0.0.1:{servers.smtp_port} (aiosmtpd), data in {work}",
                        bold=True)
            flags_before = servers.inbox_flags()
            first = await poll_once(ctx, first_poll)
            _show_poll("First poll", first)
            typer.secho("\n== What the SMTP server received ==", bold=True)
            for mail in servers.received:
                parsed = message_from_bytes(mail.data, policy=default_policy)
                assert isinstance(parsed, EmailMessage)
                body = parsed.get_body(preferencelist=("plain",))
                typer.echo(f"To: {parsed['To']}\nSubject: {parsed['Subject']}\n"
                           f"Auto-Submitted: {parsed['Auto-Submitted']}\n")
                if body is not None:
                    typer.echo(body.get_content().rstrip() + "\n" + "-" * 60)
            second = await poll_once(ctx, second_poll)
            _show_poll("Second poll (nothing new, nothing sent twice)", second)
            unchanged = all(
                ("\\Seen" in flags) == ("\\Seen" in flags_before.get(uid, ()))
                for uid, flags in servers.inbox_flags().items())
            typer.echo("Read and unread marks in the inbox left as they were: "
                       f"{'yes' if unchanged else 'NO'}")
            data = digest.gather(ctx.store, settings, now)  # after both polls
            weekly = digest.build(data, ctx.templates, settings.counselor, now=now,
                                  message_id=make_message_id(settings.counselor.domain))
            body = weekly.get_body(preferencelist=("plain",))
            typer.secho("\n== The counselor's digest (preview) ==", bold=True)
            if body is not None:
                typer.echo(body.get_content())
            ctx.store.close()
            ok = unchanged and len(second.sent) == 0 and not first.errors
        os.environ.pop(PASSWORD_ENV, None)
    return 0 if ok else 1
