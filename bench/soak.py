"""The long reliability soak: the trials of the reliability tests (``tests/reliability/``) at
full size.

    .venv/bin/python bench/soak.py            # full: about 10 minutes on 2 cores
    .venv/bin/python bench/soak.py --quick    # one pass of each, about a minute
    .venv/bin/python bench/soak.py --only crash,cut --seed 7

- crash: a poll in a child process SIGKILLed at each step of the pipeline (or by the SMTP server
  in the middle of DATA), 10 times per step at a random occurrence of that step, then restarted;
- cut: the IMAP connection cut by a loopback proxy after a random byte count, 50 times, then a
  clean poll;
- flood: 10,000 genuine-looking invitations from distinct directory people within an hour.

Prints, per scenario, the trials run and the notifications lost, the replies duplicated, the
replies held as "may have been sent" and the notifications held; exits 1 if anything was lost
or duplicated (or a trial misbehaved). Needs Dovecot (Debian's dovecot-imapd) like the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

# The test support package (tests/support/), shared with the tests, is imported as `support`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trustme
from support import faults, servers, trials

from modbot.poll import Context, Poller
from modbot.tls import client_context

SCENARIOS = ("crash", "cut", "flood")


class Lab:
    """One Dovecot, one CA, and fresh users and directories for each trial."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="modbot-soak-"))
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert(*servers.CERT_NAMES)
        self.ca_file = self.root / "ca.pem"
        self.ca.cert_pem.write_to_path(self.ca_file)
        self.dovecot = servers.start_dovecot(self.cert, client_context(self.ca_file))
        self.count = 0

    def directory(self) -> Path:
        self.count += 1
        path = self.root / f"trial-{self.count}"
        path.mkdir()
        return path

    def smtp(self) -> faults.KillingSmtpServer:
        return faults.KillingSmtpServer("tls", self.cert).start()

    def close(self) -> None:
        self.dovecot.stop()


def report(name: str, runs: int, outcome: trials.Outcome, seconds: float) -> bool:
    print(f"{name:<22} trials {runs:>5}  lost {outcome.lost:>3}  duplicated "
          f"{outcome.duplicates:>3}  may-have-been-sent {outcome.uncertain:>3}  held "
          f"{outcome.held:>5}  unfinished {outcome.unfinished:>3}  unmarked {outcome.unmarked:>3}"
          f"  ({seconds:.0f} s)", flush=True)
    for note in outcome.notes:
        print(f"    ! {note}", flush=True)
    return not (outcome.lost or outcome.duplicates or outcome.unfinished or outcome.unmarked
                or outcome.notes)


def crash(lab: Lab, rng: random.Random, quick: bool) -> bool:
    ok = True
    for step in trials.CRASH_STEPS:
        started, total = time.monotonic(), trials.Outcome()
        runs = 1 if quick else 10
        for _ in range(runs):
            smtp = lab.smtp()
            try:
                occurrence = rng.randint(1, trials.OCCURRENCES[step])
                outcome = trials.crash_trial(lab.directory(), lab.dovecot.add_user(), smtp,
                                             lab.ca_file, step, occurrence)
            finally:
                smtp.stop()
            total.add(outcome)
        ok &= report(f"crash at {step}", runs, total, time.monotonic() - started)
    return ok


def cut(lab: Lab, rng: random.Random, quick: bool) -> bool:
    started, total = time.monotonic(), trials.Outcome()
    target = (lab.dovecot.host, lab.dovecot.imaps_port)
    smtp = lab.smtp()
    proxy = faults.CutProxy(target)
    try:
        session = trials.full_session_bytes(lab.directory(), lab.dovecot.add_user(), smtp,
                                            lab.ca_file, proxy)
    finally:
        proxy.close()
        smtp.stop()
    runs = 10 if quick else 50
    for _ in range(runs):
        smtp, proxy = lab.smtp(), faults.CutProxy(target)
        try:
            total.add(trials.cut_trial(lab.directory(), lab.dovecot.add_user(), smtp,
                                       lab.ca_file, proxy, trials.random_cut(rng, session)))
        finally:
            proxy.close()
            smtp.stop()
    return report(f"cut mid-session ({session} B)", runs, total, time.monotonic() - started)


def flood(lab: Lab, rng: random.Random, quick: bool) -> bool:
    size = 1_000 if quick else 10_000
    started = time.monotonic()
    crowd = faults.Crowd(size, seed=rng.randint(0, 2**31))
    user, smtp, directory = lab.dovecot.add_user(), lab.smtp(), lab.directory()
    settings = faults.settings_for(directory, user, smtp, lab.ca_file,
                                   directory=crowd.directory_csv())
    ctx = Context.build(settings, dkim_lookup=None)
    messages = crowd.messages()
    waves = 12  # one poll every five minutes for an hour
    try:
        for wave in range(waves):
            faults.append_many(user, "INBOX", messages[wave::waves])
            asyncio.run(Poller(ctx).poll(trials.NOW + timedelta(minutes=5 * wave)))
        asyncio.run(Poller(ctx).poll(trials.NOW + timedelta(hours=2)))
        outcome = trials.measure(ctx, user, smtp, set(), not_linkedin=0)
        counts = faults.recipients_count(smtp)
    finally:
        ctx.store.close()
        smtp.stop()
    alerts = counts.pop(faults.COUNSELOR, 0)
    cap = settings.policy.max_replies_per_hour
    sent = sum(counts.values())
    if sent > cap or alerts != 1:
        outcome.notes.append(f"sent {sent} replies (cap {cap}) and {alerts} alerts (want 1)")
    outcome.lost = size - outcome.recorded
    ok = report(f"flood of {size}", 1, outcome, time.monotonic() - started)
    print(f"    replies sent {sent} (hourly cap {cap}), alerts {alerts}, recorded "
          f"{outcome.recorded} of {size}", flush=True)
    return ok


RUNS: dict[str, Callable[[Lab, random.Random, bool], bool]] = {
    "crash": crash, "cut": cut, "flood": flood}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short pass of each scenario")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios from {', '.join(SCENARIOS)}")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}")
    # modbot's own warnings ("sending postponed", "copy not kept") are expected under these
    # faults, and aiosmtpd warns about its own API on every login: the counts say what matters.
    logging.basicConfig(level=logging.ERROR)
    rng = random.Random(args.seed)
    lab = Lab()
    ok = True
    try:
        for name in chosen:
            ok &= RUNS[name](lab, rng, args.quick)
    finally:
        lab.close()
    print("PASS: nothing lost, nothing repeated" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
