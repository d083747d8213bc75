"""Several real modbot daemons sharing one PostgreSQL database, for the failover test
(``tests/reliability/test_reliability_failover.py``) and ``bench/failover.py``.

A ``Cluster`` writes one configuration of several accounts (Dovecot users, one SMTP server),
starts ``python -m modbot --config FILE run`` as child processes, delivers invitations from
distinct directory people into the accounts' inboxes, kills, stops and resumes daemons, and asks
the database which daemon holds which account. ``StampedSmtp`` records when each reply arrived
and for which account, so that takeover times and duplicates are counted where mail arrives.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import parseaddr
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from modbot.lock import survey
from modbot.store import OutboxStatus, Store
from support import faults, servers

PASSWORD = "failover-password-4711"  # every account's, on a throwaway Dovecot on loopback
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the server accepted it
    counselor: str  # the reply's From: which account answered
    recipients: tuple[str, ...]


class StampedSmtp(servers.SmtpServer):
    """An SmtpServer that also notes when each message arrived, and from which counselor."""

    def __init__(self, mode: servers.SmtpMode, cert: object) -> None:
        super().__init__(mode, cert)  # type: ignore[arg-type]
        self.arrivals: list[Arrival] = []
        self._mutex = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        before = len(self.messages)
        answer = await super().handle_DATA(server, session, envelope)
        if len(self.messages) > before:
            header = BytesHeaderParser(policy=default_policy).parsebytes(
                envelope.original_content or b"")
            with self._mutex:
                self.arrivals.append(Arrival(time.monotonic(), parseaddr(str(header["From"]))[1],
                                             tuple(envelope.rcpt_tos)))
        return answer

    def since(self, moment: float) -> list[Arrival]:
        with self._mutex:
            return [a for a in self.arrivals if a.at >= moment]


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Outcome:
    invitations: int
    answered: int  # people who received exactly one reply
    lost: int  # people who received none and whose reply is not held as "may have been sent"
    duplicates: int  # people who received more than one
    uncertain: int  # replies held as "may have been sent" (a kill between claim and send)
    statuses: Counter[str] = field(default_factory=Counter)


class Cluster:
    """``accounts`` inboxes in one configuration, served by any number of daemons."""

    def __init__(self, work: Path, dovecot: servers.Dovecot, smtp: StampedSmtp, ca_file: Path,
                 database_url: str, *, accounts: int, people: int, tag: str = "fo",
                 poll_seconds: int = 30) -> None:
        self.work, self.smtp, self.url, self.ca_file = work, smtp, database_url, ca_file
        suffix = secrets.token_hex(3)
        self.users = [dovecot.add_user(f"{tag}{n}-{suffix}", PASSWORD) for n in range(accounts)]
        self.counselors = [f"counselor{n}@counsel.example.edu" for n in range(accounts)]
        self.accounts = [f"{u.username}@127.0.0.1" for u in self.users]
        self.crowd = faults.Crowd(people, seed=len(tag) + accounts)
        self.sent_to: dict[str, int] = {}  # person email -> account index
        self.daemons: list[Daemon] = []
        self._next = 0
        self._mutex = threading.Lock()  # invitations may be delivered from several threads
        directory = work / "directory.csv"
        directory.write_text(self.crowd.directory_csv(), encoding="utf-8")
        self.config = work / "modbot.toml"
        self.config.write_text(self._toml(directory, poll_seconds), encoding="utf-8")
        Store.open(database_url).close()  # migrated once, before daemons race to do it

    def _toml(self, directory: Path, poll_seconds: int) -> str:
        accounts = "".join(f"""
[[accounts]]
[accounts.counselor]
name = "Counselor {n}"
email = "{self.counselors[n]}"
confidential_contact = "{faults.CONTACT}"
[accounts.imap]
host = "127.0.0.1"
port = {user.port}
username = "{user.username}"
password_env = "MODBOT_IMAP_PASSWORD"
security = "tls"
ca_file = "{self.ca_file}"
timeout_seconds = 10
sent_folder = "Sent"
[accounts.smtp]
host = "127.0.0.1"
port = {self.smtp.port}
security = "tls"
ca_file = "{self.ca_file}"
timeout_seconds = 10
""" for n, user in enumerate(self.users))
        return f"""{accounts}
[database]
url = "{self.url}"

[policy]
mode = "auto"
trusted_authserv_ids = ["{faults.TRUSTED}"]
max_replies_per_hour = 10000
max_replies_per_day = 10000

