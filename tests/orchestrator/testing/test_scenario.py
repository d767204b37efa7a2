"""Scenario files: the issue's keys as written, YAML and JSON, one or a list; every
malformed file is one ScenarioError naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.testing.scenario import (
    Says,
    ScenarioError,
    load_file,
    scenario_files,
)

# The example of issue 24, byte for byte (its duplicated `fallback` included).
ISSUE_EXAMPLE = """\
name: remembers the user's name        # optional
claims: {user: Ada}                    # optional: the session's custom claims
variables: {plan: gold}                # optional: the variables it starts with
turns:
  - welcome: {says: {contains: "Hello"}}    # the init turn (optional)
  - user: my name is Ada
    expect:
      says: "Nice to meet you, Ada."        # exact, or {contains: ...}, {matches: regex}
  - user: what is my name
    expect:
      says: {contains: Ada}
      cards: []                              # ids of the cards shown
      variables: {}                          # a subset the session must hold after the turn
      fallback: false
      fallback: false
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_issue_example_reads_as_written(tmp_path: Path) -> None:
    (scenario,) = load_file(write(tmp_path, "name.yaml", ISSUE_EXAMPLE))
    assert scenario.name == "remembers the user's name"
    assert scenario.claims == {"user": "Ada"} and scenario.variables == {"plan": "gold"}
    assert scenario.welcome is not None and scenario.welcome.says == Says("contains", "Hello")
    first, second = scenario.steps
    assert first.user == "my name is Ada"
    assert first.expect.says == Says("exact", "Nice to meet you, Ada.")
    assert first.expect.cards is None and first.expect.fallback is None
    assert second.expect.says == Says("contains", "Ada")
    assert second.expect.cards == [] and second.expect.variables == {}
    assert second.expect.fallback is False


def test_json_and_a_list_of_scenarios(tmp_path: Path) -> None:
    document = [
        {"turns": [{"user": "hi", "expect": {"says": {"matches": "^You said"}}}]},
        {"name": "second", "turns": [{"user": "x", "judge": "greets", "within_ms": 500}]},
    ]
    first, second = load_file(write(tmp_path, "suite.json", json.dumps(document)))
    assert first.name == "suite[0]" and first.label.endswith("suite.json[0]")
    assert first.steps[0].expect.says == Says("matches", "^You said")
    assert second.steps[0].expect.judge == "greets"
    assert second.steps[0].expect.within_ms == 500.0


def test_a_directory_gives_its_scenario_files_in_order(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", "turns: [{user: hi}]")
    write(tmp_path, "a.json", '{"turns": [{"user": "hi"}]}')
    write(tmp_path, "notes.txt", "not a scenario")
    assert [p.name for p in scenario_files([str(tmp_path)])] == ["a.json", "b.yml"]
    with pytest.raises(ScenarioError, match="no such file"):
        scenario_files([str(tmp_path / "missing.yaml")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("turns: [{user: hi}\n", "YAML syntax error at line 2"),
        ("nmae: x\nturns: [{user: hi}]", "nmae: unknown key"),
        ("turns: [{user: hi, expct: {}}]", r"turns\[0\]\.expct: unknown key"),
        ("turns: [{user: hi, expect: {say: x}}]", r"turns\[0\]\.expect\.say: unknown key"),
        (
            "turns: [{user: hi, expect: {says: {contain: x}}}]",
            r"turns\[0\]\.expect\.says\.contain: unknown key",
        ),
        ("turns: [{user: hi}, {expect: {says: x}}]", r"turns\[1\]: a turn needs `user`"),
        ("turns: [{user: hi}, {welcome: {}}]", r"turns\[1\]\.welcome: only the first"),
        ("turns: []", "turns: expected a list of turns"),
        ("name: x", "turns: expected a list of turns"),
        ("turns: [{user: hi, expect: {says: {matches: '('}}}]", "matches: not a regular"),
        ("turns: [{user: hi, within_ms: -1}]", r"turns\[0\]\.within_ms: expected a positive"),
        ("turns: [{user: hi, expect: {fallback: maybe}}]", "fallback: expected true or false"),
        ("turns: [{user: [1]}]", r"turns\[0\]\.user: expected the user's words"),
        ("claims: [a]\nturns: [{user: hi}]", "claims: expected a mapping"),
        ("- turns: [{user: hi}]\n- turns: [{usr: hi}]", r"\[1\]\.turns\[0\]\.usr: unknown key"),
        ("just text", "expected a mapping of name, handler"),
        (
            "variables: {a: &x [1, 1], b: &y [*x, *x]}\nturns: [{user: hi}]",
            "YAML syntax error at line 1 column 34: aliases",
        ),
    ],
)
def test_a_malformed_scenario_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ScenarioError, match=message) as raised:
        load_file(path)
    line = str(raised.value)
    assert line.startswith(f"{path}: ") and "\n" not in line


def test_a_json_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '{"turns": [\n  {"user": "hi",}\n]}')
    with pytest.raises(ScenarioError, match=r"bad\.json: JSON syntax error at line 2"):
        load_file(path)


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, "big.yaml", "# " + "x" * (4 * 1024 * 1024))
    with pytest.raises(ScenarioError, match="larger than 4 MiB"):
        load_file(path)
