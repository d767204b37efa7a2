"""The README's conversation-handler example runs as written, so the docs cannot rot.

The block after the ``readme-handler-example`` marker is written to a module,
loaded through ``CONVERSATION_HANDLER`` and driven over the control socket
in-process, like the video host would; it must also pass ``mypy --strict``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.orchestrator.control_helpers import make_app, next_named, output_text, say

ROOT = Path(__file__).resolve().parents[3]
MARKER = "<!-- readme-handler-example:"
MODULE = "readme_handler_example"


def example_source() -> str:
    readme = (ROOT / "README.md").read_text()
    assert readme.count(MARKER) == 1, "exactly one marked handler example"
    after = readme[readme.index(MARKER) :]
    match = re.search(r"```python\n(.*?)```", after, flags=re.DOTALL)
    assert match is not None, "a ```python block follows the marker"
    return match.group(1)


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / f"{MODULE}.py"
    path.write_text(example_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop(MODULE, None)


def test_the_example_is_what_the_readme_says_to_configure() -> None:
    """The block names the module and setting the prose tells the reader to use."""
    source = example_source()
    assert source.startswith("# my_bot.py: CONVERSATION_HANDLER=my_bot:handle\n")
    assert "CONVERSATION_HANDLER=my_bot:handle .venv/bin/python -m orchestrator serve" in (
        (ROOT / "README.md").read_text()
    )


def test_the_example_type_checks(example_module: Path) -> None:
    """The example is typed correctly against the handler API (mypy --strict)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(example_module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_runs_a_conversation(example_module: Path) -> None:
    """Welcome with a card, a variable kept for the session, two messages in one turn,
    stop speaking and a fallback, exactly as the example's comments say."""
    with TestClient(make_app(conversation_handler=f"{MODULE}:handle")) as client:
        issued: dict[str, Any] = client.post(
            "/auth/authorize", json={"claims": {"user": "Ada"}}
        ).json()
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            ws.send_text(say("", init=True))
            welcome = next_named(ws, "conversationResponse")
            assert output_text(welcome) == "Hi Ada! How can I help? @showcards(menu)"
            assert welcome["body"]["variables"]["public-menu"] == {
                "component": "options",
                "data": {"options": [{"label": "Opening hours"}, {"label": "Talk to a person"}]},
            }

            ws.send_text(say("Opening hours"))
            hours = next_named(ws, "conversationResponse")
            assert output_text(hours) == "We are open nine to five."
            assert hours["body"]["variables"] == {"topic": "hours", "hours": "09:00-17:00"}

            ws.send_text(say("tell me more"))
            more = next_named(ws, "conversationResponse")
            assert output_text(more) == "On Saturdays we close at noon."
            assert more["body"]["variables"] == {"topic": "hours"}  # per-reply ones are not kept

            ws.send_text(say("talk to a person"))
            first, second = ws.receive_json(), ws.receive_json()
            assert (first["name"], output_text(first)) == (
                "conversationResponse",
                "One moment, please.",
            )
            assert second["name"] == "startSpeaking"
            assert second["body"]["text"] == "I am connecting you now."
            assert second["body"]["optionalArgs"] == {"canBeInterrupted": False}

            ws.send_text(say("stop"))
            assert next_named(ws, "stopSpeaking")["body"] == {"personaId": 1}  # as the DP sent it

            ws.send_text(say("what is the meaning of life"))
            fallback = next_named(ws, "conversationResponse")
            assert output_text(fallback) == "Let me find out."
            assert fallback["body"]["fallback"] is True
