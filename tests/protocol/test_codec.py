"""The JSON codec: round trips of every type, the error taxonomy, the version rule."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import protocol
from protocol import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    BaseMessage,
    ChatMessage,
    DecodeError,
    ErrorCode,
    ErrorMessage,
    InvalidMessageError,
    MessageTooLargeError,
    MessageType,
    ProtocolError,
    UnknownMessageTypeError,
    VersionMismatchError,
    check_version,
    deserialize,
    error_message_from,
    serialize,
    serialize_bytes,
)
from tests.protocol.test_messages import SAMPLES

__all__: list[str] = []


@pytest.mark.parametrize("message_type", list(MessageType))
def test_round_trip_every_type(message_type: MessageType) -> None:
    sample = SAMPLES[message_type]
    text = serialize(sample)
    assert isinstance(text, str)
    compact = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    assert text == compact
    for wire in (text, serialize_bytes(sample), bytearray(serialize_bytes(sample))):
        parsed = deserialize(wire)
        assert type(parsed) is MESSAGE_TYPES[message_type]
        assert parsed == sample
    assert json.loads(text)["type"] == message_type.value


def test_serialize_is_compact_json_with_envelope() -> None:
    msg = ChatMessage(sender_id=1, sender_name="A", content="hi", timestamp=5.0)
    data = json.loads(serialize(msg))
    assert data["type"] == "chat"
    assert data["version"] == PROTOCOL_VERSION
    assert data["timestamp"] == 5.0
    assert data["message_id"] == msg.message_id
    assert serialize_bytes(msg) == serialize(msg).encode()


def _wire(**fields: Any) -> str:
    base: dict[str, Any] = {"type": "chat", "content": "hello"}
    base.update(fields)
    return json.dumps(base, ensure_ascii=False)


def test_missing_envelope_fields_get_defaults() -> None:
    msg = deserialize('{"type":"chat","content":"x"}')
    assert isinstance(msg, ChatMessage)
    assert msg.version == PROTOCOL_VERSION and msg.message_id


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (b"\xff\xfe", DecodeError, ErrorCode.INVALID_JSON),
        (b'{"type":"chat","content":"\xff"}', DecodeError, ErrorCode.INVALID_JSON),
        ('{"type":"chat","content":"\\ud800"}', DecodeError, ErrorCode.INVALID_JSON),
        ("", DecodeError, ErrorCode.INVALID_JSON),
        ("{", DecodeError, ErrorCode.INVALID_JSON),
        ('{"type":"chat","content":"x"} trailing', DecodeError, ErrorCode.INVALID_JSON),
        ("[" * 10_000 + "]" * 10_000, DecodeError, ErrorCode.INVALID_JSON),
        ('{"a":' * 5000 + "1" + "}" * 5000, DecodeError, ErrorCode.INVALID_JSON),
        ("[]", InvalidMessageError, ErrorCode.INVALID_MESSAGE),
        ("null", InvalidMessageError, ErrorCode.INVALID_MESSAGE),
        ('"chat"', InvalidMessageError, ErrorCode.INVALID_MESSAGE),
        ("12", InvalidMessageError, ErrorCode.INVALID_MESSAGE),
        ("{}", InvalidMessageError, ErrorCode.INVALID_MESSAGE),
        ('{"content":"x"}', InvalidMessageError, ErrorCode.INVALID_MESSAGE),
        (_wire(content=""), InvalidMessageError, ErrorCode.INVALID_MESSAGE),
        (
            _wire(extra=1),
            InvalidMessageError,
            ErrorCode.INVALID_MESSAGE,
        ),
        (
            '{"type":"chat","content":"x","sender_id":' + "9" * 5000 + "}",
            DecodeError,
            ErrorCode.INVALID_JSON,
        ),
        (
            '{"type":"chat","content":"x","sender_id":99999999999999999999999}',
            InvalidMessageError,
            ErrorCode.INVALID_MESSAGE,
        ),
        (
            '{"type":"chat","content":"x","timestamp":NaN}',
            InvalidMessageError,
            ErrorCode.INVALID_MESSAGE,
        ),
        (
            '{"type":"chat","content":"x","timestamp":1e999}',
            InvalidMessageError,
            ErrorCode.INVALID_MESSAGE,
        ),
        (
            '{"type":"error","error_code":"bad_request","error_message":"x","details":{"a":NaN}}',
            InvalidMessageError,
            ErrorCode.INVALID_MESSAGE,
        ),
        (
            '{"type":"chat","content":"x","sender_id":true}',
            InvalidMessageError,
            ErrorCode.INVALID_MESSAGE,
        ),
        ('{"type":"nope"}', UnknownMessageTypeError, ErrorCode.UNKNOWN_TYPE),
        ('{"type":"CHAT","content":"x"}', UnknownMessageTypeError, ErrorCode.UNKNOWN_TYPE),
        ('{"type":5}', UnknownMessageTypeError, ErrorCode.UNKNOWN_TYPE),
        ('{"type":null}', InvalidMessageError, ErrorCode.INVALID_MESSAGE),
        (_wire(version="2.0"), VersionMismatchError, ErrorCode.VERSION_MISMATCH),
        (_wire(version="0.9"), VersionMismatchError, ErrorCode.VERSION_MISMATCH),
        (_wire(version="one"), VersionMismatchError, ErrorCode.VERSION_MISMATCH),
        (_wire(version=1.0), VersionMismatchError, ErrorCode.VERSION_MISMATCH),
        (_wire(version="2.0", brand_new=1), VersionMismatchError, ErrorCode.VERSION_MISMATCH),
        ('{"type":"brand_new","version":"2.0"}', VersionMismatchError, ErrorCode.VERSION_MISMATCH),
    ],
)
def test_bad_input_maps_to_one_protocol_error(
    data: str | bytes, error: type[ProtocolError], code: ErrorCode
) -> None:
    with pytest.raises(error) as info:
        deserialize(data)
    assert type(info.value) is error
    assert info.value.code is code
    assert isinstance(info.value, ProtocolError)
    err = error_message_from(info.value)
    assert err.error_code is code
    assert deserialize(serialize(err)) == err


@pytest.mark.parametrize("data", [None, 12, 1.5, ["x"], {"type": "chat"}, object()])
def test_non_text_input_is_a_decode_error(data: Any) -> None:
    with pytest.raises(DecodeError):
        deserialize(data)


def test_invalid_message_names_field_and_type() -> None:
    with pytest.raises(InvalidMessageError) as info:
        deserialize(_wire(content=""))
    assert "chat" in str(info.value) and "content" in str(info.value)
    assert info.value.details["type"] == "chat"
    assert info.value.details["errors"][0]["loc"] == "content"


def test_size_limit_before_parsing() -> None:
    big = _wire(content="x" * 2000)
    assert deserialize(big, max_size=len(big)).type is MessageType.CHAT
    with pytest.raises(MessageTooLargeError):
        deserialize(big, max_size=len(big) - 1)
    with pytest.raises(MessageTooLargeError):
        deserialize(big.encode(), max_size=100)
    with pytest.raises(MessageTooLargeError):
        deserialize("{" * (protocol.MAX_MESSAGE_SIZE + 1))
    # the limit is in UTF-8 bytes, also for str input
    wide = _wire(content="€" * 1000)
    assert len(wide) < 2000 < len(wide.encode())
    with pytest.raises(MessageTooLargeError):
        deserialize(wide, max_size=2000)
    assert deserialize(wide, max_size=len(wide.encode())).type is MessageType.CHAT


# Version rule ------------------------------------------------------------------


def test_same_version_and_older_minor_accepted_exactly() -> None:
    assert deserialize(_wire(version="1.0")).version == "1.0"
    with pytest.raises(InvalidMessageError):
        deserialize(_wire(version="1.0", mood="happy"))


def test_newer_minor_drops_unknown_optional_fields() -> None:
    msg = deserialize(_wire(version="1.7", mood="happy", flags=[1, 2]))
    assert isinstance(msg, ChatMessage)
    assert msg.content == "hello" and msg.version == "1.7"
    assert "mood" not in msg.model_dump()
    # known fields are still validated
    with pytest.raises(InvalidMessageError):
        deserialize(_wire(version="1.7", mood="happy", content=""))
    # and a field we need is still required
    with pytest.raises(InvalidMessageError):
        deserialize(json.dumps({"type": "chat", "version": "1.7", "mood": 1}))
    # a type a newer minor added is unknown to us
    with pytest.raises(UnknownMessageTypeError):
        deserialize('{"type":"emote","version":"1.1"}')


def test_version_mismatch_names_both_versions() -> None:
    with pytest.raises(VersionMismatchError) as info:
        deserialize(_wire(version="3.2"))
    assert "3.2" in str(info.value) and PROTOCOL_VERSION in str(info.value)
    assert info.value.details == {"remote_version": "3.2", "local_version": PROTOCOL_VERSION}
    with pytest.raises(VersionMismatchError) as info2:
        check_version("banana")
    assert "banana" in str(info2.value) and PROTOCOL_VERSION in str(info2.value)
    check_version("1.0")
    check_version("1.99")
    check_version("1.1")
    assert protocol.is_newer_minor("1.2") and not protocol.is_newer_minor("1.1")
    assert not protocol.is_newer_minor("1.0")


# ERROR messages -----------------------------------------------------------------


def test_error_message_from_keeps_code_and_sanitises_details() -> None:
    exc = InvalidMessageError(
        "nope",
        details={"nan": float("nan"), "obj": object(), "big": 2**70, "nested": {"k": [1, 2]}},
    )
    err = error_message_from(exc, ref_id="abc-1")
    assert isinstance(err, ErrorMessage)
    assert err.error_code is ErrorCode.INVALID_MESSAGE
    assert err.error_message == "nope"
    assert err.ref_id == "abc-1"
    assert err.details is not None and err.details["nested"] == {"k": [1, 2]}
    assert deserialize(serialize(err)) == err


def test_error_message_from_drops_bad_ref_and_hides_foreign_errors() -> None:
    err = error_message_from(protocol.NotConnectedError("login first"), ref_id="bad id!")
    assert err.ref_id is None and err.error_code is ErrorCode.UNAUTHORIZED
    foreign = error_message_from(RuntimeError("secret path /etc/x"))  # type: ignore[arg-type]
    assert foreign.error_code is ErrorCode.INTERNAL_ERROR
    assert "secret" not in foreign.error_message
    long = error_message_from(protocol.ShardsError("x" * 5000))
    assert len(long.error_message) <= 1024


def test_every_error_class_maps_to_a_valid_error_message() -> None:
    for name in protocol.errors.__all__:
        cls = getattr(protocol.errors, name)
        if isinstance(cls, type) and issubclass(cls, protocol.ShardsError):
            err = error_message_from(cls())
            assert err.error_code is cls.code
            assert deserialize(serialize(err)) == err


# orjson and the standard library behave the same -----------------------------


# orjson is optional ----------------------------------------------------------


def test_codec_works_without_orjson_installed() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["orjson"] = None  # make "import orjson" fail
        import protocol
        assert "orjson" not in sys.modules or sys.modules["orjson"] is None
        m = protocol.create_chat_message(1, "A", "hi")
        assert protocol.deserialize(protocol.serialize(m)) == m
        for bad in ("NaN", '{"type":"chat","content":"x","timestamp":NaN}', "[" * 5000):
            try:
                protocol.deserialize(bad)
            except protocol.ProtocolError:
                pass
            else:
                raise SystemExit(f"accepted {bad!r}")
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_base_message_subclasses_are_all_registered() -> None:
    def leaves(cls: type[BaseMessage]) -> set[type[BaseMessage]]:
        subs = set(cls.__subclasses__())
        found = {s for s in subs if "type" in s.__dict__.get("__annotations__", {})}
        for s in subs:
            found |= leaves(s)
        return found

    assert leaves(BaseMessage) <= set(MESSAGE_TYPES.values())


def test_error_message_from_survives_hostile_details() -> None:
    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    exc = protocol.ShardsError(
        "bad \ud800 text" + "\ud800" * 1000,
        details={
            "huge": 10**5000,
            "obj": BadRepr(),
            BadRepr(): 1,
            "surrogate": "\udfff",
            "\udfff" * 60: "\udfff" * 1000,
            "deep": [[[[[[[[[[1]]]]]]]]]],
            "wide": list(range(1000)),
            "big_str": "x" * 5000,
            "inf": float("inf"),
        },
    )
    err = error_message_from(exc)
    wire = serialize(err)
    assert deserialize(wire) == err
    assert err.details is not None
    assert err.details["huge"].startswith("<int of")
    assert len(err.details["wide"]) == 32
