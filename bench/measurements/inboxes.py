"""The benchmark's measurement `inboxes`: what one daemon costs as its inboxes grow in number.

For each size (1, 50 and 200 inboxes; 1, 5 and 20 in ``--quick``) one daemon runs over that
many empty Dovecot inboxes in a process of its own (``daemon_inboxes.py``: ``run_daemon`` with a
configuration of as many ``[[accounts]]``, IDLE on, auto mode, the aiosmtpd sink, one SQLite
store in WAL mode, the 1,000-person directory). Measured from outside, in ``/proc``:

- the daemon's resident set size once every inbox has polled and waits in IDLE, its threads,
  and the IMAP connections it holds (its TCP sockets connected to Dovecot's port);
- the CPU (user + system) the daemon process spends while nothing arrives, as a share of one
  core, over ``inboxes_quiet_seconds`` for the largest size (30 s for the others; 20 s in
  ``--quick``), minute by minute when the window is longer than two; Dovecot's own over the
  same window;
- arrival to reply sent: an invitation delivered into a random inbox (maildir, as a delivery
  agent would) until the store records its reply as sent, at irregular gaps, p95.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import corpus
from environment import Environment, User
from framework import BENCH, Figure, Sizes, median, p95, perf, progress
from support import servers

from modbot.store import OutboxStatus, Store

_INVITATION_ID = b"7012345678901234567"
_TICKS = os.sysconf("SC_CLK_TCK")
_START_TIMEOUT = 600.0
_NO_REPLY = 30.0  # s after which an arrival counts as not answered


@dataclass
class Run:
    """What one daemon over ``inboxes`` inboxes gave."""

    inboxes: int
    polled: float = 0.0  # s from run_daemon to every inbox's first poll done
    idling: float = 0.0  # s from run_daemon to every inbox waiting in IDLE
    process_start: float = 0.0  # s from the process's start to every inbox idling
    rss: float = 0.0  # MB, every inbox idling
    rss_after: float = 0.0  # MB, after the arrivals
    hwm: float = 0.0  # MB, the peak resident set size
    threads: int = 0
    imap: int = 0  # IMAP connections the daemon holds
    fds: int = 0
    quiet_seconds: float = 0.0
    cpu: float = 0.0  # % of one core over the quiet window
    cpu_minutes: list[float] = field(default_factory=list)  # % of one core, minute by minute
    dovecot_cpu: float = 0.0  # % of one core, Dovecot's processes over the same window
    latencies: list[float] = field(default_factory=list)
    stop_seconds: float = 0.0


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def _mb(value: str) -> float:
    return int(value.split()[0]) / 1024


def _cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (and of its waited-for children, if asked)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command's closing parenthesis: state is fields[0], utime fields[11], stime
    # [12], cutime [13], cstime [14].
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def _dovecot_cpu(master: int) -> float:
    """CPU seconds of Dovecot's master and every process it runs (imap, imap-login, auth...)."""
    total = _cpu_seconds(master, children=True)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == master:
                total += (int(fields[11]) + int(fields[12])) / _TICKS
        except (OSError, ValueError, IndexError):
            continue
    return total


def _connections(pid: int, port: int) -> tuple[int, int]:
    """(established TCP connections of ``pid`` to ``port``, open file descriptors)."""
    inodes = set()
    fds = 0
    for entry in os.scandir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            remote_port = int(parts[2].rsplit(":", 1)[1], 16)
            if parts[3] == "01" and remote_port == port and parts[9] in inodes:
                count += 1
    return count, fds


class Daemon:
    """``daemon_inboxes.py CONFIG`` in its own process, its JSON lines read by a thread."""

    def __init__(self, config_path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "daemon_inboxes.py"), str(config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ), text=True, preexec_fn=servers._die_with_parent)
        self.events: Queue[dict[str, Any]] = Queue()
        self.errors: list[str] = []
        self.seen: dict[str, dict[str, Any]] = {}
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._errors, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.events.put(json.loads(line))
        self.events.put({"event": "exited"})

    def _errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.errors.append(line.rstrip("\n"))

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        """The event's line, read now or earlier (events come in any order)."""
        deadline = perf() + timeout
        while True:
            if event in self.seen:
                return self.seen[event]
            try:
                found = self.events.get(timeout=max(0.01, deadline - perf()))
            except Empty:
                raise RuntimeError(f"the daemon did not report {event!r} within {timeout:g} s; "
                                   f"it said: {self._said()}") from None
            self.seen.setdefault(found["event"], found)
            if found["event"] == "exited" and event not in self.seen:
                raise RuntimeError(f"the daemon ended before {event!r}: {self._said()}")

    def _said(self) -> str:
        return " | ".join(self.errors[-8:]) or "(nothing)"

    def stop(self) -> float:
        """SIGTERM, as systemd stops it; the seconds it took to exit."""
        start = perf()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return perf() - start


