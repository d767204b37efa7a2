"""Building an app and playing the video host in-process (Starlette TestClient)."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import WebSocketTestSession

from orchestrator.app import create_app
from orchestrator.config import Settings
from tests.conftest import random_secret
from tokens import Keyring, SigningKey

KEY_NAME = "test-key"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "keyring": Keyring(SigningKey.from_text(KEY_NAME, random_secret())),
        "ephemeral_key": False,
    }
    values.update(overrides)
    return Settings(**values)


def make_app(**overrides: Any) -> Starlette:
    return create_app(make_settings(**overrides))


def envelope(name: str, body: dict[str, Any], kind: str = "event", **extra: Any) -> str:
    return json.dumps({"category": "scene", "kind": kind, "name": name, "body": body, **extra})


def initial_state(dp_session_id: str = "dp-1", key_name: str | None = KEY_NAME) -> str:
    meta: dict[str, Any] = {"soulId": "s", "sceneId": 1}
    if key_name is not None:
        meta["keyName"] = key_name
    return envelope(
        "state",
        {
            "session": {
                "sessionId": dp_session_id,
                "state": "connected",
                "userInfo": "ui",
                "meta": meta,
            },
            "persona": {"1": {"speechState": "idle"}},
        },
    )


def say(text: str, *, init: bool = False) -> str:
    return envelope(
        "conversationRequest",
        {
            "personaId": 1,
            "input": {"text": text},
            "variables": {},
            "optionalArgs": {"kind": "init"} if init else {},
        },
    )


def next_named(ws: WebSocketTestSession, name: str, limit: int = 20) -> dict[str, Any]:
    """Read frames until one called ``name`` arrives (answering requests like the DP)."""
    for _ in range(limit):
        message: dict[str, Any] = ws.receive_json()
        if message["name"] == name:
            return message
    raise AssertionError(f"no {name} within {limit} frames")


def output_text(message: dict[str, Any]) -> str:
    text: str = message["body"]["output"]["text"]
    return text
