"""The JSON codec: :func:`serialize` and :func:`deserialize` for every message.

Contract: :func:`deserialize` of *any* input returns a valid message or raises a
:class:`~protocol.errors.ProtocolError` subclass, never anything else:

* over ``max_size`` bytes (UTF-8) -> :class:`MessageTooLargeError` (before parsing);
* not JSON, invalid UTF-8, nesting too deep, not ``str``/``bytes`` -> :class:`DecodeError`;
* JSON that is not an object, lacks ``type``, or breaks the schema -> :class:`InvalidMessageError`;
* an unknown ``type`` -> :class:`UnknownMessageTypeError`;
* another major ``version`` (or an unparsable one) -> :class:`VersionMismatchError`.

Version rule (see :mod:`protocol.version`): a message of our major and a newer
minor may carry optional top-level fields we do not know; they are dropped before
validation. For the same or an older minor an unknown field is an error.

Speed: the fast path is one call of pydantic's Rust JSON parser and validator on
the discriminated union (a ``TypeAdapter`` built once), so the JSON is parsed
once. Only a message that fails validation is parsed a second time, to tell the
caller precisely why (and to apply the newer-minor rule).

orjson is deliberately not on the *decode* path: measured here (pydantic 2.14,
orjson 3.13), ``orjson.loads`` followed by Python-mode validation is slower than
pydantic's one-pass JSON validation, and decoding only through pydantic-core means
orjson's edge cases (integers past 64 bits read as floats, a 1024-level depth
limit) can never make an install with and one without orjson disagree.

*Encoding* uses orjson when it is installed (the optional ``speed`` extra), on the
instance ``__dict__`` of a validated model: ~3x cheaper than pydantic's serializer
and byte-identical to it for every model whose serialization is plain (checked per
class once: no serializer but the enum-as-text ones, no computed field, alias or
exclusion). Anything orjson would render differently - a datetime or dataclass,
a ``float`` subclass, an integer past 64 bits, a lone surrogate, a value assigned
after validation that is not JSON - makes orjson raise, and the
message goes through ``__pydantic_serializer__.to_json`` as before; so the output
never depends on whether orjson is installed. ``bench.codec`` measures orjson
dumps+loads as the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import pydantic_core
from pydantic import BaseModel, TypeAdapter, ValidationError

from protocol.errors import (
    DecodeError,
    ErrorCode,
    InvalidMessageError,
    MessageTooLargeError,
    ProtocolError,
    ShardsError,
    UnknownMessageTypeError,
)
from protocol.messages import MESSAGE_TYPES, BaseMessage, ErrorMessage, Message, MessageType
from protocol.messages.base import MAX_MESSAGE_SIZE
from protocol.version import PROTOCOL_VERSION, check_version, is_newer_minor

__all__ = [
    "deserialize",
    "error_message_from",
    "json_safe",
    "message_adapter",
    "serialize",
    "serialize_bytes",
]

message_adapter: TypeAdapter[Message] = TypeAdapter(Message)
"""The pydantic adapter of the :data:`~protocol.messages.Message` union (built once)."""

# The adapter's core validator, called directly: ``TypeAdapter.validate_json`` is a Python
# wrapper that forwards six keyword arguments (all at their defaults here), ~0.3 us a call.
_validate_json = message_adapter.validator.validate_json

_dumps: Callable[..., bytes] | None
try:
    from orjson import OPT_PASSTHROUGH_DATACLASS, OPT_PASSTHROUGH_DATETIME
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover - orjson is the optional "speed" extra
    _dumps = None
    _DUMPS_OPTIONS = 0
else:
    # Whatever orjson would render unlike pydantic goes to ``default`` (which refuses it).
    # Not OPT_PASSTHROUGH_SUBCLASS: a str/int/dict/list subclass renders as its base
    # value in both, and that option sends every StrEnum through a slow path (+0.2 us).
    _DUMPS_OPTIONS = OPT_PASSTHROUGH_DATETIME | OPT_PASSTHROUGH_DATACLASS

# Field serializers whose output orjson reproduces: a StrEnum member as its value.
_PLAIN_SERIALIZERS = frozenset({"_type_as_text", "_code_as_text"})
_PLAIN_FIELDS: dict[type, int] = {}
"""Per model class: its number of fields when orjson may encode its ``__dict__``, else -1."""
_TYPE_VALUES = frozenset(t.value for t in MessageType)
_MAX_ERRORS_REPORTED = 5


def serialize(msg: BaseMessage) -> str:
    """The message as compact JSON text."""
    return serialize_bytes(msg).decode()


def serialize_bytes(msg: BaseMessage) -> bytes:
    """The message as compact JSON, UTF-8 encoded (what goes on a socket)."""
    if _dumps is not None:
        fields = _PLAIN_FIELDS.get(type(msg))
        if fields is None:
            fields = _plain_fields(type(msg))
        values = msg.__dict__
        if len(values) == fields:
            try:
                return _dumps(values, default=_nested, option=_DUMPS_OPTIONS)
            except TypeError:  # orjson.JSONEncodeError: let pydantic render it
                pass
    return msg.__pydantic_serializer__.to_json(msg)


def deserialize(data: str | bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Message:
    """Parse and validate one message; raises only :class:`ProtocolError` subclasses."""
    try:
        # Fast path: bytes (what sockets deliver) or short text need no size arithmetic.
        kind = type(data)
        if (kind is bytes and len(data) <= max_size) or (kind is str and len(data) * 4 <= max_size):
            payload: str | bytes = data
        else:
            payload = _check_size(data, max_size)
        try:
            msg: Message = _validate_json(payload)
        except ValidationError as exc:
            return _diagnose(payload, exc)
        if msg.version != PROTOCOL_VERSION:
            check_version(msg.version)
        return msg
    except ProtocolError:
        raise
    except Exception as exc:  # the contract: nothing but ProtocolError escapes
        raise DecodeError(f"undecodable message: {type(exc).__name__}") from exc


def error_message_from(exc: ShardsError, *, ref_id: str | None = None) -> ErrorMessage:
    """The ERROR message reporting ``exc``: its stable code, text and (sanitised) details.

    Any other exception becomes ``internal_error`` without its text (never leak
    internals to a remote). An unusable ``ref_id`` is dropped rather than raising.
    """
    if isinstance(exc, ShardsError):
        code = exc.code
        text = exc.message
        details = json_safe(exc.details) if exc.details else None
    else:
        code = ErrorCode.INTERNAL_ERROR
        text = "internal error"
        details = None
    text = _text(text[:1024])
    if len(text) > 1024:
        text = text[:1021] + "..."
    if ref_id is not None and not _is_message_id(ref_id):
        ref_id = None
    return ErrorMessage(
        error_code=code,
        error_message=text,
        details=cast("dict[str, Any] | None", details),
        ref_id=ref_id,
    )


def json_safe(value: Any, _depth: int = 0, _budget: list[int] | None = None) -> Any:
    """A JSON-safe, bounded copy of ``value`` (for ERROR ``details``): at most 200
    values, depth 6, strings of 1024 characters; anything else becomes its ``repr``."""
    budget = [200] if _budget is None else _budget
    budget[0] -= 1
    if budget[0] < 0 or _depth > 6:
        return None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # str() of a huge int can itself raise (the 4300-digit limit)
        return int(value) if -(2**63) <= value < 2**63 else f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value[:1024])[:1024]
    if isinstance(value, dict):
        return {
            _text(_repr(k, 64) if not isinstance(k, str) else k[:64])[:64]: json_safe(
                v, _depth + 1, budget
            )
            for k, v in list(value.items())[:32]
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, _depth + 1, budget) for v in list(value)[:32]]
    return _text(_repr(value, 256))[:256]


# Helpers ----------------------------------------------------------------------


def _plain_fields(cls: type) -> int:
    """How many fields ``cls`` has if orjson of an instance's ``__dict__`` is exactly
    what pydantic's serializer would write; -1 when it is not (or not a model).
    Only model classes are remembered."""
    if not issubclass(cls, BaseModel):
        return -1
    decorators = cls.__pydantic_decorators__
    config = cls.model_config
    plain = (
        not decorators.model_serializers
        and not getattr(cls, "__pydantic_root_model__", False)
        and config.get("extra") != "allow"
        and all(d.cls_var_name in _PLAIN_SERIALIZERS for d in decorators.field_serializers.values())
        and not cls.__pydantic_computed_fields__
        and not config.get("serialize_by_alias")
        and config.get("ser_json_inf_nan", "null") == "null"
        and all(
            f.alias is None and f.serialization_alias is None and not f.exclude
            for f in cls.__pydantic_fields__.values()
        )
    )
    fields = len(cls.__pydantic_fields__) if plain else -1
    _PLAIN_FIELDS[cls] = fields
    return fields


def _nested(value: object) -> dict[str, Any]:
    """orjson's ``default``: a nested plain model as its ``__dict__``; refuse anything else."""
    fields = _PLAIN_FIELDS.get(type(value))
    if fields is None:
        fields = _plain_fields(type(value))
    if fields >= 0:  # a plain model
        values = value.__dict__
        if len(values) == fields:
            return values
    raise TypeError(f"not encoded by orjson: {type(value).__name__}")


