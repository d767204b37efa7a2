"""``CONVERSATION_HANDLER=webhook``: your backend, in any language, answers each turn.

Each turn is a signed ``POST`` of JSON to ``WEBHOOK_URL``; the JSON reply is
what the DP says (text, cards, variables, a fallback flag, follow-up lines to
speak). The session's events (started, idle, ended) are signed ``POST``s to
``WEBHOOK_EVENTS_URL`` (else the same URL). docs/webhook.md has the shapes and
the verification recipes; ``webhook_messages`` builds and checks the JSON.

A backend that fails (no answer in time, an error status, a redirect, a reply
too large or malformed) makes the DP say the apology; the reason is logged,
never the secret, and the conversation goes on. One pooled client serves
every session (``outbound``): it follows no redirect (a signed body must
reach the URL it was meant for), refuses a compressed reply and reads at most
``WEBHOOK_MAX_REPLY_BYTES`` of one.

Fairness: a session has at most one request in flight (a second waits for
it), at most ``WEBHOOK_MAX_CONCURRENT`` are in flight over all sessions (the
pool's size), and at most ``WEBHOOK_MAX_WAITING`` wait for one of those; past
that a request is refused at once (the apology, counted as ``busy``). Each
turn and each session event is charged to the session's budget first
(``budget``): a turn over it is not sent and the DP says
``HANDLER_BUDGET_REPLY``; an event over it is not sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from orchestrator.config import DEFAULT_BUDGET_REPLY, Settings, SettingsError
from orchestrator.handlers.api import Conversation, ConversationRequest, Reply
from orchestrator.handlers.budget import OverBudget, SessionBudget
from orchestrator.handlers.outbound import ResponseRefused, bounded_client
from orchestrator.handlers.signing import SIGNATURE_HEADER, sign
from orchestrator.handlers.webhook_messages import (
    ENDED,
    IDLE,
    STARTED,
    TURN,
    BadReply,
    event_payload,
    parse_reply,
    turn_payload,
)
from orchestrator.logs import get_logger
from orchestrator.metrics import HANDLER_REFUSALS
from orchestrator.sessions.model import Session, VariablesRefused
from tokens.jsonsafe import dumps

EVENT_HEADER = "Orchestrator-Event"
USER_AGENT = "orchestrator-webhook/1"
# The backend gets this share of HANDLER_TIMEOUT_SECONDS, so the handler says why
# it gave up before the connection's own timeout abandons the turn.
DEADLINE_SHARE = 0.9

log = get_logger("orchestrator.webhook")


class WebhookFailure(Exception):
    """A request got no usable answer; the message is the reason logged."""


class _SessionGate:
    """One session's lock, kept while a request holds or waits for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


