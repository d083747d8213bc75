"""The embedded IMAP and SMTP servers behind ``modbot demo``, driven by real client libraries."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import imapclient
import pytest

from modbot.demo_servers import LOOPBACK, DemoServers

USER = "counselor@example.edu"
PASSWORD = "demo-password"

FIRST = (
    b"From: LinkedIn <invitations@linkedin.com>\r\n"
    b"To: counselor@example.edu\r\n"
    b"Subject: Ana wants to connect\r\n"
    b"Message-ID: <first@linkedin.example>\r\n"
    b"\r\n"
    b"Ana Lopez would like to connect with you.\r\n"
)
SECOND = (
    b"From: LinkedIn <messages-noreply@linkedin.com>\r\n"
    b"To: counselor@example.edu\r\n"
    b"Subject: New message from Ben\r\n"
    b"Message-ID: <second@linkedin.example>\r\n"
    b"\r\n"
    b"Ben Okafor sent you a message.\r\n"
)


def _login(port: int) -> imapclient.IMAPClient:
    client = imapclient.IMAPClient(LOOPBACK, port=port, ssl=False, timeout=5)
    client.login(USER, PASSWORD)
    return client


def _read_inbox(port: int) -> tuple[list[int], dict[int, dict[bytes, Any]]]:
    client = _login(port)
    try:
        client.select_folder("INBOX")
        uids = list(client.search(["UID", "1:*"]))
        fetched = client.fetch(uids, ["BODY.PEEK[HEADER]", "BODY.PEEK[]"])
        flags = client.fetch(uids, ["FLAGS"])
        return uids, {uid: {**fetched[uid], **flags[uid]} for uid in uids}
    finally:
        client.logout()


def _store_keyword(port: int, keyword: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    client = _login(port)
    try:
        selected = client.select_folder("INBOX")
        uid = client.search(["UID", "1:*"])[0]
        client.add_flags([uid], [keyword])
        permanent: tuple[bytes, ...] = selected[b"PERMANENTFLAGS"]
        stored: tuple[bytes, ...] = client.fetch([uid], ["FLAGS"])[uid][b"FLAGS"]
        return permanent, stored
    finally:
        client.logout()


def _append(port: int, folder: str, message: bytes) -> list[int]:
    client = _login(port)
    try:
        client.append(folder, message, flags=[b"\\Seen"])
        client.select_folder(folder)
        return list(client.search(["UID", "1:*"]))
    finally:
        client.logout()


def _reply() -> EmailMessage:
    reply = EmailMessage()
    reply["From"] = USER
    reply["To"] = "ana.lopez@example.com"
    reply["Subject"] = "Re: Ana wants to connect"
    reply.set_content("Thank you for reaching out.")
    return reply


async def _send_reply(port: int, password: str) -> None:
    """Send ``_reply()`` over plain SMTP as the demo user with ``password``."""
    await aiosmtplib.send(_reply(), hostname=LOOPBACK, port=port, use_tls=False, start_tls=False,
                          username=USER, password=password)


async def test_imap_serves_the_messages_in_order_and_peeking_leaves_them_unseen() -> None:
    """Fetching with BODY.PEEK returns each message byte for byte and does not set \\Seen."""
    async with DemoServers(username=USER, password=PASSWORD, messages=[FIRST, SECOND]) as servers:
        uids, fetched = await asyncio.to_thread(_read_inbox, servers.imap_port)

        assert len(uids) == 2
        assert uids == sorted(uids)
        assert [fetched[uid][b"BODY[]"] for uid in uids] == [FIRST, SECOND]
        assert fetched[uids[0]][b"BODY[HEADER]"] == FIRST.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert all(b"\\Seen" not in fetched[uid][b"FLAGS"] for uid in uids)
        assert servers.inbox_flags() == {uids[0]: (), uids[1]: ()}


async def test_smtp_records_the_mail_it_accepts() -> None:
    """A message sent with aiosmtplib over plain SMTP shows up in ``received``."""
    async with DemoServers(username=USER, password=PASSWORD, messages=[]) as servers:
        await _send_reply(servers.smtp_port, PASSWORD)

        [mail] = servers.received
        assert mail.envelope_from == USER
        assert mail.recipients == ["ana.lopez@example.com"]
        assert b"Subject: Re: Ana wants to connect" in mail.data
        assert b"Thank you for reaching out." in mail.data


async def test_smtp_refuses_a_wrong_password() -> None:
    """SMTP AUTH fails with any credentials but the demo user's, and nothing is recorded."""
    async with DemoServers(username=USER, password=PASSWORD, messages=[]) as servers:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await _send_reply(servers.smtp_port, "wrong")
        assert servers.received == []


async def test_imap_does_not_keep_custom_keywords() -> None:
    """PERMANENTFLAGS has no \\* and STORE of a keyword succeeds without storing it."""
    async with DemoServers(username=USER, password=PASSWORD, messages=[FIRST]) as servers:
        permanent, stored = await asyncio.to_thread(
            _store_keyword, servers.imap_port, b"$ModbotDone"
        )

        assert b"\\*" not in permanent
        assert b"$ModbotDone" not in stored
        assert all("$ModbotDone" not in flags for flags in servers.inbox_flags().values())


async def test_extra_folders_accept_append() -> None:
    """A folder named in ``folders`` exists empty and takes an APPENDed copy."""
    async with DemoServers(
        username=USER, password=PASSWORD, messages=[FIRST], folders=["Sent"]
    ) as servers:
        uids = await asyncio.to_thread(_append, servers.imap_port, "Sent", SECOND)

        assert len(uids) == 1


def _outward_address() -> str | None:
    """This machine's address on its default route, or None when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: a UDP connect sends nothing
        except OSError:
            return None
        address: str = probe.getsockname()[0]
    ip = ipaddress.ip_address(address)
    return None if ip.is_loopback or ip.is_unspecified else address


async def test_servers_listen_only_on_loopback() -> None:
    """Neither server answers on the machine's outward address, only on 127.0.0.1."""
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address but loopback")
    async with DemoServers(username=USER, password=PASSWORD, messages=[]) as servers:
        for port in (servers.imap_port, servers.smtp_port):
            socket.create_connection((LOOPBACK, port), timeout=5).close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outward, port), timeout=5).close()


async def test_leaving_ends_open_sessions_and_every_server_task() -> None:
    """Connections still open at exit are closed, no task is left and the ports stop listening."""
    async with DemoServers(username=USER, password=PASSWORD, messages=[FIRST]) as servers:
        idle_imap = await asyncio.to_thread(_login, servers.imap_port)
        idle_smtp = aiosmtplib.SMTP(
            hostname=LOOPBACK, port=servers.smtp_port, use_tls=False, start_tls=False
        )
        await idle_smtp.connect()
        imap_port, smtp_port = servers.imap_port, servers.smtp_port

    assert asyncio.all_tasks() == {asyncio.current_task()}
    for port in (imap_port, smtp_port):
        with pytest.raises(OSError):
            socket.create_connection((LOOPBACK, port), timeout=1).close()
    idle_imap.shutdown()
    idle_smtp.close()
