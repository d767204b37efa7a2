"""/metrics counts what happens; /readyz reflects the session backend."""

from __future__ import annotations

import secrets

from starlette.testclient import TestClient

from tests.orchestrator.control_helpers import make_app, next_named, say

API_KEY = secrets.token_urlsafe(32)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_count_tokens_turns_frames_and_refusals() -> None:
    """Issued and refused tokens, turns, frames and live sessions appear in /metrics."""
    with TestClient(make_app(api_keys=(API_KEY,))) as client:
        issued = client.get("/api/jwt").json()
        client.get(f"/sessions/{issued['session_id']}", headers={"Authorization": "Bearer x.y.z"})
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            ws.send_text("not json")
            ws.send_text(say("hello"))
            next_named(ws, "conversationResponse")
            text = client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
            assert metric(text, "orchestrator_sessions_live") == 1
            assert metric(text, "orchestrator_control_handshakes_waiting") == 0
        assert metric(text, 'orchestrator_tokens_issued_total{profile="soul-machines"}') == 1
        assert (
            metric(text, 'orchestrator_tokens_refused_total{reason="malformed",where="api"}') == 1
        )
        assert metric(text, "orchestrator_turns_total") == 1
        assert metric(text, "orchestrator_control_messages_in_total") == 2
        assert metric(text, "orchestrator_control_messages_out_total") == 1
        assert metric(text, 'orchestrator_control_bad_frames_total{reason="invalid_json"}') == 1
        assert metric(text, "orchestrator_handler_latency_seconds_count") == 1


def test_metrics_need_the_api_key_when_one_is_set() -> None:
    """With ORCHESTRATOR_API_KEY set, /metrics answers 401 without it."""
    with TestClient(make_app(api_keys=(API_KEY,))) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": f"Bearer {'x' * 43}"})
        assert wrong.status_code == 401
    with TestClient(make_app()) as client:
        assert client.get("/metrics").status_code == 200


def test_readyz_reports_the_memory_backend_ready() -> None:
    """The embedded backend is always ready."""
    with TestClient(make_app()) as client:
        assert client.get("/readyz").json() == {"status": "ready", "backend": "memory"}
