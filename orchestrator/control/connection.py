"""One live control socket: read frames, keep the session, run the handler.

Reading never stops for a turn: each ``conversationRequest`` runs as a task
(turns of one session in order), so ``state`` events and responses keep
flowing while a handler works. Bad frames are logged and counted and nothing
is closed; only abuse (a flood past the rate limit, repeated oversize frames)
or a peer that stops reading closes the socket, with a documented code.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from orchestrator.control import protocol
from orchestrator.control.flood import TokenBucket
from orchestrator.control.transactions import PendingRequest, PendingRequests
from orchestrator.handlers import ConversationRequest, Handler, Reply
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.sessions.events import EventHub, SessionEvent
from orchestrator.sessions.model import (
    DEFAULT_TRANSCRIPT_MAX_BYTES,
    DEFAULT_TRANSCRIPT_TURNS,
    MAX_EVENT_NAME_CHARS,
    MAX_STATE_CHARS,
    MAX_TURN_CHARS,
    Session,
    Turn,
    apply_merge_patch,
    clip,
)
from orchestrator.sessions.store import SessionStore

if TYPE_CHECKING:
    from orchestrator.control.live import LiveConnections

log = get_logger("orchestrator.control")

# Close codes (documented in the README).
CLOSE_NORMAL = 1000  # the session was ended through the API
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_POLICY = 1008  # flood past the rate limit; keyName does not match the token
CLOSE_TOO_BIG = 1009  # repeated oversize frames
CLOSE_REPLACED = 4001  # a newer connection for the same session took over
CLOSE_SLOW_PEER = 4008  # the peer stopped reading

MAX_OVERSIZE_FRAMES = 3
CLOSE_TIMEOUT_SECONDS = 2.0
MAX_QUEUED_TURNS = 16


@dataclass
class ControlOptions:
    """Limits and behaviour of control connections (from the settings)."""

    handler: Handler
    handler_timeout_seconds: float = 10.0
    apology: str = "Sorry, something went wrong on my side."
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES
    max_frames_per_second: float = 50.0
    burst_frames: float = 200.0
    send_timeout_seconds: float = 10.0
    transaction_timeout_seconds: float = 10.0
    transcript_turns: int = DEFAULT_TRANSCRIPT_TURNS
    transcript_max_bytes: int = DEFAULT_TRANSCRIPT_MAX_BYTES


@dataclass
class ControlServices:
    store: SessionStore
    events: EventHub
    options: ControlOptions
    live: LiveConnections
    metrics: Metrics | None = None


class ControlConnection:
    """The live conversation on one socket; also the handler's ``Conversation``."""

    def __init__(
        self, websocket: WebSocket, session: Session, services: ControlServices, *, verified: bool
    ) -> None:
        self.websocket = websocket
        # Which socket exactly, and since when: the live registry names one connection,
        # and "newest wins" between instances compares start times.
        self.id = secrets.token_hex(6)
        self.started_at = time.time()
        # The transcript only grows here, so this is where its bounds are applied.
        session.bound_transcript(
            turns=services.options.transcript_turns,
            max_bytes=services.options.transcript_max_bytes,
        )
        self._session = session
        self.services = services
        self.options = services.options
        self.metrics = services.metrics
        self.verified_issuer = session.issuer if verified else None
        self.pending = PendingRequests(timeout_seconds=self.options.transaction_timeout_seconds)
        self.bucket = TokenBucket(self.options.max_frames_per_second, self.options.burst_frames)
        self._send_lock = asyncio.Lock()
        self._turn_lock = asyncio.Lock()
        self._turns: set[asyncio.Task[None]] = set()
        self._oversize = 0
        self._closing = False
        self._aborted = False
        self._run_task: asyncio.Task[Any] | None = None
        self.log = log.bind(session_id=session.id)

    # --- Conversation API (for handlers and the sessions API) -------------------

    @property
    def session(self) -> Session:
        return self._session

    async def respond(self, reply: Reply, *, input_text: str = "") -> None:
        variables = {**self._session.variables, **reply.all_variables()}
        output = reply.output_text()
        await self.send_request(
            protocol.conversation_response(
                input_text=input_text,
                output_text=output,
                variables=variables,
                fallback=reply.fallback,
            )
        )
        turn = self._session.add_turn("dp", output, fallback=reply.fallback)
        await self.publish("turn", _turn_event(turn, fallback=reply.fallback))

    async def speak(
        self, text: str, *, can_be_interrupted: bool = True, filter_commands: bool | None = None
    ) -> None:
        await self.send_request(
            protocol.start_speaking(
                persona_id=self._session.persona_id,
                text=text,
                can_be_interrupted=can_be_interrupted,
                filter_commands=filter_commands,
            )
        )
        turn = self._session.add_turn("dp", text)
        await self.publish("turn", _turn_event(turn, unprompted=True))

    async def stop_speaking(self) -> None:
        await self.send_request(protocol.stop_speaking(persona_id=self._session.persona_id))

    async def set_variables(self, variables: Mapping[str, Any]) -> None:
        await self.patch_variables(variables)

    async def patch_variables(self, patch: Mapping[str, Any]) -> None:
        """Merge ``patch`` into the shared variables (``None`` removes a name).

        Values must be plain JSON: they ride on every later reply, so one bad
        value is refused here (``TypeError``/``ValueError``) rather than
        breaking every turn after it.
        """
        patch = json.loads(json.dumps(dict(patch), allow_nan=False))
        apply_merge_patch(self._session.variables, patch)
        await self.publish("variables", {"variables": dict(self._session.variables)})
        await self.persist()

    # --- sending ---------------------------------------------------------------

    async def send_request(self, envelope: protocol.Envelope) -> PendingRequest:
        """Send a request with a fresh transaction id (matched when answered)."""
        for expired in self.pending.expire():
            self.log.warning(
                "no response to request", request=expired.name, transaction=expired.transaction
            )
        pending = self.pending.issue(envelope.name)
        envelope = protocol.Envelope(
            envelope.kind, envelope.name, envelope.body, pending.transaction, envelope.status
        )
        await self.send(envelope)
        return pending

    async def send(self, envelope: protocol.Envelope) -> None:
        if self._closing:
            return
        text = envelope.to_json()
        try:
            async with self._send_lock:
                await asyncio.wait_for(
                    self.websocket.send_text(text), self.options.send_timeout_seconds
                )
        except TimeoutError:
            self.log.warning("peer stopped reading; closing", code=CLOSE_SLOW_PEER)
            await self.close(CLOSE_SLOW_PEER, "peer is not reading")
            return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        self._session.frames_out += 1
        if self.metrics is not None:
            self.metrics.messages_out.inc()

    # --- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket until the peer (or we) close it."""
        self._run_task = asyncio.current_task()
        try:
            while not self._closing:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    self.log.info("control socket closed", code=message.get("code"))
                    break
                await self.on_frame(message.get("text"), message.get("bytes"))
        except WebSocketDisconnect:
            pass
        except asyncio.CancelledError:
            if not self._aborted:
                raise
            # close() gave up on a peer that does not read: stop serving it.
            if self._run_task is not None:
                self._run_task.uncancel()
        finally:
            self._closing = True
            for task in self._turns:
                task.cancel()
            self.pending.cancel_all()

    async def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if self.websocket.application_state is WebSocketState.CONNECTED:
            try:
                await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                # The close frame cannot get through (the peer does not read).
                self.log.warning("close frame not delivered; dropping the connection")
                self._aborted = True
                if self._run_task is not None and self._run_task is not asyncio.current_task():
                    self._run_task.cancel()
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass

    # --- inbound -----------------------------------------------------------------

    async def on_frame(self, text: str | None, data: bytes | None) -> None:
        session = self._session
        session.frames_in += 1
        session.last_activity_at = time.time()
        if self.metrics is not None:
            self.metrics.messages_in.inc()
        if not self.bucket.take():
            self.log.warning("frame rate limit exceeded; closing", code=CLOSE_POLICY)
            await self.close(CLOSE_POLICY, "message rate limit exceeded")
            return
        try:
            frame = text if text is not None else (data or b"")
            envelope = protocol.parse_frame(frame, max_bytes=self.options.max_frame_bytes)
        except protocol.FrameError as exc:
            await self.on_bad_frame(exc)
            return
        if envelope.kind == "response":
            self.on_response(envelope)
            return
        try:
            await self.dispatch(envelope)
        except protocol.FrameError as exc:
            await self.on_bad_frame(exc, name=envelope.name)

    async def on_bad_frame(self, error: protocol.FrameError, name: str | None = None) -> None:
        self._session.bad_frames += 1
        if self.metrics is not None:
            self.metrics.bad_frames.labels(error.code).inc()
        self.log.warning("bad frame ignored", reason=error.code, detail=str(error), name=name)
        if error.code == "too_large":
            self._oversize += 1
            if self._oversize >= MAX_OVERSIZE_FRAMES:
                self.log.warning("repeated oversize frames; closing", code=CLOSE_TOO_BIG)
                await self.close(CLOSE_TOO_BIG, "repeated oversize frames")

    def on_response(self, envelope: protocol.Envelope) -> None:
        request = self.pending.resolve(envelope)
        if request is None:
            # In via-browser mode the browser forwards responses to its own requests.
            self.log.debug("response to a transaction we did not issue ignored")
            return
        if envelope.status not in (None, 0):
            self.log.warning(
                "request failed", request=request.name, status=envelope.status, body=envelope.body
            )

    async def dispatch(self, envelope: protocol.Envelope) -> None:
        name = envelope.name
        if name == "conversationRequest":
            self.start_turn(protocol.conversation_request(envelope))
        elif name == "state":
            await self.on_state(protocol.state(envelope))
        elif name == "recognizeResults":
            transcript = protocol.final_transcript(envelope)
            if transcript is not None:
                transcript = clip(transcript, MAX_TURN_CHARS)
                self._session.last_user_transcript = transcript
                await self.publish("recognized", {"transcript": transcript})
        else:
            if name not in protocol.KNOWN_INBOUND:
                self.log.info(
                    "unknown message kept",
                    name=clip(name, MAX_EVENT_NAME_CHARS),
                    kind=envelope.kind,
                )
            self._session.add_event(name, envelope.kind)

    async def on_state(self, update: protocol.StateBody) -> None:
        """Apply a (partial) state update; save and publish only what changed."""
        session = self._session
        if (
            update.key_name is not None
            and self.verified_issuer is not None
            and update.key_name != self.verified_issuer
        ):
            self.log.warning("keyName does not match the token's issuer; closing")
            await self.close(CLOSE_POLICY, "keyName does not match the token issuer")
            return
        before = _state_fields(session)
        # Kept cut to MAX_STATE_CHARS (the keyName check above saw all of it).
        dp_session_id = update.dp_session_id and clip(update.dp_session_id, MAX_STATE_CHARS)
        if dp_session_id is not None and dp_session_id != session.dp_session_id:
            if session.dp_session_id is not None:
                self.log.info("DP session id changed", previous=session.dp_session_id)
            session.dp_session_id = dp_session_id
            self.log.info("DP session bound", dp_session_id=dp_session_id)
        if update.key_name is not None:
            session.key_name = clip(update.key_name, MAX_STATE_CHARS)
        if update.session_state is not None:
            session.dp_session_state = clip(update.session_state, MAX_STATE_CHARS)
        if update.user_info is not None:
            session.user_info = clip(update.user_info, MAX_STATE_CHARS)
        speech = update.speech_states.get(str(session.persona_id))  # JSON keys are strings
        if speech is None and update.speech_states:
            speech = next(iter(update.speech_states.values()))
        if speech is not None:
            session.speech_state = speech
        if update.recognizing is not None:
            session.recognizing = update.recognizing
        if before[4:] != (session.speech_state, session.recognizing):
            await self.publish(
                "speech", {"speech_state": session.speech_state, "recognizing": session.recognizing}
            )
        if before != _state_fields(session):
            await self.persist()

    # --- turns -------------------------------------------------------------------

    def start_turn(self, body: protocol.ConversationRequestBody) -> None:
        if len(self._turns) >= MAX_QUEUED_TURNS:
            self.log.warning("turn dropped: too many queued turns", queued=len(self._turns))
            return
        if body.persona_id is not None:
            self._session.persona_id = body.persona_id
        user_turn = None
        if not body.is_init:
            # Recorded now, not when the handler gets to it: a host that drops
            # mid-turn loses the reply, never the user's words.
            self._session.turns += 1
            user_turn = self._session.add_turn("user", body.text)
        task = asyncio.create_task(self.run_turn(body, user_turn))
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)

    async def run_turn(
        self, body: protocol.ConversationRequestBody, user_turn: Turn | None = None
    ) -> None:
        async with self._turn_lock:
            session = self._session
            if user_turn is not None:
                await self.publish("turn", _turn_event(user_turn))
            request = ConversationRequest(
                text=body.text,
                variables=body.variables,
                is_init=body.is_init,
                optional_args=body.optional_args,
                session=session,
            )
            reply: Reply | None
            started = time.perf_counter()
            try:
                reply = await asyncio.wait_for(
                    self.options.handler(request, self), self.options.handler_timeout_seconds
                )
            except TimeoutError:
                self.log.error(
                    "conversation handler timed out", seconds=self.options.handler_timeout_seconds
                )
                reply = Reply(self.options.apology)
            except Exception:
                self.log.exception("conversation handler failed")
                reply = Reply(self.options.apology)
            if self.metrics is not None:
                self.metrics.turns.inc()
                self.metrics.handler_latency.observe(time.perf_counter() - started)
            if reply is not None:
                try:
                    await self.respond(reply, input_text=body.text)
                except (TypeError, ValueError):
                    # e.g. a Reply whose variables are not JSON: this turn is lost, not the socket.
                    self.log.exception("reply could not be sent")
                    await self.respond(Reply(self.options.apology), input_text=body.text)
            await self.persist()

    # --- shared state --------------------------------------------------------------

    async def persist(self) -> None:
        try:
            await self.services.store.save(self._session)
        except Exception as exc:  # a store outage must not end the conversation
            self.log.warning("session not saved", error=type(exc).__name__)

    async def publish(self, event_type: str, data: dict[str, Any]) -> None:
        try:
            await self.services.events.publish(SessionEvent(self._session.id, event_type, data))
        except Exception as exc:
            self.log.warning("session event not published", error=type(exc).__name__)


def _turn_event(turn: Turn, **extra: bool) -> dict[str, Any]:
    """A ``turn`` event: the entry as the transcript keeps it (so followers'
    queues hold no more than the transcript does)."""
    data: dict[str, Any] = {"role": turn.role, "text": turn.text, **extra}
    if turn.original_length is not None:
        data["truncated"] = True
        data["original_length"] = turn.original_length
    return data


def _state_fields(session: Session) -> tuple[Any, ...]:
    """What a ``state`` event can change (speech state and recognizing last)."""
    return (
        session.key_name,
        session.dp_session_id,
        session.dp_session_state,
        session.user_info,
        session.speech_state,
        session.recognizing,
    )
