"""``orchestrator test --url``: the same scenarios against a running server, over its
control socket, with the scenario's claims and starting variables; the same
results as in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.live_server import LiveServer, free_port

pytestmark = pytest.mark.server

SCENARIO = """\
name: greets with claims and variables
claims: {user: Ada}
variables: {plan: gold}
turns:
  - welcome: {says: Hello Ada on gold}
  - user: hi
    expect:
      says: heard hi
      variables: {plan: gold, last: hi, turn_only: true}
      fallback: false
      cards: []
  - user: card
    expect: {says: A card., cards: [menu], variables: {last: card}}
  - user: why?
    expect: {fallback: true, within_ms: 5000}
"""

WRONG = """\
name: expects another greeting
turns:
  - welcome: {says: Hello Bob on silver}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    env = {"CONVERSATION_HANDLER": "tests.orchestrator.testing.bots:greeter"}
    with LiveServer(env) as live:
        yield live


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVERSATION_HANDLER", raising=False)


def test_the_same_scenario_passes_remotely_and_in_process(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "greeter.yaml"
    path.write_text(SCENARIO)
    assert main(["test", str(path), "--url", server.base_url]) == 0, capsys.readouterr()
    handler = "tests.orchestrator.testing.bots:greeter"
    assert main(["test", str(path), "--handler", handler]) == 0, capsys.readouterr()


def test_a_remote_failure_is_reported_per_turn(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(WRONG)
    assert main(["test", str(path), "--url", server.base_url]) == 1
    out = capsys.readouterr().out
    assert "says: expected 'Hello Bob on silver'" in out
    assert "got      'Hello None on None'" in out


def test_a_server_that_does_not_answer_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(WRONG)
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["test", str(path), "--url", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot reach {url}/api/jwt"), err
