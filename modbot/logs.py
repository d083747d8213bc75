"""Where log lines go and how they look: text for a terminal, JSON lines for a log collector.

``[logging] format = "json"`` writes one JSON object per line with ``time`` (UTC, RFC 3339),
``level``, ``logger`` and ``message`` (plus ``exception`` when a traceback is logged), so that
journald, Docker or a collector can index them without parsing prose. The formatters add
nothing of their own: the rule that logs never hold a body, a subject, a password or a token is
kept by every module that logs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    Bound late, like ``logging.lastResort``: a stream swapped after set-up (a test runner's
    capture, a CLI runner) receives the lines, and one closed since is never written to.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # under the handler's lock: Handler.handle holds it here
        super().emit(record)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``[logging] format``: ``"json"`` or ``"text"``."""
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


# Libraries whose INFO lines an admin should not have to read: envelopes (names, addresses,
# subjects), SQL and its parameters, and APScheduler's "Running job ..." and "executed
# successfully" around every poll, which would bury modbot's one line per poll.
QUIET_LIBRARIES = ("imapclient", "sqlalchemy", "aiosmtplib", "mail", "mailparser", "alembic",
                   "apscheduler")


def hold_at_warning(*names: str) -> None:
    """Hold the loggers ``names`` at WARNING or above, whatever level the application logs at.

    For libraries that log what must never reach a log at INFO or DEBUG: a protocol exchange,
    SQL and its result rows, token requests. A level set lower (or left unset, which inherits
    the root's) is raised to WARNING; a higher one is kept.
    """
    for name in names:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def silence(name: str) -> None:
    """Drop every record of logger ``name``, for a library that logs message content at any
    level. A filter, unlike a level alone, also keeps records from logging's last resort."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.CRITICAL + 1)
    logger.addFilter(lambda record: False)


def install(level: str, fmt: str = "text") -> logging.Handler:
    """Send the root logger's records at ``level`` and above to stderr in ``fmt``, with the
    libraries in ``QUIET_LIBRARIES`` held at WARNING.

    Calling it again replaces the handler it installed before and leaves any other alone.
    """
    hold_at_warning(*QUIET_LIBRARIES)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, StderrHandler):
            root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    return handler
