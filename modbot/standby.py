"""Which accounts this daemon serves when several daemons share one PostgreSQL database.

Every few seconds, away from the polls, a round asks the server who holds what
(``LockSession.survey``), takes free accounts up to this daemon's fair share (the accounts
divided by the live daemons, rounded up), and gives back one account at a time while another
daemon holds at least two fewer, for two rounds in a row; an account given back is left to the
others for a few rounds, so that accounts do not flap. An account left free for several rounds
is taken even beyond the share: serving it matters more than balance, and nothing is given back
for some minutes then (the daemon that left it free may still be unable to serve it). A taken
account starts serving at once (its first poll resolves replies a crash left half-sent); a lost
one stops at once.

It never serves an account the session does not hold, and never reads mail or sends itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Awaitable, Callable, Sequence

from modbot.errors import StoreError
from modbot.lock import LockSession, Survey

log = logging.getLogger(__name__)

ROUND_SECONDS = 5.0  # how often free accounts are looked for and the shares compared
STARVED_ROUNDS = 3  # a free account this many rounds in a row is taken beyond the share
SURPLUS_ROUNDS = 2  # rounds in a row above the share before one account is given back
STARVED_HOLD_ROUNDS = 60  # after taking a starved account, nothing is given back this long

Switch = Callable[[str], Awaitable[None]]


def fair_share(accounts: int, daemons: int) -> int:
    """The most accounts one of ``daemons`` live daemons should serve."""
    return math.ceil(accounts / max(daemons, 1))


class Standby:
    """Takes and gives back this daemon's accounts; ``begin`` and ``end`` start and stop
    serving one (``end`` lets a running poll finish)."""

    def __init__(self, session: LockSession, accounts: Sequence[str], begin: Switch,
                 end: Switch, *, every: float = ROUND_SECONDS) -> None:
        self.session = session
        # Each daemon tries the free accounts in its own order, so that they rarely collide.
        offset = os.getpid() % max(len(accounts), 1)
        self.accounts = list(accounts[offset:]) + list(accounts[:offset])
        self.begin, self.end = begin, end
        self.every = every
        self.serving: set[str] = set()
        self._free_rounds: dict[str, int] = {}
        self._surplus_rounds = 0
        self._given_back: dict[str, int] = {}  # account -> rounds it is still left to others
        self._wake = asyncio.Event()

    def lost(self) -> None:
        """Called (in the loop) when the session was lost: stop serving at the next turn."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Run rounds until ``stop`` is set; then stop serving every account."""
        try:
            while not stop.is_set():
                await self.round()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.every)
        finally:
            await asyncio.gather(*(self._stop(a) for a in list(self.serving)))

    async def round(self) -> None:
        """One round: stop what is no longer held, take what is free, give back a surplus."""
        for account in [a for a in self.serving if not self.session.holds(a)]:
            log.warning("%s: this daemon no longer holds its lock; stopped serving it", account)
            await self._stop(account)
        try:
            found = await asyncio.to_thread(self.session.survey, self.accounts)
        except StoreError as exc:
            log.warning("cannot see which daemon serves which account: %s", exc)
            return
        share = fair_share(len(self.accounts), len(found.daemons))
        await self._take(found, share)
        await self._give_back(found, share)

    async def _take(self, found: Survey, share: int) -> None:
        free = [a for a in self.accounts if a not in found.holders]
        self._free_rounds = {a: self._free_rounds.get(a, 0) + 1 for a in free}
        self._given_back = {a: n - 1 for a, n in self._given_back.items() if n > 1}
        for account in free:
            starved = self._free_rounds[account] >= STARVED_ROUNDS
            if (len(self.serving) >= share or account in self._given_back) and not starved:
                continue
            try:
                taken = await asyncio.to_thread(self.session.take, account)
            except StoreError:
                return
            if taken:
                self._free_rounds.pop(account, None)
                if starved:
                    self._surplus_rounds = -STARVED_HOLD_ROUNDS
                log.info("%s: this daemon serves it now", account)
                self.serving.add(account)
                await self.begin(account)

    async def _give_back(self, found: Survey, share: int) -> None:
        if self._surplus_rounds < 0:  # holding on after taking a starved account
            self._surplus_rounds += 1
            return
        mine = len(self.serving)
        others = [found.count(d) for d in found.daemons if d.pid != self.session.backend_pid]
        if others and min(others) <= mine - 2:
            self._surplus_rounds += 1
        else:
            self._surplus_rounds = 0
        if self._surplus_rounds >= SURPLUS_ROUNDS:
            self._surplus_rounds = 0
            account = sorted(self.serving)[-1]
            self._given_back[account] = STARVED_ROUNDS
            await self._stop(account)
            log.info("%s: given back for another daemon to serve (%d daemons share %d "
                     "accounts)", account, len(found.daemons), len(self.accounts))

    async def _stop(self, account: str) -> None:
        if account in self.serving:
            self.serving.discard(account)
            try:
                await self.end(account)
            finally:
                await asyncio.to_thread(self.session.give_back, account)
