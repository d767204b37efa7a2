"""A stand-in for the Soul Machines video host, for trying a handler without
an account: ``orchestrator simulate``.

It gets a token from ``/api/jwt`` (or takes one), opens the control socket
named by the token's ``sm-control`` exactly as the host does
(``?access_token=``), sends the initial ``state`` with a DP session, the
``init`` request, then each typed (or scripted) line as ``recognizeResults``
plus ``conversationRequest``. It answers the server's requests like the DP
(a ``response`` with ``status: 0``, and ``speaking``/``idle`` state events
around speech) and prints what the digital person says.

A turn is over when the server says so: ``simulate`` follows the session's
events (``GET /sessions/{id}/events`` with the same token) and waits for the
turn's ``answered`` event and every frame it counts, so an answer spoken in
several pieces (``LLM_SPEECH=sentences``) is heard whole before the next line
goes. Where the events cannot be followed it falls back to ``--settle``
seconds of quiet.

Script files: one utterance per line; ``#`` starts a comment; ``/sleep S``
pauses; ``/raw {json}`` sends a frame as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any, TextIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from orchestrator.control import protocol
from tokens import InvalidTokenError
from tokens.jws import read_unverified_claims

_CARD_MARKER = re.compile(r"@showcards\(([^)]*)\)")
FOLLOW_TIMEOUT_SECONDS = 5.0  # to subscribe to the session's events
TURN_TIMEOUT_SECONDS = 120.0  # the longest a turn is waited for, with its end known


class SimulationError(Exception):
    """A failure the ``simulate`` command reports as one line on stderr (exit 1)."""


def _reason(exc: BaseException) -> str:
    """An exception as a short phrase: ``Connection refused``, not ``[Errno 111] ...``."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's says "Connect call failed (host, port)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fetch_token(base_url: str, timeout: float = 10.0) -> dict[str, Any]:
    """``GET {base_url}/api/jwt`` -> ``{"url", "jwt", ...}``, or ``SimulationError``."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SimulationError(
            "--url must be an http(s):// URL with a host, such as http://127.0.0.1:8080, "
            f"not {base_url!r}"
        )
    url = base_url.rstrip("/") + "/api/jwt"
    request = Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            raw = response.read()
    except HTTPError as exc:
        detail = _one_line(exc.read().decode("utf-8", "replace")) if exc.fp else ""
        raise SimulationError(
            f"GET {url} answered HTTP {exc.code}: {detail or exc.reason}"
        ) from None
    except URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(exc.reason)
        raise SimulationError(
            f"cannot reach {url}: {_reason(reason)} (is `orchestrator serve` running there?)"
        ) from None
    except (OSError, HTTPException, ValueError) as exc:
        # Timeouts and resets while reading; a peer that does not speak HTTP; a bad port.
        raise SimulationError(f"cannot reach {url}: {_reason(exc)}") from None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("jwt"), str):
        raise SimulationError(
            f'GET {url} answered no token (expected JSON with a "jwt"): is {base_url} an '
            "orchestrator server?"
        )
    return body


@dataclass
class DPMessage:
    """One thing the server told the digital person to do."""

    envelope: protocol.Envelope
    received_at: float = 0.0  # the event loop's clock

    def describe(self) -> str:
        env = self.envelope
        body = env.body
        if env.name == "conversationResponse":
            output = body.get("output", {})
            text = output.get("text", "") if isinstance(output, dict) else ""
            line = f"DP: {_CARD_MARKER.sub('', text).strip()}"
            variables = body.get("variables") or {}
            for card_id in _CARD_MARKER.findall(text):
                card = variables.get(f"public-{card_id}", {})
                component = card.get("component", "?") if isinstance(card, dict) else "?"
                line += f"\n    [card {card_id}: {component}]"
            if body.get("fallback"):
                line += "\n    [fallback]"
            return line
        if env.name == "startSpeaking":
            return f"DP (unprompted): {body.get('text', '')}"
        if env.name == "stopSpeaking":
            return "DP: (stops speaking)"
        return f"<- {env.kind} {env.name} {json.dumps(dict(body))}"


@dataclass
class HostSimulator:
    """The video host's side of one control socket."""

    connection: ClientConnection
    key_name: str | None = None
    persona_id: int = 1
    dp_session_id: str = field(default_factory=lambda: f"sim-{secrets.token_hex(6)}")
    received: list[protocol.Envelope] = field(default_factory=list)
    # The server's end-of-turn signal, when its events are followed (else None).
    turn_ends: TurnEnds | None = None
    frames: int = 0  # frames read from the server on this socket

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, control_url: str, token: str | None, *, open_timeout: float = 10.0
    ) -> AsyncIterator[HostSimulator]:
        joiner = "&" if "?" in control_url else "?"
        url = control_url if token is None else f"{control_url}{joiner}access_token={token}"
        issuer = _unverified_claims(token).get("iss") if token is not None else None
        key_name = issuer if isinstance(issuer, str) else None
        async with websockets.connect(
            url, open_timeout=open_timeout, max_size=2**20, ping_interval=None
        ) as connection:
            yield cls(connection, key_name=key_name)

    async def send(self, envelope: protocol.Envelope) -> None:
        await self.connection.send(envelope.to_json())

    async def send_raw(self, frame: str | bytes) -> None:
        await self.connection.send(frame)

    async def start(self, *, settle: float = 0.3, within: float = 10.0) -> list[DPMessage]:
        """The host's opening: the session ``state``, then the ``init`` request."""
        meta: dict[str, Any] = {
            "soulId": "simulator",
            "sceneId": 1,
            "server": "simulator",
            "region": "local",
            "headers": {"User-Agent": ["orchestrator-simulate"], "Accept-Language": ["en"]},
        }
        if self.key_name is not None:
            meta["keyName"] = self.key_name
        await self.send(
            protocol.Envelope(
                "event",
                "state",
                {
                    "session": {
                        "sessionId": self.dp_session_id,
                        "state": "connected",
                        "userInfo": "",
                        "meta": meta,
                    },
                    "persona": {str(self.persona_id): {"speechState": "idle"}},
                    "recognizing": False,
                },
            )
        )
        self._forget_earlier_turns()
        await self.send(self._request("", init=True))
        return await self.collect(settle=settle, within=within, turn=True)

    async def say(self, text: str, *, settle: float = 0.3, within: float = 10.0) -> list[DPMessage]:
        """The user says ``text``: speech recognition, then the conversation request."""
        await self.send(
            protocol.Envelope(
                "event",
                "recognizeResults",
                {
                    "status": 0,
                    "results": [
                        {"final": True, "alternatives": [{"confidence": 0.9, "transcript": text}]}
                    ],
                },
            )
        )
        await self.send(self._request(text))
        return await self.collect(settle=settle, within=within, turn=True)

    def _forget_earlier_turns(self) -> None:
        """Ends already heard belong to turns before this one (a ``/raw`` request's)."""
        if self.turn_ends is not None:
            while not self.turn_ends.queue.empty():
                self.turn_ends.queue.get_nowait()

    def _request(self, text: str, *, init: bool = False) -> protocol.Envelope:
        body: dict[str, Any] = {
            "personaId": self.persona_id,
            "input": {"text": text},
            "variables": {"Turn_Id": secrets.token_hex(4), "is_speaking": False},
            "optionalArgs": {"kind": "init"} if init else {},
        }
        return protocol.Envelope("event", "conversationRequest", body)

    async def collect(self, *, settle: float, within: float, turn: bool = False) -> list[DPMessage]:
        """Read what the server says: for a ``turn`` whose end the server reports,
        until it has ended and all its frames arrived; otherwise until a
        ``conversationResponse`` arrived and ``settle`` seconds pass quietly."""
        if turn and self.turn_ends is not None:
            return await self._collect_turn(
                self.turn_ends, within=max(within, TURN_TIMEOUT_SECONDS)
            )
        messages: list[DPMessage] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        answered = False
        while True:
            remaining = deadline - loop.time()
            wait = min(settle, remaining) if answered else remaining
            if wait <= 0:
                break
            try:
                frame = await asyncio.wait_for(self.connection.recv(), wait)
            except TimeoutError:
                break
            envelope = await self._heard(frame, messages)
            if envelope.name in ("conversationResponse", "startSpeaking"):
                answered = True
        return messages

    async def _collect_turn(self, ends: TurnEnds, *, within: float) -> list[DPMessage]:
        messages: list[DPMessage] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        expected: int | None = None  # frames on this socket once the turn has ended
        reading: asyncio.Task[str | bytes] | None = None
        ending: asyncio.Task[int] | None = None
        try:
            while expected is None or self.frames < expected:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if reading is None:
                    reading = asyncio.create_task(self.connection.recv())
                if ending is None and expected is None:
                    ending = asyncio.create_task(ends.queue.get())
                waiting = {task for task in (reading, ending) if task is not None}
                done, _ = await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if ending is not None and ending in done:
                    expected = ending.result() - ends.baseline
                    ending = None
                if reading in done:
                    frame, reading = reading.result(), None
                    await self._heard(frame, messages)
        finally:
            for task in (reading, ending):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        return messages

    async def _heard(self, frame: str | bytes, messages: list[DPMessage]) -> protocol.Envelope:
        self.frames += 1
        envelope = protocol.parse_frame(frame)
        self.received.append(envelope)
        messages.append(DPMessage(envelope, asyncio.get_running_loop().time()))
        await self._act_like_the_dp(envelope)
        return envelope

    async def _act_like_the_dp(self, envelope: protocol.Envelope) -> None:
        if envelope.kind != "request":
            return
        if envelope.transaction is not None:
            await self.send(
                protocol.Envelope("response", envelope.name, {}, envelope.transaction, status=0)
            )
        if envelope.name in ("conversationResponse", "startSpeaking"):
            for speech_state in ("speaking", "idle"):
                await self.send(
                    protocol.Envelope(
                        "event",
                        "state",
                        {"persona": {str(self.persona_id): {"speechState": speech_state}}},
                    )
                )


