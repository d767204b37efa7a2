"""tokens.jsonsafe: what counts as plain JSON, and a serialiser that never fails."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tokens.jsonsafe import (
    MAX_JSON_DEPTH,
    NotPlainJsonError,
    check_parsed,
    check_plain,
    dumps,
    finite_float,
    loads,
)


def nested(depth: int) -> Any:
    """``depth`` levels of arrays (one level is ``[]``)."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        "\ud800",
        {"a": ["x", "\udfff"]},
        {"\ud800": 1},
        {"n": float("inf")},
        [float("nan")],
        nested(MAX_JSON_DEPTH + 1),
        {"a": nested(MAX_JSON_DEPTH)},
    ],
    ids=["lone-high", "lone-low-in-list", "surrogate-key", "inf", "nan", "too-deep", "too-deep-2"],
)
def test_values_that_are_not_plain_are_refused(value: Any) -> None:
    """Lone surrogates (values or names), non-finite numbers and deep nesting are refused."""
    with pytest.raises(NotPlainJsonError):
        check_plain(value)


def test_plain_values_at_the_limits_pass() -> None:
    """A surrogate pair (one astral character), 1e308 and 64 levels are plain."""
    check_plain({"t": "\U0001f600 é", "n": 1e308, "deep": nested(MAX_JSON_DEPTH - 1)})


def test_check_parsed_finds_what_the_text_holds() -> None:
    """The prefilter walks whenever an escape or the bracket count could hide a problem."""
    text = '{"a": "\\uDBFF"}'
    with pytest.raises(NotPlainJsonError):
        check_parsed(text, json.loads(text))
    text = "[" * 70 + "]" * 70
    with pytest.raises(NotPlainJsonError):
        check_parsed(text, json.loads(text))
    text = '{"a": "\\ud83d\\ude00"}'
    check_parsed(text, json.loads(text))


def test_finite_float_refuses_overflow() -> None:
    """``1e999`` would parse to ``inf``: refused, while 1e308 is a number."""
    assert json.loads("[1e308]", parse_float=finite_float) == [1e308]
    with pytest.raises(NotPlainJsonError):
        json.loads("[1e999]", parse_float=finite_float)


@pytest.mark.parametrize(
    ("value", "read_back"),
    [
        ({"a": "\ud800"}, {"a": "\ud800"}),
        ({"a": "é"}, {"a": "é"}),
        ({"n": float("inf"), "m": float("nan"), "k": 1.5}, {"n": None, "m": None, "k": 1.5}),
        ({"o": object, "s": frozenset()}, {"o": str(object), "s": "frozenset()"}),
        ({"deep": nested(2000)}, None),
    ],
    ids=["surrogate", "non-ascii", "non-finite", "non-json-object", "recursion-deep"],
)
def test_dumps_never_fails_and_gives_utf8_json(value: Any, read_back: Any) -> None:
    """Whatever a record holds, ``dumps`` gives JSON text that encodes as UTF-8."""
    text = dumps(value)
    parsed = json.loads(text.encode("utf-8"))
    if read_back is not None:
        assert parsed == read_back
    else:
        assert isinstance(parsed, dict)


@pytest.mark.parametrize(
    "text",
    ["[NaN]", '{"a": Infinity}', "[1e999]", '["\\ud800"]', "[" * 70 + "]" * 70, "\ufeff{}", "{"],
    ids=["nan", "infinity", "overflow", "lone-surrogate", "too-deep", "bom", "truncated"],
)
def test_loads_refuses_what_is_not_plain_json(text: str) -> None:
    """``loads`` refuses as ``json.loads`` with the hooks and ``check_parsed`` would."""
    with pytest.raises(ValueError):
        loads(text)


def test_loads_reads_plain_json_like_json_loads() -> None:
    """Same values as ``json.loads``, decoder reused across calls."""
    text = '{"a": [1, 2.5, "\\ud83d\\ude00", null, true], "b": {"c": "é"}}'
    assert loads(text) == json.loads(text)
    assert loads("[1e308]") == [1e308]
