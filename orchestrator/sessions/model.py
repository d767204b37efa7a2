"""The session: what UI, backend and the live DP conversation share.

A session exists from the moment its token is issued (``issued``), becomes
``connected`` while a control socket is live, and ``ended`` when it closes
(a host may reconnect with the same token until the token expires, unless the
session was terminated through the API).
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.sessions.transcript import (
    MAX_STAGE_CHARS,
    MAX_TIMING_STAGES,
    Transcript,
    Turn,
    TurnEntry,
    entry_cost,
    make_entry,
    with_latency,
)

DEFAULT_TRANSCRIPT_TURNS = 200
DEFAULT_TRANSCRIPT_MAX_BYTES = 128 * 1024
DEFAULT_EVENT_LOG = 50
# What a session keeps of text a peer sends (what goes to the DP or the handler
# is never cut): a transcript entry, the last recognised transcript ...
MAX_TURN_CHARS = 4000
# ... the name of an unhandled message in the event log ...
MAX_EVENT_NAME_CHARS = 64
# ... and each string a ``state`` event sets (DP session id and state, userInfo, keyName).
MAX_STATE_CHARS = 1024


# A session's variables, whoever writes them: at most this much JSON and this many
# values and member names (parsed, each costs up to ~80 bytes however short its JSON).
MAX_VARIABLES_BYTES = 64 * 1024
MAX_VARIABLES_VALUES = 1024
# Every other writer (the UI's token, handler code, webhook replies, the model) fills at
# most three quarters of that: the last quarter is the backend's, never locked out.
CONVERSATION_VARIABLES_BYTES = 48 * 1024
CONVERSATION_VARIABLES_VALUES = 768
# The model writes only names under this prefix (never the backend's), within its own budget.
MODEL_VARIABLE_PREFIX = "llm-"
MODEL_VARIABLES_BYTES = 16 * 1024
MODEL_VARIABLES_VALUES = 256


class VariableWriter(StrEnum):
    """Who changes a session's variables (each has its bound; see ``merge_variables``)."""

    BACKEND = "backend"  # the sessions API with the API key, on any instance
    UI = "ui"  # the sessions API with the session's own token
    HANDLER = "handler"  # the conversation handler: its code, the webhook's replies
    MODEL = "model"  # the LLM handler's set_variable tool


class VariablesRefused(ValueError):
    """A change that would take the variables past its writer's bound: nothing changed."""

    def __init__(self, writer: VariableWriter, reason: str) -> None:
        super().__init__(reason)
        self.writer = writer


