"""Logging set-up: text or JSON lines on standard error, with the segment in every line about one.

The daemon sets `current_segment` in each segment's task; asyncio copies context variables into
the tasks and callbacks started from it, so every line logged while that segment is handled (by
the daemon, a classifier or a sink) carries its URI without each call having to pass it.
"""
from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone

from .contract import iso_utc

current_segment: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "livewatch_segment", default=None
)


class SegmentFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "segment", None) is None:
            record.segment = current_segment.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, segment (when about one), error."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": iso_utc(datetime.fromtimestamp(record.created, timezone.utc)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "segment", None):
            entry["segment"] = record.segment
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SegmentFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch of file events
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
