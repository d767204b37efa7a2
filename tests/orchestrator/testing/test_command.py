"""``orchestrator test``: exit 0 when every scenario passes, 1 when any fails, 2 for
a bad file, handler or setting (one line, no traceback); per-turn failure
report; JUnit XML."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.live_server import server_environment

ROOT = Path(__file__).resolve().parents[3]

PASSING = """\
name: remembers the user's name
variables: {plan: gold}
turns:
  - welcome: {says: {contains: Hello}}
  - user: my name is Ada
    expect:
      says: Nice to meet you, Ada.
      variables: {name: Ada, plan: gold}
  - user: show me a card
    expect: {cards: [about], fallback: false, within_ms: 5000}
  - user: why is the sky blue?
    expect: {fallback: true, says: {matches: "^I do not know"}}
"""

FAILING = """\
- name: wrong expectations
  turns:
    - user: my name is Ada
      expect:
        says: {contains: Bob}
        variables: {name: Bob, plan: null}
    - user: show me a card
      expect: {cards: [menu], fallback: true}
- name: right
  turns:
    - user: hello
      expect: {says: "You said: hello"}
"""


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No .env and no handler setting from the machine running the tests."""
    monkeypatch.chdir(tmp_path)
    for name in ("CONVERSATION_HANDLER", "JUDGE_MODEL", "JUDGE_BASE_URL", "ORCHESTRATOR_ENV"):
        monkeypatch.delenv(name, raising=False)


def scenario(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_passing_scenarios_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["test", scenario(tmp_path, "ok.yaml", PASSING), "--handler", "default"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS remembers the user's name" in out
    assert "1 scenario: 1 passed, 0 failed" in out


def test_the_handler_setting_is_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVERSATION_HANDLER", "tests.orchestrator.handlers_for_tests:async_object")
    path = scenario(tmp_path, "o.yaml", "turns: [{user: hi, expect: {says: 'object: hi'}}]")
    assert main(["test", path]) == 0, capsys.readouterr().out


def test_a_failing_turn_says_what_was_expected_and_what_came_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit = tmp_path / "results.xml"
    path = scenario(tmp_path, "bad.yaml", FAILING)
    code = main(["test", path, "--handler", "default", "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL wrong expectations ({path}[0])" in out
    assert "PASS right" in out
    assert "  turn 1 'my name is Ada'" in out
    assert "says: expected contains 'Bob'" in out
    assert "got      'Nice to meet you, Ada.'" in out
    assert 'variables: expected {"name": "Bob"}' in out
    assert "  turn 2 'show me a card'" in out
    assert 'cards: expected ["menu"]' in out and 'got      ["about"]' in out
    assert "fallback: expected true" in out
    assert "came back: text 'Here is a content card.', cards [\"about\"]" in out
    assert "latency" in out
    assert "2 scenarios: 1 passed, 1 failed" in out
    suites = ET.parse(junit).getroot()  # noqa: S314 (our own file)
    assert suites.get("tests") == "2" and suites.get("failures") == "1"
    cases = suites.findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["wrong expectations", "right"]
    failure = cases[0].find("failure")
    assert failure is not None and "turn 1 'my name is Ada'" in (failure.text or "")
    assert cases[1].find("failure") is None


def test_a_latency_budget_fails_a_slow_turn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "turns: [{user: hi, within_ms: 100, expect: {says: 'hi'}}]"
    code = main(
        ["test", scenario(tmp_path, "slow.yaml", text), "--handler",
         "tests.orchestrator.handlers_for_tests:slow_echo"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "latency: expected within 100 ms" in out


@pytest.mark.parametrize(
    ("files", "handler", "message"),
    [
        ({"a.yaml": "turns: [{user: hi}\n"}, "default", "a.yaml: YAML syntax error at line 2"),
        ({"a.yaml": "turns: [{user: hi, expext: {}}]"}, "default", r"turns[0].expext: unknown"),
        ({"a.yaml": "turns: [{expect: {says: x}}]"}, "default", "turns[0]: a turn needs `user`"),
        ({"a.yaml": "turns: [{user: hi}]"}, "no_such_module:handle", "cannot import"),
        (
            {"a.yaml": "handler: no_such_module:handle\nturns: [{user: hi}]"},
            "default",
            "a.yaml: handler: cannot import 'no_such_module'",
        ),
        ({"a.yaml": "turns: [{user: hi}]"}, "llm", "needs LLM_MODEL"),
        ({"a.yaml": "turns: [{user: hi, judge: greets}]"}, "default", "set JUDGE_MODEL"),
    ],
)
def test_bad_files_and_configuration_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    handler: str,
    message: str,
) -> None:
    paths = [scenario(tmp_path, name, text) for name, text in files.items()]
    code = main(["test", *paths, "--handler", handler])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert message in lines[0]
    assert captured.out == ""


def test_no_traceback_from_the_real_command(tmp_path: Path) -> None:
    """The installed entry point, in a process of its own: one line, exit 2."""
    bad = scenario(tmp_path, "bad.yaml", "turns:\n  - user: hi\n    expect: {says: {regex: x}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "test", bad, "--handler", "default"],
        cwd=tmp_path,
        env=server_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {bad}: turns[0].expect.says.regex: unknown key (expected one of contains, "
        "matches)\n"
    )
    good = scenario(tmp_path, "good.yaml", "turns: [{user: hi, expect: {says: 'You said: hi'}}]")
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "test", good, "--handler", "default"],
        cwd=tmp_path,
        env=server_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["test"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["test", "x.yaml", "--handler", "default", "--url", "http://127.0.0.1:1"])
    assert exited.value.code == 2
    assert main(["test", "missing.yaml"]) == 2
    assert "missing.yaml: no such file or directory" in capsys.readouterr().err
