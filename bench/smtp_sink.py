"""An aiosmtpd server with implicit TLS that accepts every message and keeps none of it.

Run by ``environment.SmtpSink`` in its own process: ``smtp_sink.py HOST PORT CERT KEY``. It
prints ``ready`` once it listens and stops on SIGTERM.
"""

from __future__ import annotations

import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    """Accepts every recipient and every message."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.count += 1
        return "250 2.0.0 OK"


def main() -> None:
    host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(Sink(), hostname=host, port=port, ssl_context=context,
                            server_hostname="localhost", ready_timeout=10)
    try:
        controller.start()
    except OSError as exc:
        print(f"failed {exc}", flush=True)
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
