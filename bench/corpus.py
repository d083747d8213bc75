"""Mail for the benchmark: ordinary messages, LinkedIn notifications, and a fast maildir filler.

LinkedIn notifications are the fixtures in ``tests/data`` (``expected.toml`` says which are
LinkedIn's), each copy given its own Message-ID so the store sees a new message every time.
Ordinary mail is generated: campus-style messages of about 2.5 KB with varied senders and
subjects. Messages go straight into the Dovecot user's maildir as files, the way a local
delivery agent writes them, which is far faster than IMAP APPEND (about 57 ms each into a
100,000-message folder).
"""

from __future__ import annotations

import os
import random
import re
import time
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
_MESSAGE_ID = re.compile(rb"^message-id:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE)
_FIXTURE_SOURCE = re.compile(rb"\AX-Fixture-Source:[^\n]*\n(?:[ \t][^\n]*\n)*")
_WORDS = (
    "career", "resume", "interview", "internship", "advising", "workshop", "schedule",
    "deadline", "campus", "student", "employer", "fair", "application", "portfolio", "network",
    "alumni", "mentor", "office", "hours", "semester", "course", "reminder", "registration",
    "room", "building", "library", "meeting", "agenda", "follow", "up", "thanks", "please",
    "attached", "document", "review", "draft", "feedback", "question", "answer", "project",
    "team", "update", "week",
)
_SENDERS = ("news@career.example.edu", "registrar@example.edu", "it-help@example.edu",
            "dean.office@example.edu", "calendar@example.edu", "alex.kim@example.org",
            "jamie.ortiz@students.example.edu", "facilities@example.edu")


def _bodies(count: int = 97) -> tuple[bytes, ...]:
    rng = random.Random(0)
    return tuple("".join(" ".join(rng.choices(_WORDS, k=12)) + "\n" for _ in range(24)).encode()
                 for _ in range(count))


_BODIES = _bodies()


def linkedin_fixtures() -> list[tuple[str, bytes]]:
    """Every LinkedIn fixture (including spoofs), as (file name, bytes), in a stable order."""
    expected = tomllib.loads((DATA / "expected.toml").read_text(encoding="utf-8"))
    found = []
    for name, facts in sorted(expected.items()):
        if facts.get("kind") == "not_linkedin":
            continue
        path = DATA / name
        if path.is_file():
            found.append((name, path.read_bytes()))
    if not found:
        raise RuntimeError(f"no LinkedIn fixtures found in {DATA}")
    return found


def with_message_id(raw: bytes, message_id: str) -> bytes:
    """``raw`` with its Message-ID replaced (or added) and the fixture's provenance line gone."""
    raw = _FIXTURE_SOURCE.sub(b"", raw, count=1)
    header = f"Message-ID: <{message_id}>\n".encode()
    replaced, count = _MESSAGE_ID.subn(header, raw, count=1)
    return replaced if count else header + raw


def ordinary(serial: int, rng: random.Random | None = None) -> bytes:
    """An ordinary (not LinkedIn) message of about 2.5 KB, different for each ``serial``."""
    rng = rng or random.Random(serial)
    sender = _SENDERS[serial % len(_SENDERS)]
    domain = sender.rpartition("@")[2]
    subject = " ".join(rng.choices(_WORDS, k=6)).capitalize()
    day = 1 + serial % 28
    return (
        f"Return-Path: <{sender}>\n"
        f"Received: from out.{domain} (out.{domain} [198.51.100.{serial % 250 + 1}])\n"
        f"\tby mx.counsel.example.edu (Postfix) with ESMTPS id B{serial:08X};\n"
        f"\tMon, {day} Sep 2025 09:{serial % 60:02d}:00 +0000\n"
        f"Authentication-Results: mx.counsel.example.edu;\n"
        f"\tdkim=pass header.d={domain};\n"
        f"\tspf=pass smtp.mailfrom={sender};\n"
        f"\tdmarc=pass header.from={domain}\n"
        f"From: {sender.split('@')[0].replace('.', ' ').title()} <{sender}>\n"
        f"To: Morgan Lee <morgan.lee@counsel.example.edu>\n"
        f"Subject: {subject}\n"
        f"Date: Mon, {day} Sep 2025 09:{serial % 60:02d}:00 +0000\n"
        f"Message-ID: <bench.{serial}.{rng.getrandbits(32):08x}@{domain}>\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=UTF-8\n"
        f"Content-Transfer-Encoding: 7bit\n"
        f"\n"
    ).encode() + _BODIES[serial % len(_BODIES)]


def mixed(count: int, *, linkedin_every: int, start: int = 0, tag: str = "fill"
          ) -> Iterator[bytes]:
    """``count`` messages where every ``linkedin_every``-th one is a LinkedIn notification."""
    fixtures = linkedin_fixtures()
    rng = random.Random(start)
    for serial in range(start, start + count):
        if linkedin_every and serial % linkedin_every == linkedin_every - 1:
            _name, raw = fixtures[(serial // linkedin_every) % len(fixtures)]
            yield with_message_id(raw, f"{tag}.{serial}.{rng.getrandbits(48):012x}@linkedin.com")
        else:
            yield ordinary(serial, rng)


class Maildir:
    """Writes message files into one Dovecot user's maildir, owned by the mail user."""

    def __init__(self, path: Path, uid: int, gid: int) -> None:
        self.path = path
        self.uid, self.gid = uid, gid
        self._serial = 0
        self._pid = os.getpid()

    def _name(self, raw: bytes) -> str:
        # S= and W= (the size with CRLF line ends) as Dovecot's own delivery writes them, so
        # Dovecot never has to compute them and record them in its uidlist.
        self._serial += 1
        now = time.time()
        vsize = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
        return (f"{int(now)}.M{int(now * 1e6) % 1000000}P{self._pid}Q{self._serial}.bench,"
                f"S={len(raw)},W={vsize}")

    def _write(self, path: Path, raw: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, raw)
            os.fchown(fd, self.uid, self.gid)
        finally:
            os.close(fd)

    def fill(self, messages: Iterable[bytes]) -> int:
        """Write ``messages`` into ``cur/`` as already-seen-by-a-client files; return the count."""
        cur = self.path / "cur"
        count = 0
        for raw in messages:
            self._write(cur / f"{self._name(raw)}:2,", raw)
            count += 1
        return count

    def deliver(self, messages: Iterable[bytes]) -> int:
        """Deliver ``messages`` as new mail: written in ``tmp/``, then renamed into ``new/``."""
        count = 0
        for raw in messages:
            name = self._name(raw)
            tmp = self.path / "tmp" / name
            self._write(tmp, raw)
            os.rename(tmp, self.path / "new" / name)
            count += 1
        return count