[schedule]
poll_seconds = {poll_seconds}

[directory]
csv = "{directory}"

[logging]
level = "INFO"
"""

    # --- daemons -------------------------------------------------------------------------

    def start(self) -> Daemon:
        log = self.work / f"daemon-{len(self.daemons)}.log"
        env = {**os.environ, "MODBOT_IMAP_PASSWORD": PASSWORD}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "modbot", "--config", str(self.config), "run"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=ROOT, preexec_fn=servers._die_with_parent)
        daemon = Daemon(process, log)
        self.daemons.append(daemon)
        return daemon

    def live(self) -> list[Daemon]:
        return [d for d in self.daemons if d.alive]

    def kill(self, daemon: Daemon) -> None:
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait()

    def pause(self, daemon: Daemon) -> None:
        daemon.process.send_signal(signal.SIGSTOP)
        daemon.stopped = True

    def resume(self, daemon: Daemon) -> None:
        daemon.process.send_signal(signal.SIGCONT)
        daemon.stopped = False

    def close(self) -> None:
        for daemon in self.daemons:
            if daemon.alive:
                with contextlib.suppress(ProcessLookupError):
                    daemon.process.send_signal(signal.SIGCONT)
                    daemon.process.send_signal(signal.SIGTERM)
        for daemon in self.daemons:
            try:
                daemon.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait()

    def holders(self) -> dict[int, int]:
        """Account index -> the pid of the daemon holding it (held accounts only)."""
        found = survey(self.url, self.accounts)
        assert found is not None
        out = {}
        for index, account in enumerate(self.accounts):
            holder = found.holders.get(account)
            if holder is not None:
                out[index] = int(holder.name.rsplit(" ", 1)[1])
        return out

    def wait_held(self, timeout: float, *, by: set[int] | None = None) -> dict[int, int]:
        """Wait until every account is held (by one of the pids ``by``, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            held = self.holders()
            if len(held) == len(self.accounts) and (by is None or set(held.values()) <= by):
                return held
            if time.monotonic() > deadline:
                return held
            time.sleep(0.5)

    def wait_spread(self, pids: set[int], timeout: float) -> dict[int, int] | None:
        """Wait until every account is held by one of ``pids`` and no one of them holds two
        more than another; the holding then, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            held = self.holders()
            counts = [list(held.values()).count(pid) for pid in pids]
            if len(held) == len(self.accounts) and set(held.values()) <= pids \
                    and max(counts) - min(counts) <= 1:
                return held
            time.sleep(0.5)
        return None

    # --- mail ----------------------------------------------------------------------------

    def deliver(self, account: int | None = None) -> int:
        """Deliver the next person's invitation to ``account`` (round robin if None)."""
        with self._mutex:
            index = self._next
            self._next += 1
        account = index % len(self.users) if account is None else account
        person = self.crowd.people[index]
        client = self.users[account].connect()
        try:
            client.append("INBOX", faults.invitation(person, serial=index))
        finally:
            client.logout()
        with self._mutex:
            self.sent_to[person.email] = account
        return account

    def served_after(self, account: int, moment: float) -> float | None:
        """When ``account`` next sent a reply after ``moment``, or None."""
        counselor = self.counselors[account]
        times = [a.at for a in self.smtp.since(moment) if a.counselor == counselor]
        return min(times) if times else None

    def answered(self) -> int:
        got = Counter(r for a in self.smtp.since(0) for r in a.recipients)
        with self._mutex:
            return sum(1 for person in self.sent_to if got[person] >= 1)

    def outcome(self) -> Outcome:
        got = Counter(r for a in self.smtp.since(0) for r in a.recipients)
        store = Store.open(self.url, migrate=False)
        try:
            statuses: Counter[str] = Counter()
            uncertain = 0
            for account in self.accounts:
                for status in OutboxStatus:
                    count = len(store.items(account, status))
                    if count:
                        statuses[status.value] += count
                uncertain += len(store.items(account, OutboxStatus.UNCERTAIN))
        finally:
            store.close()
        with self._mutex:
            people = list(self.sent_to)
        missing = sum(1 for p in people if got[p] == 0)
        return Outcome(
            invitations=len(people),
            answered=sum(1 for p in people if got[p] == 1),
            lost=max(missing - uncertain, 0),
            duplicates=sum(1 for p in people if got[p] > 1),
            uncertain=uncertain, statuses=statuses)