@dataclass
class TurnEnds:
    """The ``answered`` events of one session, read from its event stream: each
    carries how many frames the session had sent when the turn ended."""

    queue: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    baseline: int = 0  # frames sent before this socket (the snapshot's count)

    @classmethod
    @asynccontextmanager
    async def follow(
        cls, base_url: str, token: str, *, within: float = FOLLOW_TIMEOUT_SECONDS
    ) -> AsyncIterator[TurnEnds | None]:
        """Follow the token's session, or ``None`` when its events cannot be followed."""
        session_id = _unverified_claims(token).get("session_id")
        if not isinstance(session_id, str) or not base_url.startswith(("http://", "https://")):
            yield None
            return
        ends = cls()
        subscribed = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(ends._read(base_url, session_id, token, subscribed))
        try:
            try:
                following = await asyncio.wait_for(asyncio.shield(subscribed), within)
            except TimeoutError:
                following = False
            yield ends if following else None
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(
        self, base_url: str, session_id: str, token: str, subscribed: asyncio.Future[bool]
    ) -> None:
        url = f"{base_url.rstrip('/')}/sessions/{session_id}/events"
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        event = ""
        try:
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http,
                http.stream("GET", url, headers=headers) as response,
            ):
                if response.status_code != 200:
                    return
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self._event(event, line[6:], subscribed)
        except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError):
            return
        finally:
            if not subscribed.done():
                subscribed.set_result(False)

    def _event(self, event: str, data: str, subscribed: asyncio.Future[bool]) -> None:
        body = json.loads(data)
        if event == "snapshot" and not subscribed.done():
            counters = body.get("counters", {}) if isinstance(body, dict) else {}
            self.baseline = int(counters.get("frames_out", 0))
            subscribed.set_result(True)
        elif event == "answered":
            self.queue.put_nowait(int(body["data"]["frames_out"]))