def json_values(value: Any, limit: int) -> int:
    """Values and member names in parsed JSON, counted up to just past ``limit``."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _cost(variables: Mapping[str, Any], max_values: int) -> tuple[int, int]:
    """(bytes of JSON, values) of ``variables``; values counted up to just past ``max_values``."""
    return len(json.dumps(variables)), json_values(variables, max_values)


def _check(
    writer: VariableWriter,
    what: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    max_bytes: int,
    max_values: int,
) -> None:
    """Refuse ``after`` when it is over a bound and grew towards it (a change that
    shrinks the variables, a removal, is always allowed)."""
    after_bytes, after_values = _cost(after, max_values)
    if after_bytes <= max_bytes and after_values <= max_values:
        return
    before_bytes, before_values = _cost(before, max_values)
    if (after_bytes > max_bytes and after_bytes > before_bytes) or (
        after_values > max_values and after_values > before_values
    ):
        raise VariablesRefused(
            writer, f"{what} would exceed {max_bytes} bytes of JSON or {max_values} values"
        )


def merge_variables(
    current: Mapping[str, Any], patch: Mapping[str, Any], writer: VariableWriter
) -> dict[str, Any]:
    """``current`` with ``patch`` merged (``None`` removes a name), within ``writer``'s bounds.

    The one bounded merge every writer goes through (``Session.patch_variables``).
    ``patch`` must be plain JSON (``TypeError``/``ValueError``); a change past a
    bound raises ``VariablesRefused`` whole: no variable is cut or dropped.
    """
    plain: dict[str, Any] = json.loads(json.dumps(dict(patch), allow_nan=False))
    if writer is VariableWriter.MODEL:
        foreign = [name for name in plain if not name.startswith(MODEL_VARIABLE_PREFIX)]
        if foreign:
            raise VariablesRefused(
                writer, f"the model may set only {MODEL_VARIABLE_PREFIX}* variables"
            )
    merged = dict(current)
    apply_merge_patch(merged, plain)
    if writer is VariableWriter.BACKEND:
        _check(writer, "the variables", current, merged, MAX_VARIABLES_BYTES, MAX_VARIABLES_VALUES)
        return merged
    _check(
        writer,
        "the variables",
        current,
        merged,
        CONVERSATION_VARIABLES_BYTES,
        CONVERSATION_VARIABLES_VALUES,
    )
    if writer is VariableWriter.MODEL:
        _check(
            writer,
            f"the model's {MODEL_VARIABLE_PREFIX}* variables",
            _model_owned(current),
            _model_owned(merged),
            MODEL_VARIABLES_BYTES,
            MODEL_VARIABLES_VALUES,
        )
    return merged


def check_reply_variables(variables: Mapping[str, Any]) -> None:
    """A reply's own variables (cards included), which ride on that reply only and are
    never kept: ``VariablesRefused`` past the conversation's bound."""
    if not variables:
        return
    size, values = _cost(variables, CONVERSATION_VARIABLES_VALUES)
    if size > CONVERSATION_VARIABLES_BYTES or values > CONVERSATION_VARIABLES_VALUES:
        raise VariablesRefused(
            VariableWriter.HANDLER,
            f"a reply's variables exceed {CONVERSATION_VARIABLES_BYTES} bytes of JSON "
            f"or {CONVERSATION_VARIABLES_VALUES} values",
        )


def _model_owned(variables: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: value for name, value in variables.items() if name.startswith(MODEL_VARIABLE_PREFIX)
    }


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters (for what a session keeps)."""
    return text if len(text) <= limit else text[:limit]


def apply_merge_patch(variables: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7396 at the top level: ``null`` removes a variable, anything else sets it."""
    for name, value in patch.items():
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value


class SessionStatus(StrEnum):
    ISSUED = "issued"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass(slots=True)
