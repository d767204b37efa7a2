"""``orchestrator replay`` of sessions a real ``orchestrator serve`` archived: real
conversations over its control socket (``orchestrator simulate --script`` and the
``--url`` runner's host, with custom claims from ``POST /auth/authorize``), ended
by hanging up, by ``DELETE /sessions/{id}`` and by the server's own shutdown
(SIGTERM), then replayed from the archive in a subprocess."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.archive.record import ArchivedSession
from orchestrator.archive.store import ArchiveQuery, ArchiveStore
from orchestrator.testing.remote import RemoteConversation
from tests.fake_openai import Answer, FakeOpenAI
from tests.live_server import REPO_ROOT, LiveServer, server_environment
from tests.postgres_server import RestartablePostgres, postgres_server

pytestmark = pytest.mark.server

SHOP = '''\
"""A shop's handler, as a team writes it (written into the test's directory)."""

from orchestrator.handlers import Card, Reply


async def handle(request, conversation):
    session = request.session
    if request.is_init:
        return Reply(f"Welcome back, {session.claims.get('user', 'guest')}.")
    text = request.text.strip().lower()
    if text == "menu":
        return Reply("MENU", cards=(Card("menu", "markdown", {"text": "tea, cake"}),))
    if text.startswith("i want "):
        item = text.removeprefix("i want ")
        await conversation.set_variables({"order": item})
        return Reply(f"One {item} for a {session.claims.get('tier', 'basic')} member.")
    if text == "what did i order":
        return Reply(f"You ordered {session.variables.get('order', 'nothing')}.")
    return Reply("Sorry?", fallback=True)
'''
MENU = "Here is our menu."
NEW_MENU = "Today's menu is short."


def write_shop(directory: Path, name: str, menu: str) -> str:
    (directory / f"{name}.py").write_text(SHOP.replace("MENU", menu))
    return f"{name}:handle"


def run(args: Sequence[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def cli_environment(directory: Path) -> dict[str, str]:
    env = server_environment({"PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(directory)))})
    env["ARCHIVE_URL"] = ""
    return env


async def converse(
    base_url: str,
    lines: Sequence[str],
    *,
    claims: dict[str, Any] | None = None,
    delete: bool = False,
) -> RemoteConversation:
    """One conversation through the ``--url`` runner's host, still open (``delete``:
    ended through the sessions API)."""
    conversation = RemoteConversation(base_url, claims=claims)
    await conversation.start()
    await conversation.welcome()
    for line in lines:
        await conversation.say(line)
    if delete:
        async with httpx.AsyncClient(base_url=base_url) as http:
            response = await http.delete(
                f"/sessions/{conversation.session_id}",
                headers={"Authorization": f"Bearer {conversation.token}"},
            )
            assert response.status_code == 200, response.text
    return conversation


async def hold_conversations(archive_url: str, directory: Path) -> dict[str, str]:
    """Two servers on one archive, the built-in handler's then the shop's, and every
    way a session ends: hung up, deleted, and open when the server stops (SIGTERM).
    The session ids, by conversation (the simulated one has none)."""
    shop = write_shop(directory, "shop_v1", MENU)
    env = {
        "ARCHIVE_URL": archive_url,
        "PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(directory))),
    }
    ids: dict[str, str] = {}
    with LiveServer({**env, "CONVERSATION_HANDLER": "default"}) as server:
        script = directory / "script.txt"
        script.write_text("hello\n# a comment\nshow me a card\nwhy is the sky blue?\n")
        simulated = await asyncio.to_thread(
            run,
            ["simulate", "--url", server.base_url, "--script", str(script)],
            directory,
            cli_environment(directory),
        )
        assert simulated.returncode == 0, simulated.stderr
        ada = await converse(
            server.base_url, ["my name is Ada", "what is my name", "thanks"], claims={"user": "Ada"}
        )
        await ada.close()
        ids["ada"] = ada.session_id
    # Di's events stream is still open at SIGTERM: the server ends it at once (it no
    # longer holds the graceful shutdown), so her session is archived as `shutdown`.
    with LiveServer({**env, "CONVERSATION_HANDLER": shop}, stop_timeout=30) as server:
        bo = await converse(
            server.base_url,
            ["menu", "i want tea", "what did i order"],
            claims={"user": "Bo", "tier": "gold"},
        )
        await bo.close()
        cy = await converse(
            server.base_url, ["i want cake", "huh"], claims={"user": "Cy"}, delete=True
        )
        await cy.close()
        di = await converse(
            server.base_url, ["menu", "i want scones"], claims={"user": "Di", "tier": "silver"}
        )
        await asyncio.to_thread(server.stop)  # SIGTERM with Di's socket open
        await di.close()
        assert not server.killed, server.log_text
        ids.update(bo=bo.session_id, cy=cy.session_id, di=di.session_id)
    return ids


async def archived(archive_url: str) -> dict[str, ArchivedSession]:
    store = ArchiveStore(archive_url, read_only=True)
    try:
        return {record.id: record async for record in store.export(ArchiveQuery())}
    finally:
        await store.close()


@dataclass
class Archive:
    """A real server's archive: its URL, the directory of the handlers and the CLI's
    environment, the session ids by conversation (``simulated``: the script's)."""

    url: str
    directory: Path
    ids: dict[str, str]

    def replay(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["replay", "--archive-url", self.url, *args], self.directory, self.env)

    @property
    def env(self) -> dict[str, str]:
        return cli_environment(self.directory)

    def sessions(self, *names: str) -> list[str]:
        return [arg for name in names for arg in ("--session", self.ids[name])]


def held(archive_url: str, directory: Path) -> Archive:
    ids = asyncio.run(hold_conversations(archive_url, directory))
    records = asyncio.run(archived(archive_url))
    (simulated,) = set(records) - set(ids.values())
    ids["simulated"] = simulated
    return Archive(archive_url, directory, ids)


@pytest.fixture(scope="module")
def postgres() -> Iterator[RestartablePostgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_archive(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Archive:
    """What real servers archived in SQLite, or on a throwaway PostgreSQL cluster."""
    directory = tmp_path_factory.mktemp("live-archive")
    if request.param == "sqlite":
        return held(f"sqlite:///{directory / 'archive.db'}", directory)
    server: RestartablePostgres = request.getfixturevalue("postgres")
    return held(server.create_database(f"archive_{secrets.token_hex(6)}"), directory)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONVERSATION_HANDLER", "ARCHIVE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_the_server_archived_every_conversation_with_its_claims_and_end(
    live_archive: Archive,
) -> None:
    records = asyncio.run(archived(live_archive.url))
    ids = live_archive.ids
    reasons = {name: records[ids[name]].end_reason for name in ids}
    assert reasons == {
        "simulated": "disconnected",
        "ada": "disconnected",
        "bo": "disconnected",
        "cy": "terminated",
        "di": "shutdown",
    }
    bo = records[ids["bo"]]
    assert {k: bo.claims[k] for k in ("user", "tier")} == {"user": "Bo", "tier": "gold"}
    assert bo.variables == {"order": "tea"}
    assert [line["role"] for line in bo.transcript] == [
        "dp",
        "user",
        "dp",
        "user",
        "dp",
        "user",
        "dp",
    ]


def test_the_same_handler_replays_a_real_servers_sessions_with_no_differences(
    live_archive: Archive,
) -> None:
    builtin = live_archive.replay(
        "--handler", "default", *live_archive.sessions("simulated", "ada")
    )
    assert builtin.returncode == 0, builtin.stdout + builtin.stderr
    assert "2 sessions replayed: 2 same, 0 differ (0 of 8 turns; 0 marked)" in builtin.stdout
    shop = live_archive.replay(
        "--handler", "shop_v1:handle", *live_archive.sessions("bo", "cy", "di")
    )
    assert shop.returncode == 0, shop.stdout + shop.stderr
    assert "3 sessions replayed: 3 same, 0 differ (0 of 10 turns; 0 marked)" in shop.stdout


def test_a_changed_handler_names_the_turns_that_now_answer_differently(
    live_archive: Archive,
) -> None:
    builtin = live_archive.replay(
        "--handler",
        "tests.orchestrator.testing.bots:revised",
        *live_archive.sessions("simulated", "ada"),
    )
    assert builtin.returncode == 1, builtin.stdout + builtin.stderr
    out = builtin.stdout
    assert f"DIFF {live_archive.ids['ada']} (3 turns): whitespace_or_case" in out
    assert "turn 3 'thanks': whitespace_or_case" in out
    assert "turn 2 'show me a card': cards_changed" in out
    assert "turn 3 'why is the sky blue?': text_changed, fallback_changed" in out
    write_shop(live_archive.directory, "shop_v2", NEW_MENU)
    shop = live_archive.replay(
        "--handler", "shop_v2:handle", *live_archive.sessions("bo", "cy", "di")
    )
    assert shop.returncode == 1, shop.stdout + shop.stderr
    out = shop.stdout
    for name in ("bo", "di"):
        assert f"DIFF {live_archive.ids[name]} " in out
    assert f"SAME {live_archive.ids['cy']}" not in out  # SAME sessions are not listed
    assert out.count("turn 1 'menu': text_changed") == 2
    assert f"expected: text {MENU!r}" in out and repr(NEW_MENU) in out
    assert "3 sessions replayed: 1 same, 2 differ (2 of 10 turns; 0 marked)" in out


def test_saved_scenarios_of_a_real_servers_sessions_pass_with_the_same_handler(
    live_archive: Archive, tmp_path: Path
) -> None:
    saved = tmp_path / "suite"
    replayed = live_archive.replay(
        "--handler",
        "shop_v1:handle",
        "--save-scenarios",
        str(saved),
        *live_archive.sessions("bo", "cy", "di"),
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert len(list(saved.iterdir())) == 3
    env = live_archive.env
    same = run(["test", str(saved), "--handler", "shop_v1:handle"], live_archive.directory, env)
    assert same.returncode == 0, same.stdout + same.stderr
    write_shop(live_archive.directory, "shop_v2", NEW_MENU)
    changed = run(["test", str(saved), "--handler", "shop_v2:handle"], live_archive.directory, env)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert NEW_MENU in changed.stdout


# An answer said in pieces (LLM_SPEECH=sentences), each pause longer than --settle.
PIECES = ["First of all. ", "Second", " of all. ", "Third ", "of all."]
WHOLE = "First of all. Second of all. Third of all."
PAUSE = 0.5
SETTLE = "0.1"
SLOW_SCENARIO = f"""\
name: a slow answer in three sentences
turns:
  - welcome: {{says: Hello!}}
  - user: tell me three things
    expect: {{says: {WHOLE!r}}}
  - user: hello
    expect: {{says: Hi.}}
"""


def slow_script(fake: FakeOpenAI) -> None:
    fake.script[:] = [Answer(WHOLE, pieces=PIECES, delay=PAUSE), Answer("Hi.")]


def test_test_url_and_replay_take_a_sentences_answer_whole(tmp_path: Path) -> None:
    """``orchestrator test --url`` ends a turn on the server's ``answered`` event, not
    on --settle seconds of quiet, so pauses between sentences do not cut the answer
    (nor does the next line interrupt it); the session the server archived replays
    through the same model with no differences."""
    archive_url = f"sqlite:///{tmp_path / 'archive.db'}"
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(SLOW_SCENARIO)
    llm = {
        "LLM_API_KEY": "sk-test-key",
        "LLM_MODEL": "e2e-model",
        "LLM_WELCOME": "Hello!",
        "LLM_SPEECH": "sentences",
    }
    with FakeOpenAI() as fake:
        slow_script(fake)
        env = {
            **llm,
            "ARCHIVE_URL": archive_url,
            "CONVERSATION_HANDLER": "llm",
            "LLM_BASE_URL": fake.base_url,
        }
        with LiveServer(env) as server:
            tested = run(
                ["test", str(scenario), "--url", server.base_url, "--settle", SETTLE],
                tmp_path,
                cli_environment(tmp_path),
            )
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert fake.streams_closed_early == 0
        assert fake.messages(-1)[-1] == {"role": "user", "content": "hello"}
        slow_script(fake)
        replayed = run(
            ["replay", "--archive-url", archive_url, "--handler", "llm"],
            tmp_path,
            {**cli_environment(tmp_path), **llm, "LLM_BASE_URL": fake.base_url},
        )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "1 session replayed: 1 same, 0 differ (0 of 3 turns; 0 marked)" in replayed.stdout