def _check_size(data: object, max_size: int) -> str | bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        if size > max_size:
            raise MessageTooLargeError(
                f"message of {size} bytes is over the limit of {max_size}",
                details={"size": size, "limit": max_size},
            )
        if isinstance(data, memoryview):
            return data.tobytes()
        return data if isinstance(data, bytes) else bytes(data)
    if isinstance(data, str):
        # A character is at most 4 UTF-8 bytes: only long texts need the exact count.
        if len(data) * 4 > max_size:
            try:
                size = len(data.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise DecodeError("message text is not valid Unicode") from exc
            if size > max_size:
                raise MessageTooLargeError(
                    f"message of {size} bytes is over the limit of {max_size}",
                    details={"size": size, "limit": max_size},
                )
        return data
    raise DecodeError(f"a message is str or bytes, not {type(data).__name__}")


def _diagnose(payload: str | bytes, exc: ValidationError) -> Message:
    """Turn a failed fast-path validation into the precise error (or a message)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        text = errors[0]["msg"].removeprefix("Invalid JSON: ")
        raise DecodeError(f"invalid JSON: {_short(text)}") from None
    try:
        obj = pydantic_core.from_json(payload)
    except ValueError as parse_exc:  # pragma: no cover - the fast path parsed it already
        raise DecodeError(f"invalid JSON: {parse_exc}") from None
    if not isinstance(obj, dict):
        raise InvalidMessageError(
            f"a message is a JSON object, not {_json_kind(obj)}",
            details={"kind": _json_kind(obj)},
        )
    if "version" in obj:
        check_version(obj["version"])
    msg_type = obj.get("type")
    if msg_type is None:
        raise InvalidMessageError("the message has no 'type' field")
    if not isinstance(msg_type, str) or msg_type not in _TYPE_VALUES:
        shown = _short(msg_type if isinstance(msg_type, str) else repr(msg_type), 64)
        raise UnknownMessageTypeError(f"unknown message type {shown!r}", details={"type": shown})
    model = MESSAGE_TYPES[MessageType(msg_type)]
    version = obj.get("version", PROTOCOL_VERSION)
    if is_newer_minor(version):
        known = model.model_fields
        unknown = [k for k in obj if k not in known]
        if unknown:
            stripped = {k: v for k, v in obj.items() if k in known}
            try:
                return cast("Message", model.model_validate(stripped))
            except ValidationError as exc2:
                raise _invalid(msg_type, exc2) from None
    raise _invalid(msg_type, exc) from None


def _invalid(msg_type: str, exc: ValidationError) -> InvalidMessageError:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    reported = []
    for err in errors[:_MAX_ERRORS_REPORTED]:
        loc = [str(part) for part in err["loc"]]
        if loc and loc[0] == msg_type:  # the union's tag, noise for a reader
            loc = loc[1:]
        reported.append(
            {"loc": _short(".".join(loc), 128), "type": err["type"], "msg": _short(err["msg"])}
        )
    first = reported[0] if reported else {"loc": "", "msg": "invalid"}
    where = f"{first['loc']}: " if first["loc"] else ""
    return InvalidMessageError(
        f"invalid {msg_type} message: {where}{first['msg']}",
        details={"type": msg_type, "errors": reported, "error_count": len(errors)},
    )


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__  # pragma: no cover


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(text: str) -> str:
    # A lone surrogate cannot be serialized: escape it rather than fail later.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _repr(value: object, limit: int) -> str:
    try:
        return repr(value)[:limit]
    except Exception:  # a foreign __repr__ may raise; the error report must not
        return f"<unrepresentable {type(value).__name__}>"


def _is_message_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 64
        and all(c.isascii() and (c.isalnum() or c in "_-:.") for c in value)
    )
