"""The sessions API: who may see and steer which session, and what each command does."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from orchestrator.control.options import CLOSE_NORMAL
from orchestrator.http.sessions_api import sse
from tests.orchestrator.control_helpers import (
    envelope,
    initial_state,
    make_app,
    next_named,
    output_text,
    say,
)

API_KEY = secrets.token_urlsafe(32)


@pytest.fixture(params=["memory", "redis"])
def backend_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The same suite runs on the embedded memory backend and on a real Redis."""
    if request.param == "memory":
        yield {}
        return
    redis_url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    yield {"REDIS_URL": redis_url}


@pytest.fixture
def client(backend_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for name, value in backend_env.items():
        monkeypatch.setenv(name, value)
    with TestClient(make_app(api_keys=(API_KEY,))) as test_client:
        yield test_client


def backend() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def ui(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def issue(client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/api/jwt").json()
    return body


# --- auth --------------------------------------------------------------------------


def refusal(response: Any) -> tuple[int, str]:
    """A refused request's status and error code."""
    return response.status_code, response.json()["error"]


def test_the_ui_reads_its_own_session_with_its_token(client: TestClient) -> None:
    """The token from /api/jwt reads its own session, which starts as 'issued'."""
    issued = issue(client)
    response = client.get(f"/sessions/{issued['session_id']}", headers=ui(issued["jwt"]))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == issued["session_id"]
    assert body["status"] == "issued"
    assert body["variables"] == {}
    assert body["transcript"] == []


def test_a_ui_token_cannot_touch_another_session(client: TestClient) -> None:
    """Another session's id answers 403, whether or not it exists."""
    mine, theirs = issue(client), issue(client)
    for session_id in (theirs["session_id"], "does-not-exist"):
        for method, path in (
            ("GET", ""),
            ("PATCH", "/variables"),
            ("POST", "/speak"),
            ("DELETE", ""),
            ("GET", "/events"),
        ):
            response = client.request(
                method, f"/sessions/{session_id}{path}", headers=ui(mine["jwt"]), json={}
            )
            assert refusal(response) == (403, "forbidden"), (method, path)


def test_missing_or_bad_credentials_are_401(client: TestClient) -> None:
    """No credentials, a bad token or a wrong API key: 401 with a JSON reason."""
    issued = issue(client)
    path = f"/sessions/{issued['session_id']}"
    missing = client.get(path)
    assert refusal(missing) == (401, "no_credentials")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert client.get(path, headers=ui("x.y.z")).json()["error"] == "malformed"
    wrong_key = client.get(path, headers=ui(secrets.token_urlsafe(32)))
    assert wrong_key.status_code == 401


def test_only_the_backend_lists_sessions(client: TestClient) -> None:
    """GET /sessions needs the API key; a UI token gets 403."""
    issued = issue(client)
    assert client.get("/sessions", headers=ui(issued["jwt"])).status_code == 403
    listed = client.get("/sessions", headers=backend())
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["sessions"]] == [issued["session_id"]]
    assert "claims" not in listed.json()["sessions"][0]


def test_unknown_sessions_are_404_for_the_backend(client: TestClient) -> None:
    """The backend may ask about any id; an unknown one is 404."""
    response = client.get("/sessions/nope", headers=backend())
    assert refusal(response) == (404, "not_found")


def test_expired_sessions_are_404() -> None:
    """A session past its TTL is gone from the API (memory store, with a moved clock)."""
    with TestClient(make_app(api_keys=(API_KEY,), session_grace_seconds=0)) as client:
        issued = issue(client)
        store = client.app.state.store  # type: ignore[attr-defined]
        store.clock = lambda: issued["expires_at"] + 1
        assert client.get(f"/sessions/{issued['session_id']}", headers=backend()).status_code == 404


# --- commands ----------------------------------------------------------------------


def test_commands_need_a_live_socket(client: TestClient) -> None:
    """speak/send/stop-speaking on a session with no control socket: 409 with the reason."""
    issued = issue(client)
    for path, body in (("speak", {"text": "hi"}), ("send", {"text": "hi"}), ("stop-speaking", {})):
        response = client.post(
            f"/sessions/{issued['session_id']}/{path}", headers=ui(issued["jwt"]), json=body
        )
        assert refusal(response) == (409, "not_connected")
        assert "issued" in response.json()["detail"]


def test_speak_send_and_stop_reach_the_live_socket(client: TestClient) -> None:
    """The API's commands arrive on the host's socket as the DP's messages."""
    issued = issue(client)
    sid, headers = issued["session_id"], ui(issued["jwt"])
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state())
        spoken = client.post(
            f"/sessions/{sid}/speak",
            headers=headers,
            json={"text": "Hi!", "can_be_interrupted": False},
        )
        assert spoken.status_code == 202
        speak = next_named(ws, "startSpeaking")
        assert speak["body"]["text"] == "Hi!"
        assert speak["body"]["optionalArgs"] == {"canBeInterrupted": False}
        sent = client.post(
            f"/sessions/{sid}/send",
            headers=backend(),
            json={"text": "Unprompted", "fallback": False},
        )
        assert sent.status_code == 202
        assert output_text(next_named(ws, "conversationResponse")) == "Unprompted"
        assert client.post(f"/sessions/{sid}/stop-speaking", headers=headers).status_code == 202
        assert next_named(ws, "stopSpeaking")["body"] == {"personaId": "1"}
        transcript = client.get(f"/sessions/{sid}", headers=headers).json()["transcript"]
        assert [t["text"] for t in transcript] == ["Hi!", "Unprompted"]


@pytest.mark.parametrize("persona_id", [1, "1"], ids=["int", "str"])
def test_speech_commands_use_the_persona_id_type_the_dp_used(
    client: TestClient, persona_id: int | str
) -> None:
    """The DP said personaId 1 (or "1"): the API's speak and stop-speaking send it back with
    that type, and the state event's speech for that persona is the one recorded."""
    issued = issue(client)
    sid, headers = issued["session_id"], ui(issued["jwt"])
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state())
        request = {"personaId": persona_id, "input": {"text": "hi"}, "optionalArgs": {}}
        ws.send_text(envelope("conversationRequest", request))
        next_named(ws, "conversationResponse")
        assert client.post(
            f"/sessions/{sid}/speak", headers=headers, json={"text": "Hi!"}
        ).is_success
        speak = next_named(ws, "startSpeaking")["body"]
        assert speak["personaId"] == persona_id
        assert type(speak["personaId"]) is type(persona_id)
        assert client.post(f"/sessions/{sid}/stop-speaking", headers=headers).is_success
        stop = next_named(ws, "stopSpeaking")["body"]
        assert stop == {"personaId": persona_id}
        assert type(stop["personaId"]) is type(persona_id)
        # JSON object keys are strings: persona "1" is this persona, listed after another.
        personas = {"2": {"speechState": "idle"}, "1": {"speechState": "speaking"}}
        ws.send_text(envelope("state", {"persona": personas}))
        ws.send_text(envelope("conversationRequest", request))  # a round trip: state applied
        next_named(ws, "conversationResponse")
        record = client.get(f"/sessions/{sid}", headers=headers).json()
    assert record["speech_state"] == "speaking"
    assert record["persona_id"] == "1"  # the API shows a string, whichever the DP used


