"""The shared log formats: ids after the message (text) or as keys (JSON), tracebacks kept."""

from __future__ import annotations

import io
import json
import logging
import sys

from protocol.logformat import JsonFormatter, StaticIds, TextFormatter, configure


def _record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    exc_info = None
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info() if extra.pop("with_exc", False) else None
    record = logging.LogRecord("mesh.node", logging.WARNING, __file__, 1, msg, args, exc_info)
    record.created = 86400.25  # 1970-01-02T00:00:00.250Z
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_text_puts_the_ids_on_the_first_line_only() -> None:
    line = TextFormatter().format(_record("x %d", 1, peer_id="ab12", session_id=None))
    assert line.endswith("WARNING mesh.node: x 1 [peer=ab12]")
    assert TextFormatter().format(_record("plain")).endswith("mesh.node: plain")
    with_tb = TextFormatter().format(_record("failed", request_id="r1", with_exc=True))
    first, *rest = with_tb.splitlines()
    assert first.endswith("failed [request=r1]") and rest[-1] == "ValueError: boom"


def test_json_keys_ids_access_fields_and_traceback() -> None:
    out = json.loads(
        JsonFormatter().format(
            _record("GET", request_id="r2", account_id=None, status=200, ms=1.5, with_exc=True)
        )
    )
    assert out["time"] == "1970-01-02T00:00:00.250Z"
    assert (out["level"], out["logger"], out["message"]) == ("WARNING", "mesh.node", "GET")
    assert (out["request_id"], out["status"], out["ms"]) == ("r2", 200, 1.5)
    assert "account_id" not in out and out["exc"].endswith("ValueError: boom")


def test_static_ids_fill_only_what_the_record_lacks() -> None:
    ids = StaticIds()
    ids.set(peer_id="mine")
    own = _record()
    assert ids.filter(own) and own.peer_id == "mine"  # type: ignore[attr-defined]
    other = _record(peer_id="theirs")
    assert ids.filter(other) and other.peer_id == "theirs"  # type: ignore[attr-defined]


def test_configure_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    ids = StaticIds()
    ids.set(peer_id="p1")
    try:
        configure(logging.INFO, "json", ids, stream)
        assert len(root.handlers) == 1
        logging.getLogger("mesh.test").info("hi %s", "there")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    out = json.loads(stream.getvalue())
    assert (out["message"], out["peer_id"]) == ("hi there", "p1")