def shown_url(url: str) -> str:
    """``scheme://host[:port]/path`` for log lines: no credentials, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class WebhookHandler:
    """The handler object: ``handle`` for turns, the hooks for session events."""

    interruptible = False  # turns reach the backend one at a time, in order

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        events_url: str | None = None,
        timeout_seconds: float = 10.0,
        history_lines: int = 10,
        max_reply_bytes: int = 64 * 1024,
        apology: str = "Sorry, something went wrong on my side.",
        max_concurrent: int = 100,
        max_waiting: int = 100,
        session_budget: SessionBudget | None = None,
        budget_reply: str = DEFAULT_BUDGET_REPLY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.events_url = events_url or url
        self._secret = secret.encode("utf-8")
        self.deadline = timeout_seconds * DEADLINE_SHARE
        self.history_lines = history_lines
        self.max_reply_bytes = max_reply_bytes
        self.apology = apology
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.session_budget = session_budget  # None: no budget (built in code)
        self.budget_reply = budget_reply
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0  # requests waiting for a slot
        self._sessions: dict[str, _SessionGate] = {}

    def __repr__(self) -> str:  # never the secret
        return f"WebhookHandler(url={shown_url(self.url)!r})"

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client, made on first use (in the serving event loop)."""
        if self._client is None:
            self._client = bounded_client(
                max_bytes=self.max_reply_bytes,
                timeout=httpx.Timeout(self.deadline),
                limits=httpx.Limits(max_connections=self.max_concurrent),
                headers={"User-Agent": USER_AGENT},
                transport=self._transport,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    # --- the turn ----------------------------------------------------------------------

    async def handle(
        self, request: ConversationRequest, conversation: Conversation
    ) -> Reply | None:
        """``POST`` the turn, then say the reply (or the apology)."""
        session = request.session
        payload = turn_payload(request, turn_id=uuid.uuid4().hex, history=self.history_lines)
        body = dumps(payload)
        if self.session_budget is not None:
            try:
                self.session_budget.charge(session.id, len(body))
            except OverBudget:  # counted and logged by the budget
                return Reply(self.budget_reply)
        try:
            answer = parse_reply(await self.post(self.url, TURN, body, session_id=session.id))
        except (WebhookFailure, BadReply) as exc:
            self._failed(TURN, self.url, request.session, exc)
            return Reply(self.apology)
        if answer is None:
            return None
        if answer.variables:
            # Refused past the bound: logged and counted where refused; the reply is still said.
            with contextlib.suppress(VariablesRefused):
                await conversation.set_variables(answer.variables)
        if not answer.speak:
            return answer.reply
        if answer.reply is not None:
            await conversation.respond(answer.reply, input_text=request.text)
        for line in answer.speak:
            await conversation.speak(line)
        return None

    # --- session events ----------------------------------------------------------------

    async def on_start(self, session: Session) -> None:
        await self._notify(STARTED, session)

    async def on_end(self, session: Session, reason: str) -> None:
        await self._notify(ENDED, session, reason=reason)  # charged before it is forgotten
        if self.session_budget is not None:
            self.session_budget.ended(session.id, reason)

    async def on_idle(self, session: Session, seconds: float) -> Reply | None:
        """Tell the backend; a reply with text (or cards) is what the DP says."""
        body = await self._notify(IDLE, session, idle_seconds=seconds)
        try:
            answer = parse_reply(body or b"")
        except BadReply as exc:
            self._failed(IDLE, self.events_url, session, exc)
            return None
        if answer is None:
            return None
        if answer.speak:
            log.warning(
                "webhook idle reply: 'speak' is ignored (use 'text')", session_id=session.id
            )
        if answer.reply is None:
            return None
        # No conversation to merge into here: the variables ride on this reply only.
        variables = {name: value for name, value in answer.variables.items() if value is not None}
        reply = answer.reply
        return Reply(reply.text, variables=variables, fallback=reply.fallback, cards=reply.cards)

    async def _notify(self, event: str, session: Session, **details: Any) -> bytes | None:
        """Send a session event; one past the session's budget is not sent (a reconnect
        loop with one token would otherwise send two per connection without limit)."""
        try:
            payload = event_payload(event, session, event_id=uuid.uuid4().hex, **details)
            body = dumps(payload)
            if self.session_budget is not None:
                try:
                    self.session_budget.charge(session.id, len(body))
                except OverBudget:  # counted and logged by the budget
                    return None
            return await self.post(self.events_url, event, body, session_id=session.id)
        except WebhookFailure as exc:
            self._failed(event, self.events_url, session, exc)
            return None

    # --- the request -------------------------------------------------------------------

    async def post(
        self,
        url: str,
        event: str,
        payload: Mapping[str, Any] | str,
        *,
        session_id: str | None = None,
    ) -> bytes:
        """Send ``payload`` (or its JSON text) signed; the reply's body (at most
        ``max_reply_bytes``), one at a time for ``session_id``.

        ``WebhookFailure`` for anything but a 2xx answer within the deadline
        (waiting for the session's request before it and for a pool slot count).
        """
        body = (payload if isinstance(payload, str) else dumps(payload)).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            EVENT_HEADER: event,
        }
        try:
            async with (
                asyncio.timeout(self.deadline),
                self._one_at_a_time(session_id),
                self._slot(),
            ):
                request = self.client.build_request("POST", url, content=body, headers=headers)
                response = await self.client.send(request, stream=True)
                try:
                    return await self._read(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            raise WebhookFailure(f"no answer within {self.deadline:g} s") from None
        except httpx.HTTPError as exc:
            raise WebhookFailure(f"request failed: {type(exc).__name__}: {exc}") from None
        except ResponseRefused as exc:  # compressed, or over max_reply_bytes
            raise WebhookFailure(str(exc)) from None
        except RuntimeError as exc:  # the client was closed (the server is shutting down)
            raise WebhookFailure(f"request not sent: {exc}") from None

    @asynccontextmanager
    async def _one_at_a_time(self, session_id: str | None) -> AsyncIterator[None]:
        """The session's requests one after another (its gate goes with the last)."""
        if session_id is None:
            yield
            return
        gate = self._sessions.get(session_id)
        if gate is None:
            gate = self._sessions[session_id] = _SessionGate()
        gate.users += 1
        try:
            async with gate.lock:
                yield
        finally:
            gate.users -= 1
            if not gate.users:
                del self._sessions[session_id]

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of ``max_concurrent`` slots; ``WebhookFailure`` at once when
        ``max_waiting`` requests already wait for one."""
        if self._slots.locked():
            if self._waiting >= self.max_waiting:
                HANDLER_REFUSALS.labels("webhook", "busy").inc()
                raise WebhookFailure(
                    f"busy: {self.max_concurrent} requests in flight, {self._waiting} waiting"
                )
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def _read(self, response: httpx.Response) -> bytes:
        status = response.status_code
        if 300 <= status < 400:
            raise WebhookFailure(f"HTTP {status}: redirects are not followed")
        if not response.is_success:
            raise WebhookFailure(f"HTTP {status}")
        # The client bounds the body (``ResponseRefused``) and refuses compression.
        return b"".join([chunk async for chunk in response.aiter_raw()])

    def _failed(self, event: str, url: str, session: Session, exc: Exception) -> None:
        log.warning(
            "webhook request failed",
            request=event,
            reason=str(exc),
            url=shown_url(url),
            session_id=session.id,
        )


def build(settings: Settings) -> WebhookHandler:
    """The handler ``CONVERSATION_HANDLER=webhook`` names, from the settings."""
    if not settings.webhook_url:
        raise SettingsError(
            "CONVERSATION_HANDLER=webhook needs WEBHOOK_URL (your backend's https:// address)"
        )
    if not settings.webhook_secret:
        raise SettingsError(
            "CONVERSATION_HANDLER=webhook needs WEBHOOK_SECRET (at least 32 bytes; "
            "`orchestrator keygen` prints one)"
        )
    return WebhookHandler(
        url=settings.webhook_url,
        secret=settings.webhook_secret,
        events_url=settings.webhook_events_url,
        timeout_seconds=settings.handler_timeout_seconds,
        history_lines=settings.webhook_history_lines,
        max_reply_bytes=settings.webhook_max_reply_bytes,
        apology=settings.handler_apology,
        max_concurrent=settings.webhook_max_concurrent,
        max_waiting=settings.webhook_max_waiting,
        session_budget=SessionBudget(
            "webhook",
            requests_per_minute=settings.handler_requests_per_minute,
            input_chars_per_minute=settings.handler_input_chars_per_minute,
        ),
        budget_reply=settings.handler_budget_reply,
    )
