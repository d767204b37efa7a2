"""The conversation on one control socket, without I/O (a sans-I/O core).

``ConversationCore`` owns every change to a live session: ``receive`` takes a
frame, the handler-facing operations (``respond``, ``speak``, ...) their
arguments, and each returns the actions that follow (``actions``), which the
connection carries out. So these rules are tested by feeding frames, with no
socket or event loop. Logging and metrics are synchronous and happen here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.control import outbound, protocol
from orchestrator.control.actions import (
    ENDED,
    FLOODED,
    INTERRUPT,
    NOTHING,
    OVERSIZED,
    SAVE,
    SPEECH_CHANGED,
    WRONG_KEY_NAME,
    Action,
    Actions,
    IdleTimer,
    Publish,
    Send,
    SentReply,
    StartIdle,
    StartTurn,
    turn_event,
)
from orchestrator.control.flood import TokenBucket
from orchestrator.control.idle import IdleWatch
from orchestrator.control.options import (
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    MAX_OVERSIZE_FRAMES,
    MAX_QUEUED_TURNS,
    ControlOptions,
)
from orchestrator.control.transactions import PendingRequests
from orchestrator.handlers import Reply, TurnTimings
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.sessions.model import (
    MAX_EVENT_NAME_CHARS,
    MAX_STATE_CHARS,
    MAX_TURN_CHARS,
    Session,
    SessionStatus,
    VariablesRefused,
    VariableWriter,
    check_reply_variables,
    clip,
)

LOGGER_NAME = "orchestrator.control"
log = get_logger(LOGGER_NAME)


class ConversationCore:
    """The session's conversation state on one socket, and its only writer."""

    def __init__(
        self,
        session: Session,
        options: ControlOptions,
        *,
        verified: bool,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The transcript only grows here, so this is where its bounds are applied.
        session.bound_transcript(
            turns=options.transcript_turns, max_bytes=options.transcript_max_bytes
        )
        self.session = session
        self.metrics = metrics
        self.max_frame_bytes = options.max_frame_bytes
        self.verified_issuer = session.issuer if verified else None
        self.pending = PendingRequests(
            timeout_seconds=options.transaction_timeout_seconds, clock=clock
        )
        self.bucket = TokenBucket(options.max_frames_per_second, options.burst_frames, clock=clock)
        self.queued_turns = 0
        self.oversize_frames = 0
        self.log = log.bind(session_id=session.id)
        self.clock = clock
        handler = options.loaded
        self.interruptible = handler.interruptible
        # None (no work at all) unless the handler has on_idle and the setting is on.
        self.idle: IdleWatch | None = None
        if handler.on_idle is not None and options.idle_prompt_seconds > 0:
            self.idle = IdleWatch(options.idle_prompt_seconds, clock)

    # --- frames in -----------------------------------------------------------------

    def receive(self, frame: str | bytes) -> Actions:
        """One inbound frame: bad ones are counted and ignored, never closed on."""
        session = self.session
        session.frames_in += 1
        session.last_activity_at = time.time()
        if self.metrics is not None:
            self.metrics.messages_in.inc()
        if not self.bucket.take():
            self.log.warning("frame rate limit exceeded; closing", code=CLOSE_POLICY)
            return (FLOODED,)
        try:
            envelope = protocol.parse_frame(frame, max_bytes=self.max_frame_bytes)
        except protocol.FrameError as exc:
            return self._bad_frame(exc)
        if envelope.kind == "response":
            self._response(envelope)
            return NOTHING
        try:
            return self._dispatch(envelope)
        except protocol.FrameError as exc:
            return self._bad_frame(exc, name=envelope.name)

    def _bad_frame(self, error: protocol.FrameError, name: str | None = None) -> Actions:
        self.session.bad_frames += 1
        if self.metrics is not None:
            self.metrics.bad_frames.labels(error.code).inc()
        self.log.warning("bad frame ignored", reason=error.code, detail=str(error), name=name)
        if error.code == "too_large":
            self.oversize_frames += 1
            if self.oversize_frames >= MAX_OVERSIZE_FRAMES:
                self.log.warning("repeated oversize frames; closing", code=CLOSE_TOO_BIG)
                return (OVERSIZED,)
        return NOTHING

    def _response(self, envelope: protocol.Envelope) -> None:
        request = self.pending.resolve(envelope)
        if request is None:
            # In via-browser mode the browser forwards responses to its own requests.
            self.log.debug("response to a transaction we did not issue ignored")
            return
        if envelope.status not in (None, 0):
            self.log.warning(
                "request failed", request=request.name, status=envelope.status, body=envelope.body
            )

    def _dispatch(self, envelope: protocol.Envelope) -> Actions:
        name = envelope.name
        if name == "conversationRequest":
            return self._start_turn(protocol.conversation_request(envelope))
        if name == "state":
            return self._state(protocol.state(envelope))
        if name == "recognizeResults":
            transcript = protocol.final_transcript(envelope)
            if transcript is None:
                return NOTHING
            transcript = clip(transcript, MAX_TURN_CHARS)
            self.session.last_user_transcript = transcript
            return (Publish("recognized", {"transcript": transcript}),)
        if name not in protocol.KNOWN_INBOUND:
            self.log.info(
                "unknown message kept", name=clip(name, MAX_EVENT_NAME_CHARS), kind=envelope.kind
            )
        self.session.add_event(name, envelope.kind)
        return NOTHING

    def _state(self, update: protocol.StateBody) -> Actions:
        """Apply a (partial) state update; save and publish only what changed."""
        session = self.session
        if (
            update.key_name is not None
            and self.verified_issuer is not None
            and update.key_name != self.verified_issuer
        ):
            self.log.warning("keyName does not match the token's issuer; closing")
            return (WRONG_KEY_NAME,)
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
        if before == _state_fields(session):
            return NOTHING
        if before[4:] == (session.speech_state, session.recognizing):
            return (SAVE,)
        event = {"speech_state": session.speech_state, "recognizing": session.recognizing}
        actions: list[Action] = [Publish("speech", event)]
        if before[4] != session.speech_state:
            actions.append(SPEECH_CHANGED)
            if self.idle is not None:
                speaking = session.speech_state != "idle"
                actions.append(IdleTimer(self.idle.speech(speaking=speaking)))
        if session.recognizing and not before[5]:
            # The user started speaking: an interruptible handler's answer stops.
            if self.interruptible:
                actions.append(INTERRUPT)
            if self.idle is not None:
                actions.append(IdleTimer(self.idle.heard()))
        actions.append(SAVE)
        return actions

    # --- turns ---------------------------------------------------------------------

    def _start_turn(self, body: protocol.ConversationRequestBody) -> Actions:
        if self.queued_turns >= MAX_QUEUED_TURNS:
            self.log.warning("turn dropped: too many queued turns", queued=self.queued_turns)
            return NOTHING
        session = self.session
        if body.persona_id is not None:
            session.persona_id = body.persona_id
        user_turn = None
        if not body.is_init:
            # Recorded now, not when the handler gets to it: a host that drops
            # mid-turn loses the reply, never the user's words.
            session.turns += 1
            user_turn = session.add_turn("user", body.text)
        self.queued_turns += 1
        start = StartTurn(body, user_turn, TurnTimings(self.clock))
        if self.idle is None and not self.interruptible:
            return (start,)
        actions: list[Action] = []
        if self.interruptible and not body.is_init:
            actions.append(INTERRUPT)
        if self.idle is not None:
            actions.append(IdleTimer(self.idle.turn_started(user=not body.is_init)))
        actions.append(start)
        return actions

    def turn_done(self) -> Actions:
        """A turn started by ``StartTurn`` (or ``StartIdle``) finished or was cancelled."""
        self.queued_turns -= 1
        if self.idle is None:
            return NOTHING
        return (IdleTimer(self.idle.turn_finished()),)

    def idle_due(self) -> Actions:
        """The idle timer fired: prompt if the silence still lasts (once per silence)."""
        if self.idle is None:
            return NOTHING
        seconds = self.idle.due()
        if seconds is None:
            return (IdleTimer(self.idle.deadline),)
        self.queued_turns += 1
        return (StartIdle(seconds),)

    # --- what the server says (for handlers, commands and the sessions API) ----------

    def request(self, envelope: protocol.Envelope) -> Send:
        """``envelope`` as a request with a fresh transaction id (matched when answered)."""
        for expired in self.pending.expire():
            self.log.warning(
                "no response to request", request=expired.name, transaction=expired.transaction
            )
        pending = self.pending.issue(envelope.name)
        stamped = protocol.Envelope(
            envelope.kind, envelope.name, envelope.body, pending.transaction, envelope.status
        )
        return Send(stamped.to_json())

    def respond(
        self, reply: Reply, *, input_text: str = "", timings: TurnTimings | None = None
    ) -> Actions:
        """Answer a turn (or speak unprompted as one); ``TypeError``/``ValueError``
        when the reply's variables are not JSON or (``VariablesRefused``) past the
        conversation's bound, before anything is recorded.

        With the turn's ``timings`` the entry gets its ``latency_ms`` once sent.
        """
        session = self.session
        own = reply.all_variables()
        try:
            check_reply_variables(own)
        except VariablesRefused as exc:
            self.variables_refused(exc)
            raise
        variables = {**session.variables, **own}
        output = reply.output_text()
        send = self.request(
            outbound.conversation_response(
                input_text=input_text,
                output_text=output,
                variables=variables,
                fallback=reply.fallback,
            )
        )
        turn = session.add_turn("dp", output, fallback=reply.fallback, timed=timings is not None)
        if timings is not None:
            return (send, SentReply(turn, timings, {"fallback": reply.fallback}))
        return (send, Publish("turn", turn_event(turn, fallback=reply.fallback)))

    def speak(
        self,
        text: str,
        *,
        can_be_interrupted: bool = True,
        filter_commands: bool | None = None,
        timings: TurnTimings | None = None,
    ) -> Actions:
        send = self.request(
            outbound.start_speaking(
                persona_id=self.session.persona_id,
                text=text,
                can_be_interrupted=can_be_interrupted,
                filter_commands=filter_commands,
            )
        )
        turn = self.session.add_turn("dp", text, timed=timings is not None)
        if timings is not None:
            return (send, SentReply(turn, timings, {"unprompted": True}))
        return (send, Publish("turn", turn_event(turn, unprompted=True)))

    def stop_speaking(self) -> Actions:
        return (self.request(outbound.stop_speaking(persona_id=self.session.persona_id)),)

    def patch_variables(
        self, patch: Mapping[str, Any], writer: VariableWriter = VariableWriter.HANDLER
    ) -> Actions:
        """Merge ``patch`` into the shared variables (``None`` removes a name),
        within ``writer``'s bounds (``Session.patch_variables``).

        Values must be plain JSON: they ride on every later reply, so one bad
        value is refused here (``TypeError``/``ValueError``) rather than
        breaking every turn after it; a change past the bound raises
        ``VariablesRefused`` (logged and counted) and changes nothing.
        """
        try:
            self.session.patch_variables(patch, writer)
        except VariablesRefused as exc:
            self.variables_refused(exc)
            raise
        return (Publish("variables", {"variables": dict(self.session.variables)}), SAVE)

    def variables_refused(self, refused: VariablesRefused) -> None:
        self.log.warning("variables refused", writer=refused.writer.value, reason=str(refused))
        if self.metrics is not None:
            self.metrics.variables_refused.labels(refused.writer.value).inc()

    def sent(self) -> None:
        """A frame went out."""
        self.session.frames_out += 1
        if self.metrics is not None:
            self.metrics.messages_out.inc()

    # --- lifecycle -------------------------------------------------------------------

    def connected(self, source: str) -> Actions:
        session = self.session
        session.status = SessionStatus.CONNECTED
        session.connected_at = time.time()
        session.ended_at = None
        if self.idle is not None:
            return (SAVE, Publish("connected", {"source": source}), IdleTimer(self.idle.deadline))
        return (SAVE, Publish("connected", {"source": source}))

    def ended(self) -> Actions:
        """The socket closed and no newer one took the session over."""
        self.session.mark_ended()
        return (SAVE, Publish("ended", {}))

    def terminate(self) -> Actions:
        """Ended through the API: recorded before the socket closes, so the
        caller reads it at once."""
        self.session.mark_ended(terminated=True)
        return (SAVE, ENDED)


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
