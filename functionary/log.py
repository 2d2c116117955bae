"""Structured logs: one line per event, ``key=value`` pairs, never key material.

ts=2026-11-25T12:00:00.123Z level=info member=2 event=commit height=41 hash=9f..
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.hex()
    s = str(value)
    if not s or any(c in s for c in ' "=\n\\'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class KeyValueFormatter(logging.Formatter):
    def __init__(self, member: int | None = None) -> None:
        super().__init__()
        self.member = member

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}"]
        if self.member is not None:
            parts.append(f"member={self.member}")
        fields = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        event = fields.pop("event", None)
        parts.append(f"event={_fmt(event or record.getMessage())}")
        if event and record.msg and record.getMessage() != event:
            parts.append(f"msg={_fmt(record.getMessage())}")
        parts.extend(f"{k}={_fmt(v)}" for k, v in fields.items())
        if record.exc_info and record.levelno >= logging.ERROR:
            parts.append(f"exc={_fmt(repr(record.exc_info[1]))}")
        return " ".join(parts)


def setup_logging(member: int | None, level: str = "info", stream: Any = None) -> logging.Logger:
    logger = logging.getLogger("functionary")
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter(member))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"event": name, **fields})
