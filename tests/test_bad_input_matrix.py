"""Every boundary (HTTP routes, WebSocket handshake, frames, configuration) answers
bad input as the matrix in tests/bad_input_matrix.py says: no 500, nothing lost,
no secret in any error body."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_input_matrix import ROWS, Probe, markdown, observe

TABLE, PROBE = observe()


@pytest.mark.parametrize(
    ("boundary", "text", "expected", "observed"), TABLE, ids=[f"{r[0]}: {r[1]}" for r in TABLE]
)
def test_each_bad_input_gives_the_documented_result(
    boundary: str, text: str, expected: str, observed: str
) -> None:
    """The observed status/code (or socket outcome, or start-up refusal) is the expected one."""
    assert observed == expected
    assert not observed.startswith("5")


def test_the_matrix_covers_every_boundary() -> None:
    """Rows exist for all four boundaries, so a missing family would show."""
    assert {row[0] for row in ROWS} == {"HTTP", "WS handshake", "frame", "config"}
    assert len(ROWS) >= 50


def test_no_error_body_contains_a_secret_or_the_token() -> None:
    """No key, API key or issued token appears in any body the matrix produced."""
    probe: Probe = PROBE
    assert len(probe.bodies) > 30
    for body in probe.bodies:
        for secret in probe.secrets:
            assert secret not in body
        assert probe.token not in body
        assert probe.token.split(".")[2] not in body


def test_the_documented_table_is_the_generated_one() -> None:
    """docs/reliability.md's table is what ``python -m tests.bad_input_matrix`` prints."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "reliability.md").read_text()
    assert markdown(TABLE) in page
