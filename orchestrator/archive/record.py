"""What the archive keeps of an ended session, and what it never keeps.

A record is a snapshot taken when the session ends (on the conversation's
side, before the writer sees it): ids, issuer, the token's custom claims
(``ARCHIVE_CLAIMS`` picks which), the shared variables, times, the end
reason and the transcript. Tokens, keys and ``access_token`` are never part
of a session, and claim or variable names that look like credentials are
dropped here as well, so a caller's ``api_key`` claim cannot reach the disk.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.sessions.model import Session
from orchestrator.sessions.transcript import Turn

# Why a session ended (the same words as the handler lifecycle's end reasons).
END_DISCONNECTED = "disconnected"  # the socket closed and no newer one took over
END_TERMINATED = "terminated"  # ended through the API
END_SHUTDOWN = "shutdown"  # this server stopped while the socket was open
END_REASONS = (END_DISCONNECTED, END_TERMINATED, END_SHUTDOWN)

# Names never archived, in claims or variables at any depth (case-insensitive, anywhere
# in the name; ``auth`` but not ``author``).
CREDENTIAL_NAME = re.compile(
    r"token|secret|passw|api[_-]?key|access[_-]?key|private[_-]?key|credential|jwt|bearer"
    r"|authori[sz]ation|auth(?!or)|cookie",
    re.IGNORECASE,
)


# Column bounds (``schema``): a longer value would make the database refuse the record.
MAX_ID = 128
MAX_ISSUER = 256
MAX_DP_SESSION_ID = 1024
MAX_NAME = 256


@dataclass(frozen=True)
class ClaimPolicy:
    """``ARCHIVE_CLAIMS``: ``all``, ``none`` or the names to keep."""

    keep_all: bool = True
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, items: Iterable[str]) -> ClaimPolicy:
        names = tuple(items)
        if names in ((), ("all",)):
            return cls(keep_all=True)
        if names == ("none",):
            return cls(keep_all=False)
        return cls(keep_all=False, names=frozenset(names))

    def filter(self, claims: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: value
            for name, value in claims.items()
            if (self.keep_all or name in self.names) and not CREDENTIAL_NAME.search(name)
        }


def claim_text(value: Any) -> str:
    """A claim's value as the claim filter compares it: strings as they are, else JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class ArchivedSession:
    """One archived session; ``transcript`` entries are the sessions API's turn dicts
    (``role``, ``text``, ``at``, and ``fallback``, ``original_length``, ``latency_ms``
    when set)."""

    id: str
    issuer: str
    ended_at: float
    end_reason: str
    created_at: float
    connected_at: float | None = None
    dp_session_id: str | None = None
    persona_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    transcript: tuple[dict[str, Any], ...] = ()
    # What the user said that reached the conversation (a welcome, an unprompted
    # line or a reply is not a turn): the sessions API's ``turns``. ``None``: the
    # user entries of ``transcript``, which may have dropped old ones.
    turns: int | None = None

    def __post_init__(self) -> None:
        if self.turns is None:
            user = sum(1 for turn in self.transcript if turn["role"] == "user")
            object.__setattr__(self, "turns", user)

    @classmethod
    def of(cls, session: Session, reason: str, policy: ClaimPolicy) -> ArchivedSession:
        dp_session_id = session.dp_session_id
        return cls(
            id=_text(session.id)[:MAX_ID],
            issuer=_text(session.issuer)[:MAX_ISSUER],
            ended_at=session.ended_at or time.time(),
            end_reason=reason,
            created_at=session.created_at,
            connected_at=session.connected_at,
            dp_session_id=_text(dp_session_id)[:MAX_DP_SESSION_ID] if dp_session_id else None,
            persona_id=_text(str(session.persona_id))[:MAX_NAME],
            claims={
                name: value
                for name, value in _storable(policy.filter(session.claims), private=True).items()
                if len(name) <= MAX_NAME
            },
            variables=_storable(session.variables, private=True),
            transcript=tuple(map(_stored_turn, session.transcript)),
            turns=session.turns,
        )

    def summary(self) -> dict[str, Any]:
        """The list view: everything but the transcript; ``turns`` (user turns) and
        ``lines`` (transcript entries) instead."""
        return {
            "id": self.id,
            "issuer": self.issuer,
            "dp_session_id": self.dp_session_id,
            "persona_id": self.persona_id,
            "created_at": self.created_at,
            "connected_at": self.connected_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "claims": self.claims,
            "variables": self.variables,
            "turns": self.turns,
            "lines": len(self.transcript),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "transcript": list(self.transcript)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchivedSession:
        return cls(
            id=str(data["id"]),
            issuer=str(data["issuer"]),
            ended_at=float(data["ended_at"]),
            end_reason=str(data["end_reason"]),
            created_at=float(data["created_at"]),
            connected_at=data.get("connected_at"),
            dp_session_id=data.get("dp_session_id"),
            persona_id=data.get("persona_id"),
            claims=dict(data.get("claims") or {}),
            variables=dict(data.get("variables") or {}),
            transcript=tuple(_turn(turn) for turn in data.get("transcript") or ()),
            turns=None if data.get("turns") is None else int(data["turns"]),
        )


def _text(text: str) -> str:
    """Without NUL, which PostgreSQL text and JSON cannot hold."""
    return text.replace("\x00", "")


def _storable(value: Any, *, private: bool = False) -> Any:
    """``value`` with NUL removed from every string in it, names included; ``private``:
    without credential-like names at any depth as well."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Mapping):
        return {
            _text(str(k)): _storable(v, private=private)
            for k, v in value.items()
            if not (private and CREDENTIAL_NAME.search(str(k)))
        }
    if isinstance(value, list | tuple):
        return [_storable(item, private=private) for item in value]
    return value


def _stored_turn(turn: Turn) -> dict[str, Any]:
    """``_storable(_turn(turn.to_dict()))``, built straight from the line (a session
    ends with up to 200 of them, on the event loop)."""
    kept: dict[str, Any] = {"role": _text(turn.role), "text": _text(turn.text), "at": turn.at}
    if turn.fallback:
        kept["fallback"] = True
    if turn.original_length is not None:
        kept["original_length"] = turn.original_length
    if turn.latency_ms is not None:
        kept["latency_ms"] = {_text(stage): ms for stage, ms in turn.latency_ms.items()}
    return kept


def _turn(turn: Mapping[str, Any]) -> dict[str, Any]:
    kept = {"role": str(turn["role"]), "text": str(turn["text"]), "at": float(turn["at"])}
    if turn.get("fallback"):
        kept["fallback"] = True
    if turn.get("original_length") is not None:
        kept["original_length"] = int(turn["original_length"])
    if turn.get("latency_ms") is not None:
        kept["latency_ms"] = {str(k): float(v) for k, v in dict(turn["latency_ms"]).items()}
    return kept


def _escape(code: int) -> str:
    named = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x5C: "\\\\"}
    if code in named:
        return named[code]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# What a ``txt`` line escapes: the backslash itself, every C0 and C1 control (ESC,
# vertical tab, form feed, the separators ``str.splitlines`` splits on), the line and
# paragraph separators, and the bidirectional controls that reorder what a reader
# sees. Each becomes its escape in a Python string literal (``\n``, ``\x0b``,
# ``\u2028``), so a user's text can neither forge a line nor drive a terminal, and
# undoing exactly these escapes gives the original back.
_TXT_ESCAPES = {
    code: _escape(code)
    for code in (
        *range(0x00, 0x20),
        0x5C,
        *range(0x7F, 0xA0),
        0x061C,
        0x200E,
        0x200F,
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
}


def txt_escape(text: str) -> str:
    """``text`` with every character ``_TXT_ESCAPES`` names escaped: one line, inert."""
    return text.translate(_TXT_ESCAPES)


def transcript_text(record: ArchivedSession) -> str:
    """``txt``: one line per entry, ``[UTC time] role: text``, the role and text
    escaped (``txt_escape``)."""
    lines = []
    for turn in record.transcript:
        when = datetime.fromtimestamp(turn["at"], UTC).isoformat(timespec="milliseconds")
        lines.append(f"[{when}] {txt_escape(turn['role'])}: {txt_escape(turn['text'])}\n")
    return "".join(lines)


def transcript_jsonl(record: ArchivedSession) -> str:
    """``jsonl``: one JSON object per entry."""
    return "".join(json.dumps(turn, ensure_ascii=False) + "\n" for turn in record.transcript)