def test_patched_variables_reach_the_next_reply_and_the_handler(client: TestClient) -> None:
    """PATCH merges variables; the next reply carries them and the handler uses them."""
    issued = issue(client)
    sid, headers = issued["session_id"], ui(issued["jwt"])
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        patched = client.patch(f"/sessions/{sid}/variables", headers=headers, json={"name": "Lin"})
        assert patched.status_code == 200
        assert patched.json() == {"variables": {"name": "Lin"}}
        ws.send_text(say("hello"))
        reply = next_named(ws, "conversationResponse")
        assert output_text(reply) == "Lin, you said: hello"
        assert reply["body"]["variables"]["name"] == "Lin"
        removed = client.patch(f"/sessions/{sid}/variables", headers=headers, json={"name": None})
        assert removed.json() == {"variables": {}}


def test_variables_can_be_set_before_the_host_connects(client: TestClient) -> None:
    """Variables patched on an issued session are kept and used once the host connects."""
    issued = issue(client)
    sid = issued["session_id"]
    client.patch(f"/sessions/{sid}/variables", headers=backend(), json={"name": "Kay"})
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(say("", init=True))
        assert output_text(next_named(ws, "conversationResponse")).startswith("Hello, Kay!")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("speak", {"text": ""}, 400),
        ("speak", {"text": 5}, 400),
        ("speak", {"text": "x" * 5000}, 413),
        ("speak", {"text": "hi", "can_be_interrupted": "yes"}, 400),
        ("send", {"text": "hi", "variables": []}, 400),
        ("variables", [1, 2], 400),
    ],
)
def test_bad_command_bodies_are_clear_errors(
    client: TestClient, path: str, body: Any, status: int
) -> None:
    """Malformed command bodies answer 4xx with a JSON error, before touching the session."""
    issued = issue(client)
    method = "PATCH" if path == "variables" else "POST"
    response = client.request(
        method,
        f"/sessions/{issued['session_id']}/{path}",
        headers={**ui(issued["jwt"]), "Content-Type": "application/json"},
        content=json.dumps(body),
    )
    assert response.status_code == status
    assert set(response.json()) == {"error", "detail"}


