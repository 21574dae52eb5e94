"""The one logging setup of every process: ``serve`` (and each of its workers), the consumers,
every CLI command.

``setup_logging(settings)`` sends the root logger to stderr, in ``settings.log_format``:

- ``json`` (the default, for production): one JSON object per line, ``{"time", "level",
  "logger", "message"}`` plus ``request_id`` when the line is written while serving a request,
  ``exception`` (the traceback) when there is one, and the ``extra`` fields the caller gave;
- ``text``: ``time level logger [request id] message``, for humans.

The request id travels in a ``ContextVar`` (``REQUEST_ID``) that the HTTP app sets around each
request, so any module's logger picks it up without passing it along. Calling
``setup_logging`` again replaces the handler it installed (tests, the demo's in-process
server); it never stacks handlers.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Literal

import msgspec

from feedserver.config import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("feedserver_request_id", default=None)
LogFormat = Literal["json", "text"]

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id", "taskName", "rid", "color_message"}
_ENCODER = msgspec.json.Encoder()


class LogLine(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One line of the JSON log."""

    time: str
    level: str
    logger: str
    message: str
    request_id: str | None = None
    exception: str | None = None
    extra: dict[str, str | int | float | bool | None] | None = None


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def _extra(record: logging.LogRecord) -> dict[str, str | int | float | bool | None] | None:
    out: dict[str, str | int | float | bool | None] = {}
    for key, value in vars(record).items():
        if key in _STANDARD or key.startswith("_"):
            continue
        out[key] = value if isinstance(value, str | int | float | bool) or value is None \
            else str(value)
    return out or None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        exception = None
        if record.exc_info:
            exception = self.formatException(record.exc_info)
        elif record.exc_text:
            exception = record.exc_text
        line = LogLine(
            time=datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            level=record.levelname, logger=record.name, message=record.getMessage(),
            request_id=getattr(record, "request_id", None), exception=exception,
            extra=_extra(record),
        )
        return _ENCODER.encode(line).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        return super().format(record)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so a second setup replaces it."""


class _StderrHandler(_Handler):
    """Writes to ``sys.stderr`` as it is when each record is written, not as it was at setup:
    whoever swapped it since (a test runner's capture, a supervisor) gets the lines, and a
    stream closed meanwhile is never written to (as ``logging.lastResort`` does)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr


def setup_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Configure the root logger from ``settings.log_format`` and ``settings.log_level``."""
    return configure(settings.log_format, settings.log_level, stream)


def configure(log_format: LogFormat, level: str = "INFO",
              stream: IO[str] | None = None) -> logging.Handler:
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
