"""Commands on a live session (speak, send, variables, end), and where they run.

A command must run on the instance that holds the session's control socket.
``LocalRouter`` runs it in this process (one instance); the Redis router sends
it to the owning instance's inbox. Both return a small JSON-able result or
raise ``SessionNotLive``; then ``execute_stored`` changes the stored record of
what outlives the socket (variables, the end), which the next connection reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from orchestrator.control.connection import ControlConnection
from orchestrator.control.live import LiveConnections
from orchestrator.handlers import Reply
from orchestrator.sessions.events import EventHub
from orchestrator.sessions.model import Session, VariablesRefused, VariableWriter
from orchestrator.sessions.store import SessionStore


class SessionNotLive(Exception):
    """The command needs a live control socket and there is none."""


class CommandFailed(Exception):
    """The owning instance did not answer in time."""


async def execute(
    connection: ControlConnection, op: str, args: Mapping[str, Any]
) -> dict[str, Any]:
    """Run one command on a connection of this process, then save what it changed.

    ``terminate`` and ``replace`` end the connection, whose endpoint saves the
    final state; saving after them could overwrite that "ended" record.
    """
    result = await _execute(connection, op, args)
    if op in ("speak", "stop_speaking", "send"):
        await connection.persist()
    return result


async def _execute(
    connection: ControlConnection, op: str, args: Mapping[str, Any]
) -> dict[str, Any]:
    if op == "speak":
        await connection.speak(
            str(args["text"]), can_be_interrupted=bool(args.get("can_be_interrupted", True))
        )
        return {"sent": "startSpeaking"}
    if op == "stop_speaking":
        await connection.stop_speaking()
        return {"sent": "stopSpeaking"}
    if op == "send":
        reply = Reply(
            text=str(args["text"]),
            variables=dict(args.get("variables") or {}),
            fallback=bool(args.get("fallback", False)),
        )
        await connection.respond(reply)
        return {"sent": "conversationResponse"}
    if op == "set_variables":
        try:
            await connection.patch_variables(args["patch"], _writer(args))
        except VariablesRefused as exc:
            # A result, not an exception: it must cross instances (the caller answers 413).
            return {"refused": str(exc)}
        return {"variables": dict(connection.session.variables)}
    if op == "terminate":
        await connection.terminate()
        return {"ended": True}
    raise ValueError(f"unknown command {op!r}")


async def execute_stored(
    store: SessionStore, events: EventHub, session: Session, op: str, args: Mapping[str, Any]
) -> dict[str, Any]:
    """Run ``terminate`` or ``set_variables`` on a stored record no socket holds."""
    if op == "terminate":
        session.mark_ended(terminated=True)
        await store.save(session)
        return {"ended": True}
    if op == "set_variables":
        try:
            session.patch_variables(args["patch"], _writer(args))
        except VariablesRefused as exc:
            return {"refused": str(exc)}
        await store.save(session)
        await events.publish_event(session.id, "variables", {"variables": session.variables})
        return {"variables": session.variables}
    raise ValueError(f"{op!r} needs a live control socket")


def _writer(args: Mapping[str, Any]) -> VariableWriter:
    """Who sent a ``set_variables`` command: the backend (the API key) or a UI token."""
    return VariableWriter.UI if args.get("writer") == VariableWriter.UI else VariableWriter.BACKEND


class CommandRouter(Protocol):
    async def run(self, session_id: str, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``op`` where the session's socket lives, or raise ``SessionNotLive``."""

    async def is_live(self, session_id: str) -> bool:
        """Whether some instance holds a live socket for the session."""


class LocalRouter:
    """All sockets are in this process (the embedded default)."""

    def __init__(self, live: LiveConnections[ControlConnection]) -> None:
        self.live = live

    async def run(self, session_id: str, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        connection = self.live.get(session_id)
        if connection is None:
            raise SessionNotLive(session_id)
        return await execute(connection, op, args)

    async def is_live(self, session_id: str) -> bool:
        return self.live.get(session_id) is not None
