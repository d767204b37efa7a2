"""The bad-input matrix: one row per (boundary, input, expected observed result).

``tests/test_bad_input_matrix.py`` asserts every row; ``python -m
tests.bad_input_matrix`` runs the same probes and prints the observed table as
Markdown (docs/reliability.md's bad-input matrix is that output).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import TestClient, WebSocketDenialResponse, WebSocketTestSession

from orchestrator.app import create_app
from orchestrator.config import Settings, SettingsError
from orchestrator.control.protocol import FrameError, conversation_request, parse_frame
from orchestrator.handlers.loader import HandlerLoadError, load_handler
from orchestrator.logs import configure_logging
from tests.conftest import random_secret
from tests.orchestrator.control_helpers import make_settings, next_named, say
from tokens import SoulMachinesProfile, TokenCodec


@dataclass
class Probe:
    """A running app with every profile, its secrets, and what each probe saw."""

    client: TestClient
    secrets: list[str]
    token: str
    session_id: str
    bodies: list[str] = field(default_factory=list)

    def http(self, method: str, path: str, **kwargs: Any) -> str:
        response = self.client.request(method, path, **kwargs)
        self.bodies.append(response.text)
        try:
            body = response.json()
        except ValueError:
            return str(response.status_code)
        if isinstance(body, dict) and body.get("valid") is False:
            return f"{response.status_code} valid=false {body['error']}"
        if isinstance(body, dict) and "error" in body:
            return f"{response.status_code} {body['error']}"
        return str(response.status_code)

    def handshake(self, path: str, headers: dict[str, str] | None = None) -> str:
        try:
            with self.client.websocket_connect(path, headers=headers or {}):
                return "accepted"
        except WebSocketDenialResponse as denied:
            self.bodies.append(denied.text)
            return f"{denied.status_code} {denied.json()['error']}"

    def frame(self, data: str | bytes) -> str:
        """Send one frame on a fresh socket; what the server did, and whether it still answers."""
        with self.socket() as ws:
            store = self.client.app.state.store  # type: ignore[attr-defined]
            session = store._sessions[self.session_id]
            before = session.bad_frames
            ws.send_bytes(data) if isinstance(data, bytes) else ws.send_text(data)
            ws.send_text(say("ping"))
            answer = next_named(ws, "conversationResponse")["body"]["output"]["text"]
            counted = session.bad_frames - before
        verdict = "ignored, counted" if counted else "accepted"
        try:  # the reason the server logs, from the same protocol functions it calls
            envelope = parse_frame(data)
            if envelope.name == "conversationRequest":
                conversation_request(envelope)
        except FrameError as exc:
            verdict += f" ({exc.code})"
        still = "answers" if answer == "You said: ping" else f"answered {answer!r}"
        return f"{verdict}, socket open, {still}"

    @contextmanager
    def socket(self) -> Iterator[WebSocketTestSession]:
        with self.client.websocket_connect(f"/ws?access_token={self.token}") as ws:
            yield ws


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


KID_NUMBER = f"{b64({'alg': 'HS256', 'typ': 'sm-control+jwt', 'kid': 1})}.e30.c2ln"
CRIT = f"{b64({'alg': 'HS256', 'typ': 'sm-control+jwt', 'crit': ['x']})}.e30.c2ln"
ALG_NONE = f"{b64({'alg': 'none', 'typ': 'sm-control+jwt'})}.{b64({'iss': 'test-key'})}."


def config(env: dict[str, str]) -> str:
    try:
        settings = Settings.from_env(environ=env, env_file=None)
        load_handler(settings.conversation_handler, settings)  # as `orchestrator serve` does
    except (SettingsError, HandlerLoadError):
        return "refused at start-up (exit 2)"
    return "accepted"


LLM = {"CONVERSATION_HANDLER": "llm", "LLM_MODEL": "m"}


def production(**env: str) -> dict[str, str]:
    """A production configuration that starts, with ``env`` on top."""
    return {
        "ORCHESTRATOR_ENV": "production",
        "JWT_PUBLIC_KEY": "k",
        "JWT_PRIVATE_KEY": random_secret(),
        "SESSION_SERVER": "dh.soulmachines.cloud",
        "PUBLIC_URL": "https://orch.example.com",
        "CORS_ORIGINS": "https://app.example.com",
        **env,
    }


def expired(p: Probe) -> str:
    settings = p.client.app.state.settings  # type: ignore[attr-defined]
    old = SoulMachinesProfile(TokenCodec(settings.keyring, clock=lambda: 1e9), settings.sm_policy())
    return p.handshake(f"/ws?access_token={old.mint(control_url='ws://x/ws').jwt}")


def long_user_info(p: Probe) -> str:
    """A ``state`` frame with a 20 000-character userInfo: how much of it the session keeps."""
    verdict = p.frame(
        json.dumps(
            {"kind": "event", "name": "state", "body": {"session": {"userInfo": "u" * 20_000}}}
        )
    )
    session = p.client.app.state.store._sessions[p.session_id]  # type: ignore[attr-defined]
    return verdict.replace("accepted", f"accepted, {len(session.user_info)} characters kept")


def surrogate_token(p: Probe) -> str:
    """The probe's token re-signed with the right key, a claim holding ``\\ud800`` added."""
    settings = p.client.app.state.settings  # type: ignore[attr-defined]
    claims = json.loads(base64.urlsafe_b64decode(p.token.split(".")[1] + "=="))
    return TokenCodec(settings.keyring).encode({**claims, "note": "\ud800"}, "sm-control+jwt")


