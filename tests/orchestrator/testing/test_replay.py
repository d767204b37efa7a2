"""``orchestrator replay``: real archives (SQLite, and a throwaway PostgreSQL cluster)
filled with real sessions (the conversation core in-process, archived through the
store's own write path), replayed through a candidate handler and compared with
what the DP said; exit 0/1/2; JSON, JUnit, scenario files ``orchestrator test``
runs; live state marked; the judge over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.archive.record import END_DISCONNECTED, ArchivedSession, ClaimPolicy
from orchestrator.archive.store import ArchiveStore
from orchestrator.cli import main
from orchestrator.config import Settings
from orchestrator.control.options import ControlOptions
from orchestrator.handlers.loader import load_handler
from orchestrator.sessions.model import VariableWriter
from orchestrator.testing.engine import InProcessConversation, close_options
from orchestrator.testing.replay import recorded
from orchestrator.testing.replay_report import Progress
from tests.fake_openai import Answer, FakeOpenAI
from tests.postgres_server import RestartablePostgres, postgres_server

DEFAULT = "default"
REVISED = "tests.orchestrator.testing.bots:revised"
CONCIERGE = "tests.orchestrator.testing.bots:concierge"

# Production's conversations with the built-in handler: (id, claims, user lines).
CONVERSATIONS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("s-name", {"user": "Ada"}, ["my name is Ada", "what is my name", "thanks"]),
    ("s-card", {}, ["hello", "show me a card", "why is the sky blue?"]),
    ("s-echo", {"plan": "gold"}, ["good morning", "help"]),
]


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CONVERSATION_HANDLER", "JUDGE_MODEL", "JUDGE_BASE_URL", "ARCHIVE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def postgres() -> Iterator[RestartablePostgres]:
    with postgres_server() as server:
        yield server


async def live_session(
    spec: str,
    session_id: str,
    lines: Sequence[str],
    *,
    claims: Mapping[str, Any] | None = None,
    api_patches: Mapping[int, dict[str, Any]] | None = None,
    settings: Settings | None = None,
) -> ArchivedSession:
    """A session run through the conversation core as live (``api_patches[i]``: set
    through the sessions API's path before line ``i``), archived as on its end."""
    settings = settings or Settings()
    options = ControlOptions.from_settings(settings, load_handler(spec, settings))
    conversation = InProcessConversation(options, claims=claims, session_id=session_id)
    await conversation.start()
    try:
        await conversation.welcome()
        for index, line in enumerate(lines):
            if api_patches and index in api_patches:
                await conversation.connection.patch_variables(
                    api_patches[index], VariableWriter.BACKEND
                )
            await conversation.say(line)
    finally:
        await conversation.close()
        await close_options(options)
    return ArchivedSession.of(conversation.session, END_DISCONNECTED, ClaimPolicy())


def fill(url: str, records: Sequence[ArchivedSession]) -> None:
    async def write() -> None:
        store = ArchiveStore(url)
        try:
            await store.migrate()
            assert await store.write(records) == len(records)
        finally:
            await store.close()

    asyncio.run(write())


def production(url: str) -> None:
    async def run() -> list[ArchivedSession]:
        return [
            await live_session(DEFAULT, session_id, lines, claims=claims)
            for session_id, claims, lines in CONVERSATIONS
        ]

    fill(url, asyncio.run(run()))


@pytest.fixture(params=["sqlite", "postgresql"])
def any_archive(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An archive of production's conversations: a SQLite file, or a database on the cluster."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'archive.db'}"
    else:
        server: RestartablePostgres = request.getfixturevalue("postgres")
        url = server.create_database(f"replay_{secrets.token_hex(6)}")
    production(url)
    return url


@pytest.fixture
def archive(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    production(url)
    return url


def replay(url: str, *args: str) -> list[str]:
    return ["replay", "--archive-url", url, *args]


def test_the_same_handler_answers_as_in_production(
    any_archive: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(replay(any_archive, "--handler", DEFAULT))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 sessions replayed: 3 same, 0 differ (0 of 11 turns; 0 marked)" in out
    assert "DIFF" not in out


def test_a_changed_handler_shows_each_difference_classified(
    any_archive: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "replay.json"
    junit = tmp_path / "replay.xml"
    code = main(
        replay(any_archive, "--handler", REVISED, "--json", str(report), "--junit", str(junit))
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert "3 sessions replayed: 1 same, 2 differ (3 of 11 turns; 0 marked)" in out
    assert "DIFF s-name (3 turns): whitespace_or_case" in out
    assert "DIFF s-card (3 turns): cards_changed, text_changed, fallback_changed" in out
    assert "turn 2 'show me a card': cards_changed" in out
    assert "expected: text 'I do not know that one yet.', cards [], fallback true" in out
    assert "got:      text 'Let me find out.'" in out
    assert "s-echo" not in out  # nothing to say about a session that answers the same

    document = json.loads(report.read_text())
    assert document["summary"] == {**document["summary"], "sessions": 3, "differ": 2}
    sessions = {session["id"]: session for session in document["sessions"]}
    kinds = [turn["kinds"] for turn in sessions["s-card"]["turns"]]
    assert kinds == [
        ["identical"],
        ["identical"],
        ["cards_changed"],
        ["text_changed", "fallback_changed"],
    ]
    assert [t["kinds"] for t in sessions["s-name"]["turns"]][-1] == ["whitespace_or_case"]
    assert sessions["s-echo"]["differs"] is False
    assert sessions["s-card"]["turns"][2]["expected"] == {
        "text": "Here is a content card.",
        "cards": ["about"],
        "fallback": False,
    }
    assert sessions["s-card"]["variables"] == {}  # the session's own: the same at the end

    suites = ET.parse(junit).getroot()  # noqa: S314 (our own file)
    assert suites.get("tests") == "3" and suites.get("failures") == "2"
    cases = {case.get("name"): case for case in suites.iter("testcase")}
    assert cases["s-echo"].find("failure") is None
    failure = cases["s-card"].find("failure")
    assert failure is not None and "turn 2 'show me a card'" in (failure.text or "")


def test_filters_and_sessions_select_what_is_replayed(
    archive: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay(archive, "--handler", REVISED, "--session", "s-echo")) == 0
    assert "1 session replayed: 1 same" in capsys.readouterr().out
    assert main(replay(archive, "--handler", REVISED, "--claim", "plan:gold")) == 0
    assert "1 session replayed" in capsys.readouterr().out
    assert main(replay(archive, "--handler", REVISED, "--limit", "2")) == 1
    assert "2 sessions replayed" in capsys.readouterr().out
    assert (
        main(replay(archive, "--handler", REVISED, "--since", "2001-01-01", "--until", "1e9")) == 0
    )
    assert "0 sessions replayed" in capsys.readouterr().out


def test_an_ab_comparison_needs_no_production(
    archive: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay(archive, "--handler", DEFAULT, "--against", DEFAULT)) == 0
    capsys.readouterr()
    assert main(replay(archive, "--handler", REVISED, "--against", DEFAULT)) == 1
    out = capsys.readouterr().out
    assert "DIFF s-card (3 turns): cards_changed, variables_changed, text_changed" in out


def test_sessions_that_depended_on_live_state_are_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    fill(
        url,
        [
            asyncio.run(
                live_session(
                    CONCIERGE, "s-vip", ["a table", "a table"], api_patches={1: {"vip": 1}}
                )
            ),
            asyncio.run(live_session(CONCIERGE, "s-plain", ["a table"])),
        ],
    )
    code = main(replay(url, "--handler", CONCIERGE))
    out = capsys.readouterr().out
    assert code == 1, out
    assert "DIFF s-vip (2 turns): text_changed, variables_changed" in out
    assert (
        "marked: live state: the session ended with variables the replay did not reach (vip)" in out
    )
    assert "turn 2 'a table': text_changed" in out
    assert "expected: text 'Right away.'" in out
    assert "1 differ (1 of 5 turns; 1 marked)" in out


def test_what_the_archive_cut_or_said_outside_a_turn_is_marked(archive: str) -> None:
    async def read() -> ArchivedSession:
        store = ArchiveStore(archive, read_only=True)
        try:
            record = await store.get("s-name")
        finally:
            await store.close()
        assert record is not None
        return record

    record = asyncio.run(read())
    lines = list(record.transcript)
    spoken = {"role": "dp", "text": "The backend speaks.", "at": lines[-1]["at"] + 1}
    cut = ArchivedSession.from_dict(
        {**record.to_dict(), "turns": 5, "transcript": [*lines[2:], spoken]}
    )
    source = recorded(cut)
    assert source.welcome is None  # the lines before the first kept one are not the welcome
    assert source.user_turns == ["what is my name", "thanks"]
    assert [answer.text for answer in source.answers if answer] == [
        "Your name is Ada.",
        "Ada, you said: thanks",
    ]
    assert any(
        mark.startswith("transcript cut: the archive kept the last 2 of 5") for mark in source.marks
    )
    assert any("outside a turn" in mark for mark in source.marks)
    unanswered = ArchivedSession.from_dict({**record.to_dict(), "transcript": lines[:-1]})
    assert recorded(unanswered).answers[-1] is None


def test_saved_scenarios_run_with_orchestrator_test(
    archive: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scenarios"
    assert main(replay(archive, "--handler", DEFAULT, "--save-scenarios", str(folder))) == 0
    assert "wrote 3 scenario file(s)" in capsys.readouterr().out
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["s-card.yaml", "s-echo.yaml", "s-name.yaml"]
    text = (folder / "s-echo.yaml").read_text()
    assert "claims:\n  plan: gold" in text
    assert "- user: good morning\n  expect:\n    says: 'You said: good morning'" in text
    assert main(["test", str(folder), "--handler", DEFAULT]) == 0
    assert "3 scenarios: 3 passed, 0 failed" in capsys.readouterr().out
    assert main(["test", str(folder), "--handler", REVISED]) == 1
    assert "1 passed, 2 failed" in capsys.readouterr().out


def test_nothing_written_holds_a_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive written before the credential filter (or by hand) still holds an
    ``api_key`` claim: the replay neither passes it to the handler nor writes it."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    record = asyncio.run(live_session(DEFAULT, "s-old", ["hello"], claims={"user": "Ada"}))
    leaked = "sk-" + "x" * 40
    fill(
        url,
        [
            ArchivedSession.from_dict(
                {**record.to_dict(), "claims": {"user": "Ada", "api_key": leaked}}
            )
        ],
    )
    folder, report = tmp_path / "out", tmp_path / "out.json"
    args = ["--handler", DEFAULT, "--save-scenarios", str(folder), "--json", str(report)]
    assert main(replay(url, *args)) == 0
    written = [path.read_text() for path in folder.iterdir()] + [report.read_text()]
    assert all(leaked not in text and "api_key" not in text for text in written)
    assert "user: Ada" in written[0]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--handler", "no_such_module:handle"], "error: cannot import 'no_such_module'"),
        (["--handler", DEFAULT, "--session", "nope"], "error: no archived session 'nope'"),
        (["--handler", DEFAULT, "--session", "s-name", "--limit", "1"], ""),
        (["--handler", DEFAULT, "--session", "s-name", "--since", "1"], "error: --session replays"),
        (["--handler", DEFAULT, "--judge"], "error: --judge: set JUDGE_MODEL"),
    ],
)
def test_errors_exit_2_with_one_line(
    archive: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(replay(archive, *args))
    captured = capsys.readouterr()
    if not message:  # --limit has a default: it goes with --session
        assert code == 0, captured.err
        return
    assert code == 2, captured.out
    assert captured.err.startswith(message) and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err


def test_an_archive_that_does_not_answer_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL that is not there, a SQLite file that is not there, a bad URL, none."""
    from tests.live_server import free_port

    password = "pw-" + secrets.token_hex(8)
    for url, message in [
        (
            f"postgresql://replay:{password}@127.0.0.1:{free_port()}/gone",
            "archive database unreachable",
        ),
        (f"sqlite:///{tmp_path / 'missing.db'}", "archive database unavailable"),
        ("mysql://x/y", "error: --archive-url:"),
    ]:
        assert main(replay(url, "--handler", DEFAULT)) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert password not in err and "Traceback" not in err
    monkeypatch.setenv("ARCHIVE_URL", "none")
    assert main(["replay", "--handler", DEFAULT]) == 2
    assert "the archive is off" in capsys.readouterr().err


def test_the_judge_decides_whether_a_changed_text_means_the_same(
    archive: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAI() as llm:
        monkeypatch.setenv("JUDGE_BASE_URL", llm.base_url)
        monkeypatch.setenv("JUDGE_MODEL", "judge-1")
        # s-card's last turn (text changed), then s-name's last (capitals only).
        llm.script.append(Answer('{"pass": false, "reason": "no longer admits not knowing"}'))
        llm.script.append(Answer('{"pass": true, "reason": "the same echo"}'))
        code = main(
            replay(
                archive,
                "--handler",
                REVISED,
                "--session",
                "s-card",
                "--session",
                "s-name",
                "--judge",
            )
        )
        out = capsys.readouterr().out
        prompts = [r.body["messages"][-1]["content"] for r in llm.received]
    assert code == 1, out
    assert len(prompts) == 2
    assert '"I do not know that one yet."' in prompts[0] and '"Let me find out."' in prompts[0]
    assert "judge:    no longer admits not knowing" in out
    assert "DIFF s-card" in out
    assert "s-name" not in out  # reworded (the same meaning) is not a difference
    assert "1 same, 1 differ" in out


def test_the_progress_bar_shows_on_a_terminal_only(tmp_path: Path) -> None:
    leader, follower = os.openpty()
    with open(follower, "w", closefd=True) as terminal:
        bar = Progress(4, terminal)
        bar.update(2)
        bar.close()
    shown = os.read(leader, 4096).decode()
    os.close(leader)
    assert "replay [" in shown and "2/4" in shown
    with (tmp_path / "log").open("w") as file:
        quiet = Progress(4, file)
        quiet.update(2)
        quiet.close()
    assert (tmp_path / "log").read_text() == ""


def test_a_webhook_backend_replayed_against_its_new_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Production's backend and its next version are real HTTP receivers; the candidate
    is the ``webhook`` handler, configured as the server's (``WEBHOOK_*``)."""
    from orchestrator.testing import FakeBackend

    def v1(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["is_init"]:
            return {"text": f"Hi {payload['claims'].get('user')}."}
        return {"text": f"Order {payload['text']} noted.", "variables": {"last": payload["text"]}}

    def v2(payload: dict[str, Any]) -> dict[str, Any]:
        answer = v1(payload)
        if payload["text"] == "pizza":
            answer = {"text": "Pizza is off today.", "fallback": True}
        return answer

    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    with FakeBackend(v1) as old:
        sessions = [
            asyncio.run(live_session("webhook", f"w-{n}", lines, settings=old.settings()))
            for n, lines in ((1, ["soup", "pizza"]), (2, ["soup"]))
        ]
    fill(url, sessions)
    with FakeBackend(v2) as new:
        monkeypatch.setenv("WEBHOOK_URL", new.url)
        monkeypatch.setenv("WEBHOOK_SECRET", new.secret)
        code = main(replay(url, "--handler", "webhook"))
        out = capsys.readouterr().out
        asked = [turn["text"] for turn in new.turns]
    assert code == 1, out
    assert "DIFF w-1 (2 turns): text_changed, fallback_changed, variables_changed" in out
    assert "expected: text 'Order pizza noted.', cards [], fallback false" in out
    assert 'last: expected "pizza", got "soup"' in out
    assert "1 same, 1 differ (1 of 5 turns; 1 marked)" in out  # "last" not reached
    assert sorted(asked) == sorted(["", "soup", "pizza", "", "soup"])
