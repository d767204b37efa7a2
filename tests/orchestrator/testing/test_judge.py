"""``judge:``: the real openai client asks an OpenAI-compatible server (the test one,
over real HTTP) whether an answer meets a sentence; anything but a clear yes fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import Settings
from orchestrator.testing.judge import Judge, parse_verdict
from tests.fake_openai import Answer, FakeOpenAI

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def llm(server: FakeOpenAI) -> FakeOpenAI:
    server.script.clear()
    server.received.clear()
    return server


def judge_for(llm: FakeOpenAI) -> Judge:
    return Judge.from_settings(
        Settings(judge_base_url=llm.base_url, judge_model="judge-1", judge_api_key="k" * 40)
    )


async def test_the_judge_asks_with_the_criterion_and_the_answer(llm: FakeOpenAI) -> None:
    llm.script.append(Answer('{"pass": true, "reason": "greets Ada"}'))
    judge = judge_for(llm)
    try:
        verdict = await judge.verdict(criterion="greets by name", user="hi", answer="Hello Ada")
    finally:
        await judge.aclose()
    assert verdict.passed and verdict.reason == "greets Ada"
    (received,) = llm.received
    assert received.body["model"] == "judge-1"
    assert received.headers["authorization"] == "Bearer " + "k" * 40
    prompt = received.body["messages"][-1]["content"]
    assert "greets by name" in prompt and '"Hello Ada"' in prompt and '"hi"' in prompt


@pytest.mark.parametrize(
    ("answer", "passed", "reason"),
    [
        (Answer('{"pass": false, "reason": "no name"}'), False, "no name"),
        (Answer('```json\n{"pass": true, "reason": "ok"}\n```'), True, "ok"),
        (Answer("Yes, it does."), False, "the judge answered no verdict"),
        (Answer(status=500, error={"message": "down"}), False, "HTTP 500"),
    ],
)
async def test_only_a_clear_yes_passes(
    llm: FakeOpenAI, answer: Answer, passed: bool, reason: str
) -> None:
    llm.script.append(answer)
    judge = judge_for(llm)
    try:
        verdict = await judge.verdict(criterion="c", user=None, answer="a")
    finally:
        await judge.aclose()
    assert verdict.passed is passed and reason in verdict.reason


def test_parse_verdict_needs_a_boolean() -> None:
    assert not parse_verdict('{"pass": "yes"}').passed
    assert parse_verdict('Sure: {"pass": true}').passed


def test_a_scenario_with_judge_runs_it_per_turn(
    llm: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUDGE_BASE_URL", llm.base_url)
    monkeypatch.setenv("JUDGE_MODEL", "judge-1")
    llm.script.extend(
        [
            Answer(json.dumps({"pass": True, "reason": "it welcomes"})),
            Answer(json.dumps({"pass": False, "reason": "it does not say the time"})),
        ]
    )
    path = tmp_path / "judged.yaml"
    path.write_text(
        "turns:\n"
        "  - welcome: {judge: welcomes the user}\n"
        "  - user: my name is Ada\n"
        "    judge: tells the time\n"
    )
    assert main(["test", str(path), "--handler", "default"]) == 1
    out = capsys.readouterr().out
    assert "judge: expected 'tells the time'" in out
    assert "got      no: it does not say the time" in out
    assert "welcome" not in out  # the welcome passed
    assert len(llm.received) == 2
    assert "Nice to meet you, Ada." in llm.received[1].body["messages"][-1]["content"]