def archive_cursor(p: Probe, raw_json: str) -> str:
    """The archive list with ``raw_json`` as its cursor (encoded as the server encodes one)."""
    cursor = base64.urlsafe_b64encode(raw_json.encode()).decode().rstrip("=")
    return p.http("GET", f"/archive/sessions?cursor={cursor}", headers=bearer(p.secrets[0]))


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def nested(p: Probe, method: str, path: str, key: str | None = None) -> str:
    """10 KB of ``[``: past the JSON parser's recursion limit."""
    headers = {**JSON, **bearer(key)} if key else JSON
    return p.http(method, path, content=b"[" * 10_000, headers=headers)


def stored_surrogate(p: Probe) -> str:
    """``GET /sessions/{own}`` while a variable holds a lone surrogate that got
    past the boundaries some other way (a handler's ``set_variables``, say)."""
    path = f"/sessions/{p.session_id}"
    p.client.get(path, headers=bearer(p.token))  # the store holds a Session from now on
    session = p.client.app.state.store._sessions[p.session_id]  # type: ignore[attr-defined]
    session.variables["bad"] = "\ud800"
    try:
        return p.http("GET", path, headers=bearer(p.token))
    finally:
        del session.variables["bad"]


JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
SHORT_KEY = "too-short"
TEST_HANDLERS = "tests.orchestrator.handlers_for_tests"
ANSWERS = ", socket open, answers"
Row = tuple[str, str, str, Callable[[Probe], str]]

