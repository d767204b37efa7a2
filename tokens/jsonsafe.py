"""Plain JSON in and out: what the HTTP bodies and control frames may hold, and
a serialiser that cannot fail on what a session holds.

A value is *plain* when every string is Unicode text (no lone surrogate, which
a JSON ``\\ud800`` escape yields and UTF-8 cannot encode), every number is
finite (``1e999`` parses to ``inf``, which strict JSON cannot write) and it
nests at most ``MAX_JSON_DEPTH`` deep (deeper, re-encoding it can exhaust the
recursion limit). Accepted, any of these would make every later read of the
session fail; so the boundaries refuse them, and the read side copes anyway.

Standard library only: ``orchestrator.control.protocol`` (sans I/O) uses it too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_JSON_DEPTH = 64
# A lone surrogate can only come from a \uD800-\uDFFF escape (strict UTF-8 has
# none) or a str built in-process; anything else needs no walk.
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


class NotPlainJsonError(ValueError):
    """Parsed JSON that is not plain (see the module docstring)."""


def refuse_constant(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: ``NaN`` and ``Infinity`` are not JSON
    (RFC 8259); accepted, they would later go out as text no strict parser reads."""
    raise ValueError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """``json.loads``'s ``parse_float``: a literal past float's range is refused, not ``inf``."""
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise NotPlainJsonError(f"number {shown} is out of range")
    return value


_PLAIN_DECODER = json.JSONDecoder(parse_constant=refuse_constant, parse_float=finite_float)


def loads(text: str) -> Any:
    """``text`` parsed as plain JSON, or ``ValueError`` (``NotPlainJsonError`` for
    JSON that is not plain) or ``RecursionError``: ``json.loads`` with
    ``refuse_constant``, ``finite_float`` and ``check_parsed``, through one
    decoder made once (``json.loads`` with hooks builds a new one per call)."""
    value = decode(_PLAIN_DECODER, text)
    check_parsed(text, value)
    return value


def decode(decoder: json.JSONDecoder, text: str) -> Any:
    """``json.loads(text)`` with ``decoder``'s settings, ``decoder`` made once by the
    caller (``json.loads`` with hooks builds a new one per call): the same BOM
    refusal first, then ``decoder.decode``."""
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return decoder.decode(text)


def check_plain(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """``NotPlainJsonError`` unless ``value`` is plain (see the module docstring)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise NotPlainJsonError(f"{item} is not a JSON number")
        elif isinstance(item, Mapping | list | tuple):
            if depth > max_depth:
                raise NotPlainJsonError(f"JSON nested deeper than {max_depth} levels")
            if isinstance(item, Mapping):
                for name, member in item.items():
                    if isinstance(name, str):
                        _check_text(name)
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)


def check_parsed(text: str, value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """``check_plain(value)`` for ``value = json.loads(text, parse_float=finite_float)``,
    walking it only when ``text`` could hold a surrogate or nest that deep."""
    if text.count("[") + text.count("{") > max_depth or _may_hold_surrogate(text):
        check_plain(value, max_depth=max_depth)


def _may_hold_surrogate(text: str) -> bool:
    # Plain ASCII without a \u escape cannot: the usual frame, answered without a regex.
    if text.isascii() and "\\u" not in text:
        return False
    return _MAYBE_SURROGATE.search(text) is not None


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise NotPlainJsonError(
                "a string holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
            ) from None


_UTF8 = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Compact JSON of ``value`` that always encodes as UTF-8 and never raises.

    Lone surrogates go out as ``\\u`` escapes (valid JSON any parser reads);
    should a value that is not plain JSON have got in anyway, it is written
    with non-finite numbers, members deeper than ``MAX_JSON_DEPTH`` and
    non-JSON objects replaced (``null``, ``null``, their ``str()``), instead of
    failing every read of the record holding it.
    """
    try:
        return utf8_text(value, _UTF8, _ASCII)
    except (ValueError, TypeError, RecursionError):
        return utf8_text(_plain_copy(value, 0), _UTF8, _ASCII)


def utf8_text(value: Any, utf8: json.JSONEncoder, escaped: json.JSONEncoder) -> str:
    """``utf8.encode(value)``, or ``escaped.encode(value)`` when that text holds a lone
    surrogate: UTF-8 cannot carry one, a ``\\u`` escape can (any JSON parser reads it
    back). Only non-ASCII text is looked at."""
    text = utf8.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = escaped.encode(value)
    return text


def _plain_copy(value: Any, depth: int) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int):
        return value
    if depth >= MAX_JSON_DEPTH:
        return None
    if isinstance(value, Mapping):
        return {
            name if isinstance(name, str) else str(name): _plain_copy(member, depth + 1)
            for name, member in value.items()
        }
    if isinstance(value, list | tuple):
        return [_plain_copy(member, depth + 1) for member in value]
    return str(value)
