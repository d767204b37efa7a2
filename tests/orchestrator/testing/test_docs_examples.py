"""docs/testing.md is true: its scenario passes `orchestrator test` with the built-in
handler (judged by the OpenAI-style test server), and each of its pytest examples
is written to a file and passes pytest as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.fake_openai import Answer, FakeOpenAI
from tests.live_server import server_environment

ROOT = Path(__file__).resolve().parents[3]
PAGE = (ROOT / "docs" / "testing.md").read_text()


def examples() -> dict[str, str]:
    found = dict(re.findall(r"<!-- testing-example: (\S+) -->\n```python\n(.*?)```", PAGE, re.S))
    assert len(found) == 3, "docs/testing.md lost a pytest example"
    return found


def test_the_scenario_on_the_page_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    block = re.search(r"<!-- testing-scenario -->\n```yaml\n(.*?)```", PAGE, re.S)
    assert block is not None
    path = tmp_path / "name.yaml"
    path.write_text(block.group(1))
    monkeypatch.chdir(tmp_path)
    with FakeOpenAI() as judge:
        judge.script.append(Answer(json.dumps({"pass": True, "reason": "it says so"})))
        monkeypatch.setenv("JUDGE_BASE_URL", judge.base_url)
        monkeypatch.setenv("JUDGE_MODEL", "judge")
        code = main(["test", str(path), "--handler", "default"])
        assert code == 0, capsys.readouterr().out
        (asked,) = judge.received
    assert "admits it does not know" in asked.body["messages"][-1]["content"]


@pytest.mark.parametrize("name", sorted(examples()))
def test_each_pytest_example_passes_as_written(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text(examples()[name])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", name, "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env=server_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_replay_walk_through_is_what_replay_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 conversations with the built-in handler, archived through the store; three
    asked a question. The page's changed handler, replayed over them, prints the page."""
    import asyncio

    from orchestrator.archive.store import ArchiveStore
    from tests.orchestrator.testing.test_replay import live_session

    handler = re.search(r"<!-- replay-handler: (\S+) -->\n```python\n(.*?)```", PAGE, re.S)
    output = re.search(r"<!-- replay-output -->\n```\n(.*?)```", PAGE, re.S)
    assert handler is not None and output is not None
    (tmp_path / handler.group(1)).write_text(handler.group(2))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    questions = {17: "why is the sky blue?", 88: "where is my order?", 150: "how do I cancel?"}
    url = f"sqlite:///{tmp_path / 'archive.db'}"

    async def production() -> None:
        store = ArchiveStore(url)
        await store.migrate()
        records = []
        for n in range(1, 201):
            lines = ["hello", "show me a card", questions.get(n, "thanks"), "bye"]
            records.append(await live_session("default", f"c-{n:03d}", lines))
        await store.write(records)
        await store.close()

    asyncio.run(production())
    capsys.readouterr()  # the sessions' own log lines
    code = main(["replay", "--archive-url", url, "--limit", "200", "--handler", "my_bot:handle"])
    printed = capsys.readouterr().out
    assert code == 1

    def steady(text: str) -> str:  # times vary
        text = re.sub(r"latency [\d.]+ ms", "latency N ms", text)
        return re.sub(r"\), [\d.]+ s$", "), N s", text, flags=re.M)

    assert steady(printed) == steady(output.group(1))