def _unverified_claims(token: str) -> dict[str, Any]:
    """What the token says, for routing only; the server does the verifying."""
    try:
        return read_unverified_claims(token)
    except InvalidTokenError:
        return {}


def script_lines(lines: Iterable[str]) -> Iterable[str]:
    for raw in lines:
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line


async def run_simulation(
    *,
    base_url: str,
    token: str | None,
    control_url: str | None,
    lines: Iterable[str],
    out: TextIO,
    prompt: Callable[[], None] | None = None,
    settle: float = 0.3,
) -> int:
    """The ``simulate`` command's body; returns the exit code."""
    if token is None:
        issued = await asyncio.to_thread(fetch_token, base_url)
        token = str(issued["jwt"])
    target = control_url or _unverified_claims(token).get("sm-control")
    if not isinstance(target, str):
        raise SimulationError("the token has no sm-control URL; pass --control-url")
    try:
        async with (
            TurnEnds.follow(base_url, token) as turn_ends,
            HostSimulator.connect(target, token) as host,
        ):
            host.turn_ends = turn_ends
            print(f"connected to {target} (DP session {host.dp_session_id})", file=out)
            for message in await host.start(settle=settle):
                print(message.describe(), file=out)
            if prompt is not None:
                prompt()
            pending = iter(script_lines(lines))
            # Reading the next line in a thread keeps the socket served while a user types.
            while (line := await asyncio.to_thread(next, pending, None)) is not None:
                if line.startswith("/sleep"):
                    await asyncio.sleep(_sleep_seconds(line))
                elif line.startswith("/raw "):
                    await host.send_raw(line[5:])
                    for message in await host.collect(settle=settle, within=settle):
                        print(message.describe(), file=out)
                else:
                    print(f"you: {line}", file=out)
                    for message in await host.say(line, settle=settle):
                        print(message.describe(), file=out)
                if prompt is not None:
                    prompt()
    except websockets.InvalidURI as exc:
        raise SimulationError(f"bad control URL {target!r}: {exc}") from None
    except websockets.InvalidStatus as exc:
        body = exc.response.body.decode("utf-8", "replace") if exc.response.body else ""
        raise SimulationError(
            f"the control socket at {target} refused: HTTP {exc.response.status_code} "
            f"{_one_line(body)}".strip()
        ) from None
    except websockets.InvalidHandshake as exc:
        raise SimulationError(f"{target} is not a control socket: {_reason(exc)}") from None
    except websockets.ConnectionClosed as exc:
        raise SimulationError(f"connection closed: {exc}") from None
    except OSError as exc:
        raise SimulationError(f"cannot connect to {target}: {_reason(exc)}") from None
    return 0


def _sleep_seconds(line: str) -> float:
    _, _, value = line.partition(" ")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise SimulationError(f"script line {line!r}: use /sleep SECONDS")
    return seconds


def interactive_lines() -> Iterable[str]:
    """Lines typed at the terminal until end of input."""
    yield from sys.stdin
