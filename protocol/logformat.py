"""The log line formats both programs write: ``text`` or ``json`` (one object per line).

Defined once so that an operator's log pipeline reads ``python -m lobby`` and
``python -m mesh`` alike. Formatting only (no handler I/O here, no clock: a
record's own ``created`` time is printed); each program's filter puts its ids on
the records (the lobby: request, session, account, connection and peer ids per
request; the mesh: its own peer id), and :func:`configure` installs the pair.

* ``text``: ``2026-01-01 12:00:00,000 INFO lobby.access: GET /api/status 200 0.4ms
  account=- [request=9f2c...]``: the ids present, in brackets after the message;
* ``json``: ``time`` (UTC ISO 8601), ``level``, ``logger``, ``message``, every id
  present (:data:`ID_FIELDS`), the fields of an access line (:data:`ACCESS_FIELDS`,
  when the record has them) and ``exc`` (a formatted traceback, if any).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import IO, Any, Literal

__all__ = [
    "ACCESS_FIELDS",
    "ID_FIELDS",
    "JsonFormatter",
    "LogFormat",
    "StaticIds",
    "TextFormatter",
    "configure",
]

LogFormat = Literal["text", "json"]

ID_FIELDS = ("request_id", "session_id", "account_id", "conn_id", "peer_id")
"""Record attributes that identify what a line is about (None or absent: not known)."""
ACCESS_FIELDS = ("method", "route", "status", "ms")
"""Record attributes of an access-log line (passed with ``extra=``)."""

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_TEXT_NAMES = {
    "request_id": "request",
    "session_id": "session",
    "account_id": "account",
    "conn_id": "conn",
    "peer_id": "peer",
}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request=... session=...]`` (only the ids present)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(
            f"{_TEXT_NAMES[name]}={value}"
            for name in ID_FIELDS
            if (value := getattr(record, name, None)) is not None
        )
        if not ids:
            return text
        head, sep, tail = text.partition("\n")  # a traceback stays below the line
        return f"{head} [{ids}]{sep}{tail}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        when = _EPOCH + datetime.timedelta(seconds=record.created)  # the record's own time
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*ID_FIELDS, *ACCESS_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


class StaticIds(logging.Filter):
    """Puts fixed ids (e.g. a node's own ``peer_id``, once known) on every record."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, Any] = {}

    def set(self, **ids: Any) -> None:
        self.ids.update(ids)

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in self.ids.items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def configure(
    level: str | int,
    fmt: LogFormat,
    ids: logging.Filter | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Send every log line to ``stream`` (stderr) in ``fmt``, with ``ids`` as its filter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if ids is not None:
        handler.addFilter(ids)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
