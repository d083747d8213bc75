"""Tell systemd how the daemon is doing (``sd_notify``), without a dependency.

Under a unit with ``Type=notify`` systemd puts a datagram socket's address in
``$NOTIFY_SOCKET``; the daemon writes ``READY=1`` once it is up, ``WATCHDOG=1`` at least every
``WatchdogSec=`` (systemd passes it as ``$WATCHDOG_USEC``) and ``STOPPING=1`` when it begins to
shut down. Outside systemd (a terminal, Docker, the tests) the variable is unset and every
function here does nothing. A failure to notify is logged and never stops the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; False when not under systemd or failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # Linux abstract namespace
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # e.g. "vsock:...", for virtual machines: not modbot's case
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd: %s", exc.strerror or type(exc).__name__)
        return False
    return True


def ready() -> bool:
    """The daemon is up: systemd ends ``systemctl start`` and starts the watchdog."""
    return notify("READY=1")


def watchdog() -> bool:
    """The daemon is alive: resets systemd's ``WatchdogSec=`` timer."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """The daemon has begun to shut down."""
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` messages (half of ``WatchdogSec=``); None if not asked.

    systemd sets ``$WATCHDOG_PID`` to the process it watches; a child that inherited the
    variables must not answer for it.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


async def keep_alive(stop: asyncio.Event) -> None:
    """Send ``WATCHDOG=1`` every half watchdog period until ``stop`` is set.

    Run it as a task on the daemon's event loop: if the loop stalls, the messages stop and
    systemd restarts the service. Returns at once when no watchdog is configured.
    """
    interval = watchdog_interval()
    if interval is None:
        return
    while not stop.is_set():
        watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