class Session:
    """One DP session as this server knows it."""

    id: str
    issuer: str
    expires_at: int
    claims: dict[str, Any] = field(default_factory=dict)
    status: SessionStatus = SessionStatus.ISSUED
    terminated: bool = False
    created_at: float = field(default_factory=time.time)
    connected_at: float | None = None
    ended_at: float | None = None
    last_activity_at: float | None = None
    dp_session_id: str | None = None
    dp_session_state: str | None = None
    user_info: str | None = None
    key_name: str | None = None
    persona_id: int | str = "1"  # as the DP sent it (1 or "1"): replies use the same type
    variables: dict[str, Any] = field(default_factory=dict)
    speech_state: str = "idle"
    recognizing: bool = False
    last_user_transcript: str | None = None
    turns: int = 0
    frames_in: int = 0
    frames_out: int = 0
    bad_frames: int = 0
    # Made on first use (see ``transcript`` and ``events``): most issued sessions
    # never converse, and two empty deques would be ~1.5 KiB of each record.
    _transcript: deque[TurnEntry] | None = field(default=None, init=False, repr=False)
    _events: deque[dict[str, Any]] | None = field(default=None, init=False, repr=False)
    # The transcript's bounds beside its deque's maxlen (see ``bound_transcript``),
    # and what its entries cost now.
    _transcript_max_bytes: int = field(default=DEFAULT_TRANSCRIPT_MAX_BYTES, init=False, repr=False)
    _transcript_bytes: int = field(default=0, init=False, repr=False)

    @property
    def transcript(self) -> Transcript:
        """The latest turns, oldest first (``DEFAULT_TRANSCRIPT_TURNS`` unless rebounded),
        as ``Turn`` copies: add entries with ``add_turn``, which keeps the bounds."""
        return Transcript(self._entries())

    def _entries(self) -> deque[TurnEntry]:
        if self._transcript is None:
            self._transcript = deque(maxlen=DEFAULT_TRANSCRIPT_TURNS)
        return self._transcript

    @property
    def transcript_bytes(self) -> int:
        """What the transcript's entries cost (``Turn.cost``), at most its byte budget."""
        return self._transcript_bytes

    @property
    def events(self) -> deque[dict[str, Any]]:
        """The latest unhandled inbound messages, oldest first."""
        if self._events is None:
            self._events = deque(maxlen=DEFAULT_EVENT_LOG)
        return self._events

    def bound_transcript(self, *, turns: int, max_bytes: int) -> None:
        """Keep at most ``turns`` entries costing at most ``max_bytes`` (oldest dropped)."""
        self._transcript_max_bytes = max_bytes
        entries = self._entries()
        if entries.maxlen != turns:
            self._transcript = deque(entries, maxlen=turns)
            self._transcript_bytes = sum(map(entry_cost, self._transcript))
        self._trim_transcript()

    def add_turn(
        self, role: str, text: str, *, fallback: bool = False, timed: bool = False
    ) -> Turn:
        """Record a line; past ``MAX_TURN_CHARS`` only its start is kept (and marked).

        ``timed``: a reply whose ``latency_ms`` is filled in once it is sent.
        """
        original_length = len(text) if len(text) > MAX_TURN_CHARS else None
        entry = make_entry(
            role,
            clip(text, MAX_TURN_CHARS),
            time.time(),
            fallback,
            original_length,
            {} if timed else None,
        )
        self._append_turn(entry)
        return Turn.from_entry(entry)

    def record_latency(self, turn: Turn, latency_ms: Mapping[str, float]) -> None:
        """A sent reply's stages, onto ``turn`` (a timed one from ``add_turn``) and
        onto its entry, while the transcript still holds it."""
        if turn.latency_ms is None:
            return
        latency = turn.latency_ms
        latency.update(latency_ms)
        stored = turn.entry
        if stored is None:
            turn.entry = turn.to_entry()
            return
        updated = with_latency(stored, latency)
        entries = self._transcript
        if entries is not None:
            # The reply is one of the last few entries: look from the newest.
            for index in range(len(entries) - 1, -1, -1):
                if entries[index] is stored:
                    entries[index] = updated
                    break
        turn.entry = updated

    def add_event(self, name: str, kind: str) -> None:
        """Log an unhandled inbound message (its name cut to ``MAX_EVENT_NAME_CHARS``)."""
        self.events.append(
            {"name": clip(name, MAX_EVENT_NAME_CHARS), "kind": kind, "at": time.time()}
        )

    def _append_turn(self, entry: TurnEntry) -> None:
        entries = self._entries()
        if entries.maxlen is not None and len(entries) >= entries.maxlen:
            self._transcript_bytes -= entry_cost(entries.popleft())
        entries.append(entry)
        self._transcript_bytes += entry_cost(entry)
        self._trim_transcript()

    def _trim_transcript(self) -> None:
        """Drop the oldest entries past the byte budget (the newest always stays)."""
        entries = self._entries()
        while self._transcript_bytes > self._transcript_max_bytes and len(entries) > 1:
            self._transcript_bytes -= entry_cost(entries.popleft())

    def patch_variables(self, patch: Mapping[str, Any], writer: VariableWriter) -> None:
        """Merge ``patch`` into the variables within ``writer``'s bounds, or raise
        (``VariablesRefused``, ``TypeError``/``ValueError``) and change nothing."""
        merged = merge_variables(self.variables, patch, writer)
        self.variables.clear()
        self.variables.update(merged)

    def mark_ended(self, *, terminated: bool = False) -> None:
        """The conversation is over (``terminated``: ended through the API for good)."""
        self.status = SessionStatus.ENDED
        self.ended_at = self.ended_at or time.time()
        self.terminated = self.terminated or terminated

    def retained_until(self, grace_seconds: float) -> float | None:
        """When a store may forget this record; ``None`` while a socket is live.

        The grace period runs from the later of the token's expiry and the
        conversation's end, so a conversation that outlived its token stays
        readable after it ends.
        """
        if self.status is SessionStatus.CONNECTED:
            return None
        return max(float(self.expires_at), self.ended_at or 0.0) + grace_seconds

    def is_expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """The public JSON view (what the sessions API and SSE show): as
        ``to_record``, but ``persona_id`` is always a string, the form the DP's
        ``state`` keys personas by, whether the DP sent ``1`` or ``"1"``."""
        view = self.to_record()
        view["persona_id"] = str(self.persona_id)
        return view

    def to_record(self) -> dict[str, Any]:
        """The stored form, which ``from_dict`` reads back: ``persona_id`` keeps
        the type the DP used, so replies after a reload send it back the same."""
        return {
            "id": self.id,
            "status": self.status.value,
            "terminated": self.terminated,
            "issuer": self.issuer,
            "expires_at": self.expires_at,
            "claims": self.claims,
            "created_at": self.created_at,
            "connected_at": self.connected_at,
            "ended_at": self.ended_at,
            "last_activity_at": self.last_activity_at,
            "dp_session_id": self.dp_session_id,
            "dp_session_state": self.dp_session_state,
            "user_info": self.user_info,
            "key_name": self.key_name,
            "persona_id": self.persona_id,
            "variables": self.variables,
            "speech_state": self.speech_state,
            "recognizing": self.recognizing,
            "last_user_transcript": self.last_user_transcript,
            "transcript": [Turn.from_entry(entry).to_dict() for entry in self._transcript or ()],
            "events": list(self._events or ()),
            "counters": {
                "turns": self.turns,
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "bad_frames": self.bad_frames,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        """Rebuild from ``to_record()`` output (the store's serialised form)."""
        counters = data.get("counters", {})
        session = cls(
            id=data["id"],
            issuer=data["issuer"],
            expires_at=int(data["expires_at"]),
            claims=dict(data.get("claims", {})),
            status=SessionStatus(data.get("status", "issued")),
            terminated=bool(data.get("terminated", False)),
            created_at=float(data.get("created_at", time.time())),
            connected_at=data.get("connected_at"),
            ended_at=data.get("ended_at"),
            last_activity_at=data.get("last_activity_at"),
            dp_session_id=data.get("dp_session_id"),
            dp_session_state=data.get("dp_session_state"),
            user_info=data.get("user_info"),
            key_name=data.get("key_name"),
            persona_id=_persona_id(data.get("persona_id")),
            variables=dict(data.get("variables", {})),
            speech_state=str(data.get("speech_state", "idle")),
            recognizing=bool(data.get("recognizing", False)),
            last_user_transcript=data.get("last_user_transcript"),
            turns=int(counters.get("turns", 0)),
            frames_in=int(counters.get("frames_in", 0)),
            frames_out=int(counters.get("frames_out", 0)),
            bad_frames=int(counters.get("bad_frames", 0)),
        )
        for turn in data.get("transcript", []):
            original_length = turn.get("original_length")
            session._append_turn(
                make_entry(
                    str(turn["role"]),
                    clip(turn["text"], MAX_TURN_CHARS),
                    float(turn["at"]),
                    bool(turn.get("fallback", False)),
                    None if original_length is None else int(original_length),
                    _latency(turn.get("latency_ms")),
                )
            )
        if data.get("events"):
            session.events.extend(data["events"])
        return session


def _latency(value: Any) -> dict[str, float] | None:
    """A stored ``latency_ms``, within the bounds its cost assumes."""
    if not isinstance(value, Mapping):
        return None
    latency: dict[str, float] = {}
    for stage, ms in value.items():
        if len(latency) >= MAX_TIMING_STAGES:
            break
        if isinstance(stage, str) and isinstance(ms, int | float) and not isinstance(ms, bool):
            latency[sys.intern(clip(stage, MAX_STAGE_CHARS))] = float(ms)
    return latency


def _persona_id(value: Any) -> int | str:
    """A stored persona id with its type (JSON keeps int and str apart); else "1"."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return "1"
    return value