ROWS: list[Row] = [
    # --- HTTP routes -------------------------------------------------------------
    ("HTTP", "POST /auth/authorize `{`", "400 invalid_json",
     lambda p: p.http("POST", "/auth/authorize", content=b"{", headers=JSON)),
    ("HTTP", "POST /auth/authorize `[]`", "400 invalid_body",
     lambda p: p.http("POST", "/auth/authorize", content=b"[]", headers=JSON)),
    ("HTTP", "POST /auth/authorize non-UTF-8 JSON", "400 invalid_json",
     lambda p: p.http("POST", "/auth/authorize", content=b'{"a":"\xff"}', headers=JSON)),
    ("HTTP", "POST /auth/authorize as text/plain", "415 unsupported_media_type",
     lambda p: p.http("POST", "/auth/authorize", content=b"x", headers=TEXT)),
    ("HTTP", "POST /auth/authorize 17 KiB body", "413 body_too_large",
     lambda p: p.http("POST", "/auth/authorize", content=b" " * 17_000 + b"{}", headers=JSON)),
    ("HTTP", "POST /auth/authorize unknown field", "400 unknown_field",
     lambda p: p.http("POST", "/auth/authorize", json={"evil": 1})),
    ("HTTP", "POST /auth/authorize claim `sm-control`", "422 reserved_claim",
     lambda p: p.http("POST", "/auth/authorize", json={"claims": {"sm-control": "wss://x"}})),
    ("HTTP", "POST /auth/authorize `ttl_seconds: \"60\"`", "400 invalid_ttl",
     lambda p: p.http("POST", "/auth/authorize", json={"ttl_seconds": "60"})),
    ("HTTP", "POST /auth/authorize `ttl_seconds: 10**9`", "422 forbidden_by_policy",
     lambda p: p.http("POST", "/auth/authorize", json={"ttl_seconds": 10**9})),
    ("HTTP", "DELETE /api/jwt", "405", lambda p: p.http("DELETE", "/api/jwt")),
    ("HTTP", "GET /no-such-route", "404", lambda p: p.http("GET", "/no-such-route")),
    ("HTTP", "GET /sessions/x, no credential", "401 no_credentials",
     lambda p: p.http("GET", "/sessions/x")),
    ("HTTP", "GET /sessions/x, Bearer junk", "401 malformed",
     lambda p: p.http("GET", "/sessions/x", headers=bearer("junk"))),
    ("HTTP", "GET /sessions/x, token with numeric `kid`", "401 malformed",
     lambda p: p.http("GET", "/sessions/x", headers=bearer(KID_NUMBER))),
    ("HTTP", "GET /sessions/x, token with `crit`", "401 malformed",
     lambda p: p.http("GET", "/sessions/x", headers=bearer(CRIT))),
    ("HTTP", "GET /sessions/x, `alg: none` token", "401 bad_algorithm",
     lambda p: p.http("GET", "/sessions/x", headers=bearer(ALG_NONE))),
    ("HTTP", "GET /sessions/%C3%A9 with a UI token", "403 forbidden",
     lambda p: p.http("GET", "/sessions/%C3%A9", headers=bearer(p.token))),
    ("HTTP", "GET /sessions/x?access_token=<UI token>", "401 no_credentials",
     lambda p: p.http("GET", f"/sessions/x?access_token={p.token}")),
    ("HTTP", "PATCH /sessions/{own}/variables `{`", "400 invalid_json",
     lambda p: p.http("PATCH", f"/sessions/{p.session_id}/variables", content=b"{",
                      headers={**JSON, **bearer(p.token)})),
    ("HTTP", "POST /sessions/{own}/speak empty text", "400 invalid_body",
     lambda p: p.http("POST", f"/sessions/{p.session_id}/speak", json={"text": " "},
                      headers=bearer(p.token))),
    ("HTTP", "POST /sessions/{own}/speak 5000 characters", "413 too_large",
     lambda p: p.http("POST", f"/sessions/{p.session_id}/speak", json={"text": "a" * 5000},
                      headers=bearer(p.token))),
    ("HTTP", "POST /sessions/{own}/speak, no socket open", "409 not_connected",
     lambda p: p.http("POST", f"/sessions/{p.session_id}/speak", json={"text": "hi"},
                      headers=bearer(p.token))),
    ("HTTP", "GET /videosdk/token?permissions=allow_mod", "403 forbidden_by_policy",
     lambda p: p.http("GET", "/videosdk/token?permissions=allow_mod")),
    ("HTTP", "GET /videosdk/token?permissions=root", "422 invalid_claims",
     lambda p: p.http("GET", "/videosdk/token?permissions=root")),
    ("HTTP", "GET /videosdk/token?expiresIn=forever", "400 invalid_expiry",
     lambda p: p.http("GET", "/videosdk/token?expiresIn=forever")),
    ("HTTP", "POST /tokens/verify, no key", "401 unauthorized",
     lambda p: p.http("POST", "/tokens/verify", json={"token": "x"})),
    ("HTTP", "POST /tokens/verify `{\"token\": 5}`", "400 invalid_body",
     lambda p: p.http("POST", "/tokens/verify", json={"token": 5}, headers=bearer(p.secrets[1]))),
    ("HTTP", "POST /tokens/verify `a.b.c`", "200 valid=false malformed",
     lambda p: p.http("POST", "/tokens/verify", json={"token": "a.b.c"},
                      headers=bearer(p.secrets[1]))),
    ("HTTP", "POST /tokens/verify unknown profile", "400 unknown_profile",
     lambda p: p.http("POST", "/tokens/verify", json={"token": "a.b.c", "profile": "nope"},
                      headers=bearer(p.secrets[1]))),
    ("HTTP", "GET /voicegain/whoami, Bearer junk", "401 malformed",
     lambda p: p.http("GET", "/voicegain/whoami", headers=bearer("junk"))),
    ("HTTP", "POST /voicegain/api-tokens, bad ids", "422 invalid_claims",
     lambda p: p.http("POST", "/voicegain/api-tokens", json={"accountId": "a/b", "contextId": "c"},
                      headers=bearer(p.secrets[2]))),
    ("HTTP", "GET /healthz?q=`eyJeyJ…` (65 KB; logged bounded, no query)", "200",
     lambda p: p.http("GET", "/healthz?q=" + "eyJ" * 21_800)),
    ("HTTP", "PATCH /sessions/{own}/variables 1100 empty objects", "413 too_large",
     lambda p: p.http("PATCH", f"/sessions/{p.session_id}/variables",
                      json={"a": [{}] * 1100}, headers=bearer(p.token))),
    ("HTTP", "POST /auth/authorize 10 KB of nested `[`", "400 invalid_json",
     lambda p: nested(p, "POST", "/auth/authorize")),
    ("HTTP", "POST /videosdk/token 10 KB of nested `[`", "400 invalid_json",
     lambda p: nested(p, "POST", "/videosdk/token")),
    ("HTTP", "POST /tokens/verify 10 KB of nested `[`", "400 invalid_json",
     lambda p: nested(p, "POST", "/tokens/verify", p.secrets[1])),
    ("HTTP", "POST /voicegain/api-tokens 10 KB of nested `[`", "400 invalid_json",
     lambda p: nested(p, "POST", "/voicegain/api-tokens", p.secrets[2])),
    ("HTTP", "POST /sessions/{own}/speak 10 KB of nested `[`", "400 invalid_json",
     lambda p: nested(p, "POST", f"/sessions/{p.session_id}/speak", p.token)),
    ("HTTP", "PATCH /sessions/{own}/variables 10 KB of nested `[`", "400 invalid_json",
     lambda p: nested(p, "PATCH", f"/sessions/{p.session_id}/variables", p.token)),
    ("HTTP", "POST /sessions/{own}/send 10 KB of nested `[`", "400 invalid_json",
     lambda p: nested(p, "POST", f"/sessions/{p.session_id}/send", p.token)),
    ("HTTP", "POST /auth/authorize claim `\"\\ud800\"` (lone surrogate)", "400 invalid_json",
     lambda p: p.http("POST", "/auth/authorize", content=b'{"claims": {"a": "\\ud800"}}',
                      headers=JSON)),
    ("HTTP", "PATCH /sessions/{own}/variables `\"\\ud800\"`", "400 invalid_json",
     lambda p: p.http("PATCH", f"/sessions/{p.session_id}/variables",
                      content=b'{"a": "\\ud800"}', headers={**JSON, **bearer(p.token)})),
    ("HTTP", "PATCH /sessions/{own}/variables `1e999`", "400 invalid_json",
     lambda p: p.http("PATCH", f"/sessions/{p.session_id}/variables", content=b'{"a": 1e999}',
                      headers={**JSON, **bearer(p.token)})),
    ("HTTP", "PATCH /sessions/{own}/variables nested 65 deep", "400 invalid_json",
     lambda p: p.http("PATCH", f"/sessions/{p.session_id}/variables",
                      content=b'{"a":' + b"[" * 64 + b"]" * 64 + b"}",
                      headers={**JSON, **bearer(p.token)})),
    ("HTTP", "GET /sessions/{own}, a stored variable holding `\\ud800`", "200",
     stored_surrogate),
    ("HTTP", "POST /tokens/verify, signed claims holding `\\ud800`", "200 valid=false malformed",
     lambda p: p.http("POST", "/tokens/verify", json={"token": surrogate_token(p)},
                      headers=bearer(p.secrets[1]))),
    # --- WebSocket handshake -------------------------------------------------------
    ("WS handshake", "/ws, no token", "403 no_token", lambda p: p.handshake("/ws")),
    ("WS handshake", "/ws?access_token=junk", "403 malformed",
     lambda p: p.handshake("/ws?access_token=junk")),
    ("WS handshake", "two different access_token values", "403 malformed",
     lambda p: p.handshake(f"/ws?access_token={p.token}&access_token=x")),
    ("WS handshake", "token with numeric `kid`", "403 malformed",
     lambda p: p.handshake(f"/ws?access_token={KID_NUMBER}")),
    ("WS handshake", "`alg: none` token", "403 bad_algorithm",
     lambda p: p.handshake(f"/ws?access_token={ALG_NONE}")),
    ("WS handshake", "expired token", "403 expired", expired),
    ("WS handshake", "valid token, Origin https://evil.example", "403 origin_not_allowed",
     lambda p: p.handshake(f"/ws?access_token={p.token}", {"Origin": "https://evil.example"})),
    ("WS handshake", "valid token, Origin http://localhost:3000", "accepted",
     lambda p: p.handshake(f"/ws?access_token={p.token}", {"Origin": "http://localhost:3000"})),
    ("WS handshake", "`?access%5Ftoken=%65yJ…%2E…` (escaped token; never logged)", "accepted",
     lambda p: p.handshake("/ws?access%5Ftoken=%65" + p.token[1:].replace(".", "%2E"))),
    ("WS handshake", "9 KB token (over the verifier's 8 KiB)", "403 malformed",
     lambda p: p.handshake(f"/ws?access_token={'a' * 9000}")),
    ("WS handshake", "signed claims holding `\\ud800`", "403 malformed",
     lambda p: p.handshake(f"/ws?access_token={surrogate_token(p)}")),
    # --- frames on an open control socket -------------------------------------------
    ("frame", "binary frame", "ignored, counted (binary_frame), socket open, answers",
     lambda p: p.frame(b"\x00\xff")),
    ("frame", "`not json`", "ignored, counted (invalid_json), socket open, answers",
     lambda p: p.frame("not json")),
    ("frame", "`[1, 2]`", "ignored, counted (not_object), socket open, answers",
     lambda p: p.frame("[1, 2]")),
    ("frame", "`kind: \"bogus\"`", "ignored, counted (bad_field), socket open, answers",
     lambda p: p.frame('{"kind": "bogus", "name": "state"}')),
    ("frame", "70 KB frame", "ignored, counted (too_large), socket open, answers",
     lambda p: p.frame('{"kind": "event", "name": "x", "body": {"p": "' + "a" * 70_000 + '"}}')),
    ("frame", "5000-digit number", "ignored, counted (invalid_json), socket open, answers",
     lambda p: p.frame('{"kind": "event", "name": "x", "body": {"n": ' + "9" * 5000 + "}}")),
    ("frame", "`NaN` in the body", "ignored, counted (invalid_json), socket open, answers",
     lambda p: p.frame('{"kind": "event", "name": "x", "body": {"n": NaN}}')),
    ("frame", "10 000 nested arrays", "ignored, counted (invalid_json), socket open, answers",
     lambda p: p.frame("[" * 10_000)),
    ("frame", "conversationRequest `input: 5`", "ignored, counted (bad_field)" + ANSWERS,
     lambda p: p.frame('{"kind": "event", "name": "conversationRequest", "body": {"input": 5}}')),
    ("frame", "unknown message name", "accepted, socket open, answers",
     lambda p: p.frame('{"kind": "event", "name": "somethingNew", "body": {}}')),
    ("frame", "response to a transaction never issued", "accepted, socket open, answers",
     lambda p: p.frame('{"kind": "response", "name": "x", "transaction": 99, "status": 1}')),
    ("frame", "`state` with a 20 000-character userInfo",
     "accepted, 1024 characters kept" + ANSWERS, long_user_info),
    ("frame", "`\"\\ud800\"` (lone surrogate) in the body",
     "ignored, counted (invalid_json)" + ANSWERS,
     lambda p: p.frame('{"kind": "event", "name": "x", "body": {"t": "\\ud800"}}')),
    ("frame", "`1e999` in the body", "ignored, counted (invalid_json)" + ANSWERS,
     lambda p: p.frame('{"kind": "event", "name": "x", "body": {"n": 1e999}}')),
    # --- configuration ------------------------------------------------------------------
    ("HTTP", "GET /archive/sessions?cursor=junk", "400 invalid_query",
     lambda p: p.http("GET", "/archive/sessions?cursor=junk", headers=bearer(p.secrets[0]))),
    ("HTTP", "GET /archive/sessions?limit=1000", "400 invalid_query",
     lambda p: p.http("GET", "/archive/sessions?limit=1000", headers=bearer(p.secrets[0]))),
    ("HTTP", "GET /archive/sessions with a UI token", "403 forbidden",
     lambda p: p.http("GET", "/archive/sessions", headers=bearer(p.token))),
    ("HTTP", "GET /archive/sessions/{own}/transcript?format=xml", "400 invalid_query",
     lambda p: p.http("GET", f"/archive/sessions/{p.session_id}/transcript?format=xml",
                      headers=bearer(p.token))),
    ("HTTP", "GET /archive/sessions, cursor with a lone surrogate id", "400 invalid_query",
     lambda p: archive_cursor(p, '[1.0, "\\ud800"]')),
    ("HTTP", "GET /archive/sessions, cursor `[` * 1200", "400 invalid_query",
     lambda p: archive_cursor(p, "[" * 1200)),
    ("HTTP", "GET /archive/sessions, cursor `[NaN, \"x\"]`", "400 invalid_query",
     lambda p: archive_cursor(p, '[NaN, "x"]')),
    ("HTTP", "GET /archive/sessions, cursor `[1e999, \"x\"]`", "400 invalid_query",
     lambda p: archive_cursor(p, '[1e999, "x"]')),
    ("HTTP", "GET /archive/sessions, cursor id with NUL", "400 invalid_query",
     lambda p: archive_cursor(p, '[1.0, "a\\u0000"]')),
    ("HTTP", "GET /archive/sessions, cursor id of 129 characters", "400 invalid_query",
     lambda p: archive_cursor(p, f'[1.0, "{"x" * 129}"]')),
    ("config", "`JWT_PRIVATE_KEY` of 9 bytes", "refused at start-up (exit 2)",
     lambda p: config({"JWT_PUBLIC_KEY": "k", "JWT_PRIVATE_KEY": SHORT_KEY})),
    ("config", "`JWT_PREVIOUS_KEYS=not json`", "refused at start-up (exit 2)",
     lambda p: config({"JWT_PREVIOUS_KEYS": "not json", "JWT_PUBLIC_KEY": "k",
                       "JWT_PRIVATE_KEY": random_secret()})),
    ("config", "`TOKEN_TTL_SECONDS=abc`", "refused at start-up (exit 2)",
     lambda p: config({"TOKEN_TTL_SECONDS": "abc"})),
    ("config", "`TOKEN_TTL_SECONDS=5`", "refused at start-up (exit 2)",
     lambda p: config({"TOKEN_TTL_SECONDS": "5"})),
    ("config", "`CONTROL_VIA_BROWSER=true` + `PRODUCTION_PERSONA=true`",
     "refused at start-up (exit 2)",
     lambda p: config({"CONTROL_VIA_BROWSER": "true", "PRODUCTION_PERSONA": "true"})),
    ("config", "`CORS_ORIGINS=ftp://x`", "refused at start-up (exit 2)",
     lambda p: config({"CORS_ORIGINS": "ftp://x"})),
    ("config", "`ORCHESTRATOR_API_KEY` of 9 bytes", "refused at start-up (exit 2)",
     lambda p: config({"ORCHESTRATOR_API_KEY": SHORT_KEY})),
    ("config", "`CONTROL_MAX_FRAME_BYTES=10`", "refused at start-up (exit 2)",
     lambda p: config({"CONTROL_MAX_FRAME_BYTES": "10"})),
    ("config", "`PUBLIC_URL=ftp://x`", "refused at start-up (exit 2)",
     lambda p: config({"PUBLIC_URL": "ftp://x"})),
    ("config", "`TOKEN_PROFILES=nope`", "refused at start-up (exit 2)",
     lambda p: config({"TOKEN_PROFILES": "nope"})),
    ("config", "`TOKEN_RATE_LIMIT=lots`", "refused at start-up (exit 2)",
     lambda p: config({"TOKEN_RATE_LIMIT": "lots"})),
    ("config", "`TRANSCRIPT_MAX_BYTES=1000`", "refused at start-up (exit 2)",
     lambda p: config({"TRANSCRIPT_MAX_BYTES": "1000"})),
    ("config", "`REDIS_URL=foo`", "refused at start-up (exit 2)",
     lambda p: config({"REDIS_URL": "foo"})),
    ("config", "`REDIS_URL=http://host:6379`", "refused at start-up (exit 2)",
     lambda p: config({"REDIS_URL": "http://host:6379"})),
    ("config", "`REDIS_URL=redis://host:port/0`", "refused at start-up (exit 2)",
     lambda p: config({"REDIS_URL": "redis://host:port/0"})),
    ("config", "`ARCHIVE_URL=mysql://host/db`", "refused at start-up (exit 2)",
     lambda p: config({"ARCHIVE_URL": "mysql://host/db"})),
    ("config", "`ARCHIVE_URL=orchestrator.db`", "refused at start-up (exit 2)",
     lambda p: config({"ARCHIVE_URL": "orchestrator.db"})),
    ("config", "`ARCHIVE_RETENTION_DAYS=-1`", "refused at start-up (exit 2)",
     lambda p: config({"ARCHIVE_RETENTION_DAYS": "-1"})),
    ("config", "`TRUSTED_PROXY_HOPS=-1`", "refused at start-up (exit 2)",
     lambda p: config({"TRUSTED_PROXY_HOPS": "-1"})),
    ("config", "`CONVERSATION_HANDLER` naming a plain `def`", "refused at start-up (exit 2)",
     lambda p: config({"CONVERSATION_HANDLER": f"{TEST_HANDLERS}:sync_handle"})),
    ("config", "`CONVERSATION_HANDLER` taking one argument", "refused at start-up (exit 2)",
     lambda p: config({"CONVERSATION_HANDLER": f"{TEST_HANDLERS}:one_argument"})),
    ("config", "`CONVERSATION_HANDLER` object with a plain `def on_idle`",
     "refused at start-up (exit 2)",
     lambda p: config({"CONVERSATION_HANDLER": f"{TEST_HANDLERS}:sync_hook"})),
    ("config", "`CONVERSATION_HANDLER` object whose `on_end` takes no reason",
     "refused at start-up (exit 2)",
     lambda p: config({"CONVERSATION_HANDLER": f"{TEST_HANDLERS}:end_without_reason"})),
    ("config", "`IDLE_PROMPT_SECONDS=-1`", "refused at start-up (exit 2)",
     lambda p: config({"IDLE_PROMPT_SECONDS": "-1"})),
    ("config", "`WEBHOOK_SECRET` of 9 bytes", "refused at start-up (exit 2)",
     lambda p: config({"WEBHOOK_SECRET": SHORT_KEY})),
    ("config", "`CONVERSATION_HANDLER=webhook` without `WEBHOOK_URL`",
     "refused at start-up (exit 2)",
     lambda p: config({"CONVERSATION_HANDLER": "webhook", "WEBHOOK_SECRET": random_secret()})),
    ("config", "`CONVERSATION_HANDLER=webhook` without `WEBHOOK_SECRET`",
     "refused at start-up (exit 2)",
     lambda p: config({"CONVERSATION_HANDLER": "webhook", "WEBHOOK_URL": "http://127.0.0.1:9/"})),
    ("config", "`WEBHOOK_URL=ftp://…`", "refused at start-up (exit 2)",
     lambda p: config({"WEBHOOK_URL": "ftp://backend.example.com/turn"})),
    ("config", "`WEBHOOK_URL=http://…` in production", "refused at start-up (exit 2)",
     lambda p: config(production(WEBHOOK_URL="http://backend.example.com/turn"))),
    ("config", "`WEBHOOK_URL=http://127.0.0.1:9000/…` (a sidecar) in production", "accepted",
     lambda p: config(production(CONVERSATION_HANDLER="webhook", WEBHOOK_SECRET=random_secret(),
                                 WEBHOOK_URL="http://127.0.0.1:9000/turn"))),
    ("config", "`SESSION_SERVER=ws://…` in production", "refused at start-up (exit 2)",
     lambda p: config(production(SESSION_SERVER="ws://dh.soulmachines.cloud"))),
    ("config", "`SESSION_SERVER=wss://…` in production", "accepted",
     lambda p: config(production(SESSION_SERVER="wss://dh.soulmachines.cloud"))),
    ("config", "`CONVERSATION_HANDLER=llm` without `LLM_MODEL`", "refused at start-up (exit 2)",
     lambda p: config({"CONVERSATION_HANDLER": "llm"})),
    ("config", "`CONVERSATION_HANDLER=llm` with `LLM_MODEL`", "accepted",
     lambda p: config(LLM)),
    ("config", "`LLM_BASE_URL=ftp://x`", "refused at start-up (exit 2)",
     lambda p: config({**LLM, "LLM_BASE_URL": "ftp://x"})),
    ("config", "`LLM_BASE_URL=http://…` (not loopback) in production",
     "refused at start-up (exit 2)",
     lambda p: config(production(**LLM, LLM_BASE_URL="http://llm.example.com/v1"))),
    ("config", "`LLM_BASE_URL=http://127.0.0.1:11434/v1` in production", "accepted",
     lambda p: config(production(**LLM, LLM_BASE_URL="http://127.0.0.1:11434/v1"))),
    ("config", "`LLM_SYSTEM_PROMPT` naming `{claims.x.__class__}`", "refused at start-up (exit 2)",
     lambda p: config({**LLM, "LLM_SYSTEM_PROMPT": "Hi {claims.x.__class__}"})),
    ("config", "`LLM_SYSTEM_PROMPT=@` a missing file", "refused at start-up (exit 2)",
     lambda p: config({**LLM, "LLM_SYSTEM_PROMPT": "@/no/such/prompt.txt"})),
    ("config", "`LLM_SPEECH=words`", "refused at start-up (exit 2)",
     lambda p: config({**LLM, "LLM_SPEECH": "words"})),
    ("config", "`LLM_TEMPERATURE=3`", "refused at start-up (exit 2)",
     lambda p: config({**LLM, "LLM_TEMPERATURE": "3"})),
]  # fmt: skip