def test_delete_ends_the_session_and_its_socket(client: TestClient) -> None:
    """DELETE closes the live socket with 1000 and refuses the token afterwards."""
    issued = issue(client)
    sid = issued["session_id"]
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state())
        assert client.delete(f"/sessions/{sid}", headers=ui(issued["jwt"])).status_code == 200
        with pytest.raises(WebSocketDisconnect) as closed:
            next_named(ws, "never")
        assert closed.value.code == CLOSE_NORMAL
    body = client.get(f"/sessions/{sid}", headers=backend()).json()
    assert body["status"] == "ended"
    assert body["terminated"] is True
    url = f"/ws?access_token={issued['jwt']}"
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(url):
        pass
    assert denied.value.json()["error"] == "session_ended"
    speak = client.post(f"/sessions/{sid}/speak", headers=backend(), json={"text": "hi"})
    assert speak.status_code == 409


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_in_a_patch_are_refused(client: TestClient, constant: str) -> None:
    """NaN/Infinity are not JSON: a patch carrying one is a 400, and nothing is stored."""
    issued = issue(client)
    response = client.patch(
        f"/sessions/{issued['session_id']}/variables",
        headers={**backend(), "Content-Type": "application/json"},
        content=f'{{"x": {constant}}}',
    )
    assert refusal(response) == (400, "invalid_json")
    assert (
        client.get(f"/sessions/{issued['session_id']}", headers=backend()).json()["variables"] == {}
    )


def test_a_ui_token_cannot_grow_its_variables_past_their_bounds(client: TestClient) -> None:
    """A UI token's patches are bounded in JSON bytes (48 KiB) and in values (768:
    parsed, ~80 bytes each however short, e.g. empty objects), three quarters of the
    session's bound; what was kept before the refusal stays, and the backend still
    has its quarter: the UI cannot lock it out."""
    issued = issue(client)
    url = f"/sessions/{issued['session_id']}/variables"
    headers = ui(issued["jwt"])
    shapes = [{f"o{n}": [{} for _ in range(300)]} for n in range(3)]
    answers = [client.patch(url, headers=headers, json=shape).status_code for shape in shapes]
    assert answers == [200, 200, 413]
    texts = [{f"t{n}": "x" * 12_000} for n in range(4)]
    answers = [client.patch(url, headers=headers, json=text).status_code for text in texts]
    assert answers == [200, 200, 200, 413]
    refused = client.patch(url, headers=headers, json=texts[-1])
    assert refused.json()["error"] == "too_large"
    kept = client.get(f"/sessions/{issued['session_id']}", headers=headers).json()["variables"]
    assert sorted(kept) == ["o0", "o1", "t0", "t1", "t2"]
    assert client.patch(url, headers=backend(), json=texts[-1]).status_code == 200
    more = [{f"t{n}": "x" * 12_000} for n in (4, 5)]
    answers = [client.patch(url, headers=backend(), json=text).status_code for text in more]
    assert answers == [200, 413]  # the backend's bound is the whole: 64 KiB
    # A change that shrinks the variables is never refused, whoever sends it.
    assert client.patch(url, headers=headers, json={"t3": None}).status_code == 200


def test_deleting_a_never_connected_session_records_it_as_ended(client: TestClient) -> None:
    """DELETE before any host connected: the record says ended and terminated, as the reply does."""
    issued = issue(client)
    sid = issued["session_id"]
    assert client.delete(f"/sessions/{sid}", headers=backend()).json()["status"] == "ended"
    body = client.get(f"/sessions/{sid}", headers=backend()).json()
    assert (body["status"], body["terminated"]) == ("ended", True)
    assert body["ended_at"] is not None


def test_the_api_key_is_refused_in_the_url(client: TestClient) -> None:
    """?access_token= carries UI tokens for EventSource; an API key there is refused (401)."""
    issued = issue(client)
    response = client.get(f"/sessions/{issued['session_id']}/events?access_token={API_KEY}")
    assert refusal(response) == (401, "key_in_url")


def test_two_different_access_tokens_are_a_400_not_a_500(client: TestClient) -> None:
    """?access_token=a&access_token=b is refused as malformed on the API and /metrics."""
    issued = issue(client)
    url = f"/sessions/{issued['session_id']}/events?access_token=a&access_token=b"
    response = client.get(url)
    assert refusal(response) == (400, "malformed")
    assert client.get("/metrics?access_token=a&access_token=b").status_code == 401


def test_metrics_refuse_the_api_key_in_the_url(client: TestClient) -> None:
    """/metrics takes the API key only as a header, like the sessions API."""
    assert client.get(f"/metrics?access_token={API_KEY}").status_code == 401
    assert client.get("/metrics", headers=backend()).status_code == 200


@given(st.text())
def test_an_sse_event_is_whole_for_any_line_reader_and_reads_back_the_same(text: str) -> None:
    """U+2028, U+2029 and U+0085 from user text went out raw: valid SSE, but a client
    reading lines (str.splitlines, httpx's aiter_lines) got the JSON cut in pieces."""
    event = sse("turn", {"text": text + "\u2028\u2029\x85"})
    lines = event.splitlines()
    assert len(lines) == 3
    assert lines[0] == "event: turn"
    assert lines[2] == ""
    assert json.loads(lines[1].removeprefix("data: ")) == {"text": text + "\u2028\u2029\x85"}