def _invitation(jordan: bytes, serial: int, rng: random.Random) -> bytes:
    return corpus.with_message_id(
        jordan.replace(_INVITATION_ID, str(rng.randrange(10**18, 10**19)).encode()),
        f"inboxes.{serial}.{rng.getrandbits(48):012x}@linkedin.com")


def _sent(observer: Store, account: str) -> int:
    return len(observer.items(account, OutboxStatus.SENT))


def _measure(env: Environment, users: list[User], quiet: float, arrivals: int,
             rng: random.Random) -> Run:
    n = len(users)
    run = Run(n)
    path = env.accounts_file([u.name for u in users], mode="auto", person_window_days=0,
                             max_replies_per_hour=100_000, max_replies_per_day=100_000)
    daemon = Daemon(path)
    pid = daemon.process.pid
    try:
        daemon.wait_for("starting", _START_TIMEOUT)
        run.polled = daemon.wait_for("polled", _START_TIMEOUT)["seconds"]
        idling = daemon.wait_for("idling", _START_TIMEOUT)
        run.idling, run.process_start = idling["seconds"], idling["since_process_start"]
        time.sleep(3.0)  # whatever the start left behind (garbage, half-closed sockets) settles
        status = _status(pid)
        run.rss, run.threads = _mb(status["VmRSS"]), int(status["Threads"])
        run.imap, run.fds = _connections(pid, env.dovecot.imaps_port)
        progress(f"{n} inboxes: every one polled after {run.polled:.1f} s and idling after "
                 f"{run.idling:.1f} s; RSS {run.rss:.1f} MB, {run.threads} threads, {run.imap} "
                 "IMAP connections")

        progress(f"{n} inboxes: CPU of the quiet daemon over {quiet:g} s")
        master = env.dovecot.process.pid
        start, dovecot_start, began = _cpu_seconds(pid), _dovecot_cpu(master), perf()
        minute_mark, minute_cpu = began, start
        while perf() - began < quiet:
            time.sleep(min(1.0, max(0.0, quiet - (perf() - began))))
            if quiet > 120 and perf() - minute_mark >= 60:
                now_cpu = _cpu_seconds(pid)
                run.cpu_minutes.append((now_cpu - minute_cpu) / (perf() - minute_mark) * 100)
                minute_mark, minute_cpu = perf(), now_cpu
        run.quiet_seconds = perf() - began
        run.cpu = (_cpu_seconds(pid) - start) / run.quiet_seconds * 100
        run.dovecot_cpu = (_dovecot_cpu(master) - dovecot_start) / run.quiet_seconds * 100

        if arrivals:
            progress(f"{n} inboxes: {arrivals} invitations into random inboxes")
            url = f"sqlite:///{env.work}/{path.stem}.db"
            observer = Store.open(url)
            jordan = (corpus.DATA / "invitation_current_jordan_rivera.eml").read_bytes()
            try:
                for i in range(arrivals):
                    time.sleep(rng.uniform(0.3, 1.7))  # irregular, unlike Dovecot's timer
                    user = rng.choice(users)
                    account = f"{user.name}@{env.dovecot.host}"
                    before = _sent(observer, account)
                    raw = _invitation(jordan, i, rng)
                    begin = perf()
                    user.maildir.deliver([raw])
                    while _sent(observer, account) == before and perf() - begin < _NO_REPLY:
                        time.sleep(0.005)
                    # One not answered within the limit counts as the limit: the p95 shows it.
                    run.latencies.append(perf() - begin)
            finally:
                observer.close()
            run.rss_after = _mb(_status(pid)["VmRSS"])
        run.hwm = _mb(_status(pid)["VmHWM"])
    finally:
        run.stop_seconds = daemon.stop()
    if daemon.process.returncode not in (0, None):
        raise RuntimeError(f"the daemon exited with {daemon.process.returncode}: "
                           f"{daemon._said()}")
    return run


_INOTIFY = Path("/proc/sys/fs/inotify/max_user_instances")


