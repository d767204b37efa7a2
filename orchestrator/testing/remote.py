"""The same scenarios against a running server (``orchestrator test --url``).

The server's own handler answers; this side is ``orchestrator simulate``'s
video host (``simulate.HostSimulator``) on the server's control socket. The
token comes from the server as the UI gets it: ``GET /api/jwt``, or ``POST
/auth/authorize`` with the scenario's claims. Starting variables are set
through the sessions API with that token before the socket opens, and each
turn's session variables are read back the same way.

A turn ends as ``simulate``'s do (``simulate.TurnEnds``): when the server's
``answered`` event for it arrived with every frame it counts, so an answer said
in pieces with pauses between them (``LLM_SPEECH=sentences``) is collected
whole; ``settle`` seconds of quiet end a turn only where the session's events
cannot be followed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import httpx
import websockets

from orchestrator.simulate import (
    DPMessage,
    HostSimulator,
    SimulationError,
    TurnEnds,
    fetch_token,
)
from orchestrator.testing.results import Sent, TurnResult, turn_result
from tokens import InvalidTokenError
from tokens.jws import read_unverified_claims

HTTP_TIMEOUT_SECONDS = 10.0
# The longest a turn may take before the host stops waiting for its first answer.
ANSWER_WITHIN_SECONDS = 60.0


class RemoteConversation:
    """One session on a running server; the interface of ``InProcessConversation``."""

    def __init__(
        self,
        base_url: str,
        *,
        claims: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None,
        settle: float = 0.3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.claims = dict(claims or {})
        self.variables = dict(variables or {})
        self.settle = settle
        self._stack = AsyncExitStack()
        self._http: httpx.AsyncClient | None = None
        self._host: HostSimulator | None = None
        self.token = ""
        self.session_id = ""

    async def start(self) -> None:
        """Get a token, set the starting variables, open the control socket."""
        issued = await self._issue()
        self.token = str(issued["jwt"])
        self.session_id = str(issued.get("session_id", ""))
        if not self.session_id:
            raise SimulationError(f"{self.base_url} issued a token without a session_id")
        if self.variables:
            await self._call("PATCH", f"/sessions/{self.session_id}/variables", self.variables)
        # Followed before the socket opens: the snapshot's frame count is the baseline.
        turn_ends = await self._stack.enter_async_context(
            TurnEnds.follow(self.base_url, self.token)
        )
        try:
            self._host = await self._stack.enter_async_context(
                HostSimulator.connect(_control_url(self.token), self.token)
            )
        except (OSError, websockets.WebSocketException) as exc:
            raise SimulationError(f"cannot open the control socket: {exc}") from None
        self._host.turn_ends = turn_ends

    async def welcome(self) -> TurnResult:
        host = self._live()
        started = asyncio.get_running_loop().time()
        messages = await host.start(settle=self.settle, within=ANSWER_WITHIN_SECONDS)
        return await self._result(messages, started)

    async def say(self, text: str) -> TurnResult:
        host = self._live()
        started = asyncio.get_running_loop().time()
        messages = await host.say(text, settle=self.settle, within=ANSWER_WITHIN_SECONDS)
        return await self._result(messages, started)

    async def close(self) -> None:
        await self._stack.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _live(self) -> HostSimulator:
        if self._host is None:
            raise SimulationError("the conversation is not started")
        return self._host

    async def _result(self, messages: list[DPMessage], started: float) -> TurnResult:
        sent = [Sent(message.envelope, message.received_at) for message in messages]
        session = await self._call("GET", f"/sessions/{self.session_id}")
        variables = session.get("variables")
        held = variables if isinstance(variables, dict) else {}
        return turn_result(sent, started=started, session_variables=held)

    async def _issue(self) -> dict[str, Any]:
        if not self.claims:
            return await asyncio.to_thread(fetch_token, self.base_url)
        return await self._call("POST", "/auth/authorize", {"claims": self.claims}, token=False)

    async def _call(
        self, method: str, path: str, body: Any = None, *, token: bool = True
    ) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.base_url, timeout=HTTP_TIMEOUT_SECONDS)
        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        url = f"{self.base_url}{path}"
        try:
            response = await self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SimulationError(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 400 or not isinstance(answer, dict):
            detail = answer.get("detail") or answer.get("error") if isinstance(answer, dict) else ""
            raise SimulationError(
                f"{method} {url} answered HTTP {response.status_code} {detail or ''}".strip()
            )
        return answer


def _control_url(token: str) -> str:
    """The token's ``sm-control``: where the video host connects."""
    try:
        control = read_unverified_claims(token).get("sm-control")
    except InvalidTokenError:
        control = None
    if not isinstance(control, str):
        raise SimulationError("the server's token names no control socket (sm-control)")
    return control
