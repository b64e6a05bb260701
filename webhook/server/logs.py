"""Structured JSON log lines on stdout, one object per line.

Review logs carry identifiers and outcomes only — never object bodies,
annotation values or key material.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import BinaryIO

import orjson


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, with the record's extra `fields`."""
    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


def setup(level: str = "info") -> None:
    """JSON logs on stdout at `level`, for the webhook's and uvicorn's loggers."""
    global _stream
    _stream = sys.stdout.buffer
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


class ReviewLog:
    """The per-review log line, written without the logging machinery.

    One line per admission review is on the hot path; building a LogRecord and
    running handlers costs more than the review itself. The line has the same
    shape as the JsonFormatter's and honours the `webhook.review` logger's level.
    Inside the event loop the line goes to the stream's buffer and is flushed
    right after the current step (`loop.call_soon`), i.e. after the answer was
    handed to the transport: the write system call is off the review's latency,
    and reviews answered in one loop step share it. Outside a loop it is
    flushed at once.
    """

    LEVELS = {"info": logging.INFO, "warning": logging.WARNING}

    def __init__(self) -> None:
        self.logger = logging.getLogger("webhook.review")
        self._second = -1
        self._prefix = ""
        self._flush_pending = False

    def write(self, msg: str, level: str, fields: dict[str, object]) -> None:
        """One JSON line for a review, written directly (no logging machinery on the hot path)."""
        if not self.logger.isEnabledFor(self.LEVELS[level]):
            return
        now = time.time()
        second = int(now)
        if second != self._second:  # format the date part once a second, not once a review
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, object] = {
            "ts": f"{self._prefix}.{int((now - second) * 1000):03d}Z",
            "level": level, "logger": "webhook.review", "msg": msg,
        }
        entry.update(fields)
        stream = _stream
        if stream is None:
            self.logger.log(self.LEVELS[level], msg, extra={"fields": fields})
            return
        stream.write(orjson.dumps(entry) + b"\n")
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            stream.flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush, stream)

    def _flush(self, stream: BinaryIO) -> None:
        self._flush_pending = False
        try:
            stream.flush()
        except (OSError, ValueError):  # stdout closed or gone: the review was answered; nothing to do
            pass


_stream: BinaryIO | None = None
review_log = ReviewLog()
