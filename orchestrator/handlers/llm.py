"""``CONVERSATION_HANDLER=llm``: answer turns from an OpenAI-compatible chat API.

One ``AsyncOpenAI`` client per app (OpenAI, Azure OpenAI, vLLM, Ollama,
llama.cpp server, LM Studio through ``LLM_BASE_URL``). Each turn streams a chat
completion: the system prompt (templated with the token's claims and the shared
variables), the transcript as history, the user's words. The answer is spoken
as one ``conversationResponse`` (``LLM_SPEECH=final``) or sentence by sentence
(``sentences``, see ``speech``). The model may call ``show_card`` and
``set_variable``. A new user turn cancels the stream (``interruptible``).
The user's words are cut to ``LLM_MAX_INPUT_CHARS``, and every request is
charged to the session's budget first (``budget``): one over it is not made
and the DP says ``HANDLER_BUDGET_REPLY``.
A failure of the API (timeout, 429, 5xx, a bad stream) makes the DP say the
apology, counted in ``orchestrator_llm_errors_total{reason}`` and logged with
the reason (never the key, nor the server's message, which may quote it).

The server is not trusted with the process's memory: its client (``outbound``)
follows no redirect, refuses a compressed response and bounds each response
and each stream event; an answer is cut at ``LLM_MAX_ANSWER_CHARS`` whatever
``max_tokens`` the server honoured; tool calls are bounded in ``llm_tools``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import KW_ONLY, InitVar, dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import openai

from orchestrator.config import DEFAULT_BUDGET_REPLY, Settings, SettingsError
from orchestrator.handlers.api import Conversation, ConversationRequest, Reply
from orchestrator.handlers.budget import OverBudget, SessionBudget
from orchestrator.handlers.llm_tools import TOOLS, ToolCall, ToolCalls, ToolRefused, run_tool
from orchestrator.handlers.outbound import ResponseRefused, bounded_client
from orchestrator.handlers.prompt import PromptTemplate, history_messages
from orchestrator.handlers.speech import EmptyAnswer, FinalSpeech, SentenceSpeech, Speech
from orchestrator.logs import error_reason, get_logger, redact_url
from orchestrator.metrics import LLM_ERRORS, LLM_INPUT_TRUNCATED
from orchestrator.sessions.model import Session

log = get_logger("orchestrator.handlers.llm")

MAX_TOOL_ROUNDS = 3  # model calls that may end in tool calls; the next one gets no tools
MAX_PROMPT_FILE_BYTES = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 5.0
# One response (a stream, or an error body) and one stream event at most: far above
# what a capped answer with tool calls takes, far below what would strain memory.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_EVENT_BYTES = 256 * 1024
# As many connections as concurrent turns may need (the openai client's own default).
CONNECTION_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
# Sent when LLM_API_KEY is unset: the client insists on a key; local servers ignore it.
NO_KEY = "no-key"
# A budget that lets fewer full requests a minute through is worth a warning.
FULL_REQUESTS_PER_MINUTE = 20


@dataclass
class LlmHandler:
    """The handler object: ``handle`` per turn, ``aclose`` at shutdown."""

    interruptible = True

    client: openai.AsyncOpenAI
    _: KW_ONLY
    model: str
    system_prompt: PromptTemplate
    welcome: PromptTemplate
    apology: str
    budget_seconds: float
    sentences: bool = False
    continuation: str = "startspeaking"
    history_turns: int = 20
    history_max_chars: int = 8000
    tools: bool = True
    max_answer_chars: int = 2000
    max_input_chars: int = 4000
    # None: no budget (a handler built in code); build() always gives one.
    session_budget: SessionBudget | None = None
    budget_reply: str = DEFAULT_BUDGET_REPLY
    max_tokens: InitVar[int | None] = None
    temperature: InitVar[float | None] = None
    # The optional sampling parameters of every request (only those set).
    parameters: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self, max_tokens: int | None, temperature: float | None) -> None:
        if max_tokens:  # 0 or None: the server's default
            self.parameters["max_tokens"] = max_tokens
        if temperature is not None:
            self.parameters["temperature"] = temperature

    async def handle(
        self, request: ConversationRequest, conversation: Conversation
    ) -> Reply | None:
        session = request.session
        if request.is_init:
            return Reply(self.welcome.render(session.claims, session.variables))
        speech: Speech = (
            SentenceSpeech(request, conversation, continuation=self.continuation)
            if self.sentences
            else FinalSpeech(request)
        )
        failure: Exception
        try:
            async with asyncio.timeout(self.budget_seconds):
                await self._answer(request, conversation, speech)
                return await speech.finish()
        except OverBudget:  # counted and logged by the budget; no request was made
            return None if speech.spoken else Reply(self.budget_reply)
        except Exception as exc:  # an API failure is named, counted and answered below
            if failure_reason(exc) is None:
                raise
            failure = exc
        finally:
            await speech.aclose()
        reason = failure_reason(failure)
        LLM_ERRORS.labels(reason).inc()
        log.warning(
            "llm answer failed",
            reason=reason,
            status=getattr(failure, "status_code", None),
            code=getattr(failure, "code", None),
            model=self.model,
            url=redact_url(str(self.client.base_url)),
            # The transport's own reason (refused, DNS); never an answer's message.
            error=error_reason(failure) if reason in ("connection", "timeout") else None,
        )
        return None if speech.spoken else Reply(self.apology)

    async def _answer(
        self, request: ConversationRequest, conversation: Conversation, speech: Speech
    ) -> None:
        session = request.session
        text = request.text
        if len(text) > self.max_input_chars:
            text = text[: self.max_input_chars]
            LLM_INPUT_TRUNCATED.inc()
            log.info(
                "user turn cut for the model",
                chars=len(request.text),
                kept=self.max_input_chars,
                session_id=session.id,
            )
        messages: list[dict[str, Any]] = [
            {
                "role": "system",
                "content": self.system_prompt.render(session.claims, session.variables),
            },
            *history_messages(
                session.transcript,
                request.text,
                max_turns=self.history_turns,
                max_chars=self.history_max_chars,
            ),
            {"role": "user", "content": text},
        ]
        room = self.max_answer_chars  # characters of answer still allowed this turn
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            offer_tools = self.tools and round_ < MAX_TOOL_ROUNDS
            text, calls = await self._stream(
                request, messages, speech, tools=offer_tools, room=room
            )
            room -= len(text)
            if calls and not offer_tools:  # no tools were offered: none is carried out
                log.warning("llm tool calls ignored: no tools offered", calls=len(calls))
                return
            if not calls:  # the answer is complete (or was cut)
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": text or None,
                    "tool_calls": [call.as_message() for call in calls],
                }
            )
            for call in calls:
                try:
                    result = await run_tool(call, conversation)
                except ToolRefused as refused:
                    log.warning("llm tool call refused", tool=call.name[:64], why=str(refused))
                    content = f"refused: {refused}"
                else:
                    content = result.content
                    if result.card is not None:
                        speech.add_card(result.card)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})

    async def _stream(
        self,
        request: ConversationRequest,
        messages: list[dict[str, Any]],
        speech: Speech,
        *,
        tools: bool,
        room: int,
    ) -> tuple[str, list[ToolCall]]:
        """One streamed completion: its text goes to ``speech`` as it comes.

        At ``room`` characters the answer is cut (at a word's end where it can),
        the stream closed and its tool calls dropped.
        """
        if self.session_budget is not None:
            sent = len(json.dumps(messages, ensure_ascii=False))
            self.session_budget.charge(request.session.id, sent)
        extra: dict[str, Any] = {"tools": TOOLS} if tools else {}
        stream = await self.client.chat.completions.create(
            model=self.model,
            messages=cast(Any, messages),  # plain dicts, as the wire format has them
            stream=True,
            **self.parameters,
            **extra,
        )
        calls = ToolCalls()
        parts: list[str] = []
        async with stream:  # closed on the way out, also when the turn is cancelled
            async for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content or delta.tool_calls:
                    request.timings.mark("first_token")
                if delta.tool_calls:
                    calls.add(delta.tool_calls)
                if delta.content:
                    text = delta.content
                    if len(text) > room:
                        text = _cut(text, room)
                        parts.append(text)
                        await speech.add_text(text)
                        log.warning("llm answer cut", max_chars=self.max_answer_chars)
                        return "".join(parts), []
                    room -= len(text)
                    parts.append(text)
                    await speech.add_text(text)
        return "".join(parts), calls.done()

    async def on_end(self, session: Session, reason: str) -> None:
        if self.session_budget is not None:
            self.session_budget.ended(session.id, reason)

    async def aclose(self) -> None:
        await self.client.close()


def _cut(text: str, room: int) -> str:
    """At most ``room`` characters of ``text``, ending at a word's end where it can."""
    if len(text) <= room:
        return text
    head = text[: room + 1]  # with the character after the cut: a space there ends a word
    space = max(head.rfind(" "), head.rfind("\n"))
    return head[:space] if space >= 0 else ""


def failure_reason(exc: BaseException) -> str | None:
    """The metric label of a failed answer; ``None``: not an API failure (a bug)."""
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, ResponseRefused):
        return exc.reason  # compressed, too_large
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if 300 <= status < 400:
            return "redirect"
        if status == 429:
            return "rate_limited"
        if status in (401, 403):
            return "unauthorized"
        return "server_error" if status >= 500 else "bad_request"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, EmptyAnswer):
        return "empty_answer"
    if type(exc).__module__.startswith(("httpx", "httpcore")):
        return "connection"  # a transport error the client let through mid-stream
    if isinstance(exc, openai.OpenAIError | ValueError | KeyError):
        return "bad_response"  # an error event in the stream, bad JSON
    return None


