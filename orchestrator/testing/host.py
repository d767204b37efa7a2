"""The video host in memory: a real Starlette ``WebSocket`` over ASGI queues.

The server's own ``ControlConnection`` reads and writes it as it would a
client's socket, so the conversation runs exactly as live, with no server and
no network. This side plays the DP: it answers every request the server makes
(``status: 0``) and reports speech (``speaking``, then ``idle``) around each
answer, as ``orchestrator simulate`` does over a real socket. It also tells the
caller when every frame it passed in has been handled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket

from orchestrator.control import protocol
from orchestrator.testing.results import ANSWERS, Sent

# The server's own frames: bounded by its settings already; this only parses them.
MAX_SERVER_FRAME_BYTES = 64 * 1024 * 1024


class MemoryHost:
    """Both ends of one in-memory control socket; ``websocket`` is the server's end."""

    def __init__(self, *, persona_id: int = 1, clock: Callable[[], float] = time.monotonic):
        self.persona_id = persona_id
        self.clock = clock
        self.sent: list[Sent] = []  # what the server sent, in order
        self.closed_with: int | None = None  # the server's close code
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._handed = False
        self._inbox.put_nowait({"type": "websocket.connect"})
        scope: dict[str, Any] = {
            "type": "websocket",
            "path": "/ws",
            "raw_path": b"/ws",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            "subprotocols": [],
            "extensions": {},
        }
        self.websocket = WebSocket(scope, self._receive, self._send)

    # --- the DP's side -------------------------------------------------------------

    def push(self, envelope: protocol.Envelope) -> None:
        """Send the server a frame (handled in order by its receive loop)."""
        self._inbox.put_nowait({"type": "websocket.receive", "text": envelope.to_json()})

    def hang_up(self, code: int = 1000) -> None:
        self._inbox.put_nowait({"type": "websocket.disconnect", "code": code})

    async def handled(self) -> None:
        """Return once the server took up every frame pushed so far (its receive
        loop asked for the next one, so each frame's actions were carried out)."""
        await self._inbox.join()

    # --- ASGI, as the server sees it ------------------------------------------------------

    async def _receive(self) -> Message:
        if self._handed:
            self._handed = False
            self._inbox.task_done()
        message = await self._inbox.get()
        self._handed = True
        return message

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.close":
            self.closed_with = int(message.get("code", 1000))
            self.hang_up(self.closed_with)
            return
        if kind != "websocket.send":
            return  # websocket.accept
        text = message.get("text")
        if text is None:
            return
        envelope = protocol.parse_frame(text, max_bytes=MAX_SERVER_FRAME_BYTES)
        self.sent.append(Sent(envelope, self.clock()))
        self._act_like_the_dp(envelope)

    def _act_like_the_dp(self, envelope: protocol.Envelope) -> None:
        if envelope.kind != "request":
            return
        if envelope.transaction is not None:
            self.push(protocol.Envelope("response", envelope.name, {}, envelope.transaction, 0))
        if envelope.name in ANSWERS:
            for speech_state in ("speaking", "idle"):
                self.push(self._speech(speech_state))

    def _speech(self, speech_state: str) -> protocol.Envelope:
        persona = {str(self.persona_id): {"speechState": speech_state}}
        return protocol.Envelope("event", "state", {"persona": persona})

    # --- what the host says --------------------------------------------------------

    def opening_state(self, dp_session_id: str) -> protocol.Envelope:
        """The session ``state`` a host sends first (no ``keyName``: none to check)."""
        return protocol.Envelope(
            "event",
            "state",
            {
                "session": {
                    "sessionId": dp_session_id,
                    "state": "connected",
                    "userInfo": "",
                    "meta": {"soulId": "orchestrator-test", "sceneId": 1},
                },
                "persona": {str(self.persona_id): {"speechState": "idle"}},
                "recognizing": False,
            },
        )

    def request(self, text: str, *, init: bool = False) -> protocol.Envelope:
        body: dict[str, Any] = {
            "personaId": self.persona_id,
            "input": {"text": text},
            "variables": {},
            "optionalArgs": {"kind": "init"} if init else {},
        }
        return protocol.Envelope("event", "conversationRequest", body)

    def recognized(self, text: str) -> protocol.Envelope:
        result = {"final": True, "alternatives": [{"confidence": 1.0, "transcript": text}]}
        return protocol.Envelope("event", "recognizeResults", {"status": 0, "results": [result]})
