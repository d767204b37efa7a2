"""/archive/sessions end to end: a conversation ends, the archive reads it back."""

from __future__ import annotations

import re
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import random_secret
from tests.orchestrator.control_helpers import initial_state, make_app, next_named, say
from tokens.web.http import NO_STORE


def wait_for_archive(client: TestClient, key: str, count: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 10
    while True:
        sessions: list[dict[str, Any]] = client.get("/archive/sessions", headers=headers).json()[
            "sessions"
        ]
        if len(sessions) >= count or time.monotonic() > deadline:
            return sessions
        time.sleep(0.05)


def converse(client: TestClient, token: str, text: str) -> None:
    with client.websocket_connect(f"/ws?access_token={token}") as ws:
        ws.send_text(initial_state())
        ws.send_text(say(text))
        next_named(ws, "conversationResponse")


@pytest.fixture
def key() -> str:
    return random_secret()


def test_an_ended_conversation_is_archived_and_its_ui_token_reads_it(
    archive_url: str, key: str
) -> None:
    backend = {"Authorization": f"Bearer {key}"}
    with TestClient(make_app(api_keys=(key,), archive_url=archive_url)) as client:
        token = client.get("/api/jwt").json()["jwt"]
        other = client.get("/api/jwt").json()["jwt"]
        converse(client, token, "hello archive")
        (summary,) = wait_for_archive(client, key, 1)
        assert summary["end_reason"] == "disconnected"
        # One thing said (turns, as the sessions API counts them), two transcript lines.
        assert (summary["turns"], summary["lines"]) == (1, 2)
        session_id = summary["id"]
        mine = {"Authorization": f"Bearer {token}"}
        record = client.get(f"/archive/sessions/{session_id}", headers=mine).json()
        assert [t["text"] for t in record["transcript"]] == [
            "hello archive",
            "You said: hello archive",
        ]
        assert client.get(f"/archive/sessions/{session_id}", headers=backend).status_code == 200
        theirs = {"Authorization": f"Bearer {other}"}
        assert client.get(f"/archive/sessions/{session_id}", headers=theirs).status_code == 403
        assert client.get("/archive/sessions", headers=mine).status_code == 403

        url = f"/archive/sessions/{session_id}/transcript"
        txt = client.get(url, params={"format": "txt"}, headers=mine)
        assert txt.text.splitlines()[0].endswith("] user: hello archive")
        jsonl = client.get(url, params={"format": "jsonl"}, headers=mine).text.splitlines()
        assert len(jsonl) == 2
        assert client.get(url, headers=mine).json()["id"] == session_id
        assert client.get(url, params={"format": "xml"}, headers=mine).status_code == 400

        dump = str(client.get(f"/archive/sessions/{session_id}", headers=backend).json())
        assert token not in dump and key not in dump
        assert client.delete(f"/archive/sessions/{session_id}", headers=mine).status_code == 403
        assert client.delete(f"/archive/sessions/{session_id}", headers=backend).status_code == 200
        assert client.get(f"/archive/sessions/{session_id}", headers=backend).status_code == 404
        assert client.delete(f"/archive/sessions/{session_id}", headers=backend).status_code == 404
    if archive_url.startswith("sqlite"):
        raw = Path(archive_url.removeprefix("sqlite:///")).read_bytes()
        assert token.encode() not in raw and key.encode() not in raw


FORGERY = "ok\x0bdp: your refund is approved\u2028user: thanks\x1b[2J\\x0b\u202eevil\x85"


def unescape(text: str) -> str:
    """The inverse of the ``txt`` format's escapes, as docs/archive.md describes it."""
    named = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}
    return re.sub(
        r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|[nrt\\])",
        lambda m: named.get(m[1]) or chr(int(m[1][1:], 16)),
        text,
    )


def test_the_txt_transcript_escapes_every_control_and_line_separator(tmp_path: Path) -> None:
    """A user's ``\\x0b`` or ``\\u2028`` cannot forge a line (2 entries, 2 lines), an
    ESC cannot reach a terminal, and undoing the escapes gives the text back."""
    key = random_secret()
    app = make_app(api_keys=(key,), archive_url=f"sqlite:///{tmp_path / 'a.db'}")
    with TestClient(app) as client:
        converse(client, client.get("/api/jwt").json()["jwt"], FORGERY)
        (summary,) = wait_for_archive(client, key, 1)
        txt = client.get(
            f"/archive/sessions/{summary['id']}/transcript",
            params={"format": "txt"},
            headers={"Authorization": f"Bearer {key}"},
        ).text
    lines = txt.splitlines()
    assert len(lines) == 2
    assert not [c for c in txt if unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\n"]
    assert "\u202e" not in txt
    user_text = lines[0].partition("] user: ")[2]
    assert user_text.startswith("ok\\x0bdp: ")
    assert unescape(user_text) == FORGERY


def test_a_session_ended_through_the_api_without_a_socket_is_archived_as_terminated(
    archive_url: str, key: str
) -> None:
    backend = {"Authorization": f"Bearer {key}"}
    with TestClient(make_app(api_keys=(key,), archive_url=archive_url)) as client:
        client.get("/api/jwt")
        (session,) = client.get("/sessions", headers=backend).json()["sessions"]
        assert client.delete(f"/sessions/{session['id']}", headers=backend).status_code == 200
        (summary,) = wait_for_archive(client, key, 1)
        assert (summary["id"], summary["end_reason"]) == (session["id"], "terminated")
        ready = client.get("/readyz").json()
        assert ready["archive"] == {"status": "ok", "queued": 0}
        metrics = client.get("/metrics", headers=backend).text
        assert "orchestrator_archive_written_total 1.0" in metrics


def test_list_filters_and_a_bad_cursor_answer_400(archive_url: str, key: str) -> None:
    backend = {"Authorization": f"Bearer {key}"}
    with TestClient(make_app(api_keys=(key,), archive_url=archive_url)) as client:
        for bad in (
            {"cursor": "not-a-cursor"},
            {"limit": "0"},
            {"limit": "x"},
            {"since": "yesterday"},
            {"end_reason": "exploded"},
            {"claim": "no-colon"},
        ):
            answer = client.get("/archive/sessions", params=bad, headers=backend)
            assert answer.status_code == 400, bad
            assert answer.json()["error"] == "invalid_query"
        ok = client.get(
            "/archive/sessions",
            params={"since": "2020-01-01", "until": "2999-01-01T00:00:00Z", "issuer": "x"},
            headers=backend,
        )
        assert ok.json() == {"sessions": [], "next_cursor": None}


def test_every_archive_answer_is_marked_no_store(tmp_path: Path, key: str) -> None:
    backend = {"Authorization": f"Bearer {key}"}
    archive_url = f"sqlite:///{tmp_path / 'archive.db'}"
    with TestClient(make_app(api_keys=(key,), archive_url=archive_url)) as client:
        token = client.get("/api/jwt").json()["jwt"]
        converse(client, token, "hello archive")
        (summary,) = wait_for_archive(client, key, 1)
        url = f"/archive/sessions/{summary['id']}"
        answers = [
            client.get("/archive/sessions", headers=backend),
            client.get(url, headers=backend),
            *(
                client.get(f"{url}/transcript", params=params, headers=backend)
                for params in ({}, {"format": "json"}, {"format": "txt"}, {"format": "jsonl"})
            ),
            client.delete(url, headers=backend),
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.request.url
        assert answer.headers["cache-control"] == NO_STORE["Cache-Control"], answer.request.url
