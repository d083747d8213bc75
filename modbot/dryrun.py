"""``modbot run-once --dry-run``: what a poll would do now, and nothing else.

The real poll runs, so the prediction is exact, but against a scratch copy of the database held
in memory (the file is only read, and a missing one is not created), with the IMAP folder opened
read-only (EXAMINE, bodies fetched with ``BODY.PEEK``, no keyword set) and without the sending
step. Nothing is sent, recorded or marked; the next real poll finds everything as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from modbot.config import Account
from modbot.mailbox import FolderState, Mailbox
from modbot.poll import Context, Poller, PollReport
from modbot.store import Store


class _Examined(Mailbox):
    """A mailbox that only looks: folders are opened read-only and keywords are not set."""

    def select(self, folder: str, *, readonly: bool = False) -> FolderState:
        return super().select(folder, readonly=True)

    def add_keyword(self, uids: Sequence[int], keyword: str) -> bool:
        return False


class DryPoller(Poller):
    """The poll without its lasting effects: see the module docstring."""

    async def _connect(self, now: datetime) -> Mailbox:
        import asyncio

        if self._mailbox is None:
            mailbox = _Examined(self.settings.imap, self.ctx.imap_tls)
            await asyncio.to_thread(mailbox.__enter__)
            self._mailbox = mailbox
        return self._mailbox

    async def _reconcile(self, now: datetime) -> None:
        self._recheck = False  # replies a crash left half-sent are the real poll's business

    async def _send_due(self, now: datetime, report: PollReport) -> None:
        return None  # the replies stay "to be sent" in the scratch copy


def scratch_store(url: str) -> tuple[Store, str | None]:
    """A copy of the database at ``url`` in memory, and a note when it could not be copied
    (``Store.scratch_copy``)."""
    return Store.scratch_copy(url)


async def dry_run(settings: Account, now: datetime) -> tuple[PollReport, str | None]:
    """What one poll of ``settings``'s account would do at ``now``, and a note on the copy."""
    store, note = scratch_store(settings.database.url)
    try:
        poller = DryPoller(Context.build(settings, store_=store))
        return await poller.poll(now), note
    finally:
        store.close()
