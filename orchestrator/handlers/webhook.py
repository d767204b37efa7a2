"""``CONVERSATION_HANDLER=webhook``: your backend, in any language, answers each turn.

Each turn is a signed ``POST`` of JSON to ``WEBHOOK_URL``; the JSON reply is
what the DP says (text, cards, variables, a fallback flag, follow-up lines to
speak). The session's events (started, idle, ended) are signed ``POST``s to
``WEBHOOK_EVENTS_URL`` (else the same URL). docs/webhook.md has the shapes and
the verification recipes; ``webhook_messages`` builds and checks the JSON.

A backend that fails (no answer in time, an error status, a redirect, a reply
too large or malformed) makes the DP say the apology; the reason is logged,
never the secret, and the conversation goes on. One pooled client serves
every session; it follows no redirect (a signed body must reach the URL it
was meant for) and reads at most ``WEBHOOK_MAX_REPLY_BYTES`` of a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from orchestrator.config import Settings, SettingsError
from orchestrator.handlers.api import Conversation, ConversationRequest, Reply
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.events_url = events_url or url
        self._secret = secret.encode("utf-8")
        self.deadline = timeout_seconds * DEADLINE_SHARE
        self.history_lines = history_lines
        self.max_reply_bytes = max_reply_bytes
        self.apology = apology
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:  # never the secret
        return f"WebhookHandler(url={shown_url(self.url)!r})"

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client, made on first use (in the serving event loop)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.deadline),
                follow_redirects=False,
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
        payload = turn_payload(request, turn_id=uuid.uuid4().hex, history=self.history_lines)
        try:
            answer = parse_reply(await self.post(self.url, TURN, payload))
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
        await self._notify(ENDED, session, reason=reason)

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
        try:
            payload = event_payload(event, session, event_id=uuid.uuid4().hex, **details)
            return await self.post(self.events_url, event, payload)
        except WebhookFailure as exc:
            self._failed(event, self.events_url, session, exc)
            return None

    # --- the request -------------------------------------------------------------------

    async def post(self, url: str, event: str, payload: Mapping[str, Any]) -> bytes:
        """Send ``payload`` signed; the reply's body (at most ``max_reply_bytes``).

        ``WebhookFailure`` for anything but a 2xx answer within the deadline.
        """
        body = dumps(payload).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            EVENT_HEADER: event,
        }
        try:
            async with asyncio.timeout(self.deadline):
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
        except RuntimeError as exc:  # the client was closed (the server is shutting down)
            raise WebhookFailure(f"request not sent: {exc}") from None

    async def _read(self, response: httpx.Response) -> bytes:
        status = response.status_code
        if 300 <= status < 400:
            raise WebhookFailure(f"HTTP {status}: redirects are not followed")
        if not response.is_success:
            raise WebhookFailure(f"HTTP {status}")
        limit = self.max_reply_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise WebhookFailure(f"reply of {declared} bytes exceeds {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decoded: a compressed bomb counts in full
            size += len(chunk)
            if size > limit:
                raise WebhookFailure(f"reply exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

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
    )