def build(settings: Settings) -> LlmHandler:
    """The handler from the ``LLM_*`` settings; ``SettingsError`` naming what is missing."""
    if not settings.llm_model:
        raise SettingsError("CONVERSATION_HANDLER=llm needs LLM_MODEL (the model's name)")
    prompt_text = _prompt_text("LLM_SYSTEM_PROMPT", settings.llm_system_prompt)
    system_prompt = PromptTemplate.parse("LLM_SYSTEM_PROMPT", prompt_text)
    welcome = PromptTemplate.parse("LLM_WELCOME", settings.llm_welcome)
    # The client gives up a little before the turn does, so a slow API ends as
    # this handler's apology (counted, with its reason) rather than the turn's timeout.
    budget = settings.handler_timeout_seconds * 0.9
    connect = min(budget, CONNECT_TIMEOUT_SECONDS)
    client = openai.AsyncOpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key or NO_KEY,
        timeout=openai.Timeout(budget, connect=connect),
        max_retries=0,  # a retry would spend the turn's budget; the user can say it again
        # openai >= 3 types this as httpx2's client; it takes httpx's (what 1.x and 2.x take).
        http_client=cast(
            Any,
            bounded_client(
                max_bytes=MAX_RESPONSE_BYTES,
                max_event_bytes=MAX_EVENT_BYTES,
                timeout=httpx.Timeout(budget, connect=connect),
                limits=CONNECTION_LIMITS,
            ),
        ),
    )
    session_budget = SessionBudget(
        "llm",
        requests_per_minute=settings.handler_requests_per_minute,
        input_chars_per_minute=settings.handler_input_chars_per_minute,
    )
    _warn_if_tight(settings, len(prompt_text))
    return LlmHandler(
        client,
        model=settings.llm_model,
        system_prompt=system_prompt,
        welcome=welcome,
        apology=settings.handler_apology,
        budget_seconds=budget,
        sentences=settings.llm_speech == "sentences",
        continuation=settings.llm_continuation,
        history_turns=settings.llm_history_turns,
        history_max_chars=settings.llm_history_max_chars,
        tools=settings.llm_tools,
        max_answer_chars=settings.llm_max_answer_chars,
        max_input_chars=settings.llm_max_input_chars,
        session_budget=session_budget,
        budget_reply=settings.handler_budget_reply,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
    )


def _warn_if_tight(settings: Settings, system_prompt_chars: int) -> None:
    """A start-up warning when the input budget fits few requests of full size."""
    limit = settings.handler_input_chars_per_minute
    full = system_prompt_chars + settings.llm_history_max_chars + settings.llm_max_input_chars
    if limit and limit < FULL_REQUESTS_PER_MINUTE * full:
        log.warning(
            "HANDLER_INPUT_CHARS_PER_MINUTE fits few full-size requests a minute",
            limit=limit,
            request_chars=full,
            requests=limit // full,
        )


def _prompt_text(variable: str, value: str) -> str:
    """``value``, or the text of the file ``@path`` names."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PROMPT_FILE_BYTES + 1)
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_PROMPT_FILE_BYTES:
        raise SettingsError(f"{variable}: {path} is over {MAX_PROMPT_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{variable}: {path} is not UTF-8 text") from None
