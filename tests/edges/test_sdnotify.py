"""sd_notify: the messages systemd receives on a real Unix datagram socket."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from modbot import sdnotify


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, named in ``$NOTIFY_SOCKET``."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock``."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(2)


def test_ready_watchdog_stopping(systemd: socket.socket) -> None:
    """Each call sends systemd exactly its one line."""
    assert sdnotify.ready() and sdnotify.watchdog() and sdnotify.stopping()
    assert received(systemd) == ["READY=1", "WATCHDOG=1", "STOPPING=1"]


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """An address starting with ``@`` is in the abstract namespace, as systemd may pass it."""
    name = f"modbot-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert sock.recv(64) == b"READY=1"


def test_nothing_happens_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``$NOTIFY_SOCKET`` nothing is sent and nothing fails."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.ready()


def test_missing_socket_is_logged_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A socket that is gone is a warning; the daemon goes on."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not sdnotify.ready()
    assert "could not notify systemd" in caplog.text


def test_watchdog_interval_is_half_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """``WatchdogSec=30`` means a message every 15 s, only for the watched process."""
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert sdnotify.watchdog_interval() is None


async def test_keep_alive_pings_until_stopped(systemd: socket.socket,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``keep_alive`` sends WATCHDOG=1 every half period and returns when told to stop."""
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s: a ping every 0.05 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    stop = asyncio.Event()
    task = asyncio.create_task(sdnotify.keep_alive(stop))
    await asyncio.sleep(0.22)
    stop.set()
    await asyncio.wait_for(task, timeout=1)
    pings = received(systemd)
    assert set(pings) == {"WATCHDOG=1"} and 3 <= len(pings) <= 6


async def test_keep_alive_without_watchdog_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no watchdog configured, ``keep_alive`` returns at once."""
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    await asyncio.wait_for(sdnotify.keep_alive(asyncio.Event()), timeout=1)