@contextmanager
def probe() -> Iterator[Probe]:
    """The app with every route mounted, a UI token, and the secrets to look for."""
    api_key, verify_key, admin_key = random_secret(), random_secret(), random_secret()
    settings = make_settings(
        api_keys=(api_key,),
        profiles=("soul-machines", "ccai", "videosdk", "voicegain"),
        verify_api_key=verify_key,
        ccai_company_name="ACME",
        ccai_secret=random_secret(),
        videosdk_api_key="videosdk-api-key",
        videosdk_secret=random_secret(),
        voicegain_secret=random_secret(),
        voicegain_admin_key=admin_key,
        rate_limit="100000/minute",
        archive_url="sqlite:///:memory:",
    )
    secrets = [api_key, verify_key, admin_key, *settings.secrets]
    with TestClient(create_app(settings)) as client:
        issued = client.get("/api/jwt").json()
        yield Probe(client, secrets, issued["jwt"], issued["session_id"])


def observe() -> tuple[list[tuple[str, str, str, str]], Probe]:
    """Every row with what was observed: (boundary, input, expected, observed)."""
    with probe() as p:
        table = [(b, text, expected, run(p)) for b, text, expected, run in ROWS]
    return table, p


def markdown(table: list[tuple[str, str, str, str]]) -> str:
    lines = ["| boundary | input | observed |", "| --- | --- | --- |"]
    lines += [f"| {b} | {text} | {observed} |" for b, text, _, observed in table]
    return "\n".join(lines)


def main() -> int:
    """Print the observed table (docs/reliability.md holds it); exit 1 if a row differs."""
    configure_logging(json=False, level="error", stream=sys.stderr)  # stdout is the table
    table, _ = observe()
    print(markdown(table))
    mismatches = [row for row in table if row[2] != row[3]]
    for boundary, text, expected, observed in mismatches:
        print(
            f"MISMATCH {boundary} {text}: expected {expected}, observed {observed}", file=sys.stderr
        )
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