def _inotify_instances(needed: int) -> tuple[int | None, str]:
    """Make room for ``needed`` more inotify instances of one user, if we may.

    Dovecot tells an IDLE session of new mail through inotify, one instance per session, and
    every mailbox's imap process runs as the one mail user: beyond the kernel's
    ``fs.inotify.max_user_instances`` (128 by default, for all of that user's processes) a
    session falls back to looking every ``mailbox_idle_check_interval`` (30 s). Raised here
    (as root) for the run and restored after; returns (the value to restore, what was done).
    """
    try:
        current = int(_INOTIFY.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None, "fs.inotify.max_user_instances unknown"
    wanted = needed + 256  # room for the tests or other servers the mail user runs meanwhile
    if current >= wanted:
        return None, f"fs.inotify.max_user_instances {current}"
    try:
        _INOTIFY.write_text(str(wanted), encoding="ascii")
    except OSError:
        return None, (f"fs.inotify.max_user_instances is {current} and could not be raised: "
                      "Dovecot notices new mail in the IDLE sessions beyond it only every 30 s")
    return current, f"fs.inotify.max_user_instances raised from {current} to {wanted} for the run"


def _rss_target(n: int) -> float:
    return 80 + 0.3 * n


def figures(env: Environment, sizes: Sizes) -> list[Figure]:
    counts = sorted(sizes.inboxes)
    largest = counts[-1]
    progress(f"one daemon over {', '.join(map(str, counts))} inboxes")
    made = perf()
    users = env.add_empty_users("inbox", largest)
    made = perf() - made
    rng = random.Random(11)
    short = min(sizes.inboxes_quiet_seconds, 30.0)
    runs: dict[int, Run] = {}
    restore, inotify = _inotify_instances(largest)
    try:
        for n in counts:
            progress(f"{n} inboxes: starting the daemon")
            biggest = n == largest
            runs[n] = _measure(env, users[:n], sizes.inboxes_quiet_seconds if biggest else short,
                               sizes.inboxes_arrivals if biggest
                               else max(3, sizes.inboxes_arrivals // 4), rng)
    finally:
        if restore is not None:
            _INOTIFY.write_text(str(restore), encoding="ascii")
    one, big = runs[counts[0]], runs[largest]
    rows = []
    for n in counts:
        run = runs[n]
        target = _rss_target(n)
        per_inbox = (run.rss - one.rss) / (n - one.inboxes) if n > one.inboxes else None
        details = [
            f"RSS {run.rss:.1f} MB with every inbox idling (peak {run.hwm:.1f} MB"
            + (f", {run.rss_after:.1f} MB after the arrivals" if run.rss_after else "") + ")"
            + (f"; {per_inbox * 1024:.0f} KB per inbox beyond the first" if per_inbox else ""),
            f"{run.imap} IMAP connections ({run.imap / n:.1f} per inbox), {run.threads} "
            f"threads, {run.fds} open file descriptors",
            f"start-up: every inbox polled {run.polled:.1f} s and waiting in IDLE "
            f"{run.idling:.1f} s after run_daemon began ({run.process_start:.1f} s after the "
            f"process started); stopped in {run.stop_seconds:.1f} s",
            f"quiet CPU {run.cpu:.2f}% of one core over {run.quiet_seconds:.0f} s (Dovecot's "
            f"processes {run.dovecot_cpu:.2f}%)"
            + (", minute by minute: " + ", ".join(f"{c:.2f}%" for c in run.cpu_minutes)
               if run.cpu_minutes else ""),
        ]
        if run.latencies:
            unanswered = sum(1 for t in run.latencies if t >= _NO_REPLY)
            if unanswered:
                details.append(f"{unanswered} of {len(run.latencies)} invitations got no reply "
                               f"within {_NO_REPLY:g} s (counted as {_NO_REPLY:g} s)")
            details.append(f"arrival to reply sent, {len(run.latencies)} invitations in random "
                           f"inboxes: median {median(run.latencies):.2f} s, p95 "
                           f"{p95(run.latencies):.2f} s, max {max(run.latencies):.2f} s")
        if n == largest:
            details.append(f"{largest} Dovecot users made in {made:.2f} s; {inotify}")
        rows.append(Figure(
            f"daemon RSS, {n} inboxes idling", run.rss, "MB",
            one.rss if n > one.inboxes else None,
            run.rss / one.rss if n > one.inboxes else None,
            f"<= {target:g} MB (80 + 0.3 per inbox)", run.rss <= target, details))
    value = p95(big.latencies)
    rows.append(Figure(
        f"arrival to reply sent, {largest} inboxes (p95)", value, "s",
        p95(one.latencies), value / p95(one.latencies), "p95 <= 2 s", value <= 2.0,
        [f"{len(big.latencies)} invitations into random inboxes of {largest}, auto mode: median "
         f"{median(big.latencies):.2f} s, p95 {value:.2f} s (baseline column: the same with "
         f"1 inbox, {len(one.latencies)} invitations)"]))
    minutes = big.quiet_seconds / 60
    rows.append(Figure(
        f"quiet daemon CPU, {largest} inboxes, {minutes:.3g} min", big.cpu, "%", one.cpu,
        big.cpu / one.cpu if one.cpu else None, "<= 2% of one core", big.cpu <= 2.0,
        [f"user+sys CPU of the daemon over {big.quiet_seconds:.0f} s with nothing new: "
         f"{big.cpu:.2f}% of one core ({big.cpu * 0.6:.2f} CPU s per minute); baseline column: "
         f"1 inbox over {one.quiet_seconds:.0f} s"]))
    return rows
