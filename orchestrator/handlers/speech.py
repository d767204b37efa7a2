"""How the LLM handler's streamed answer reaches the DP (``LLM_SPEECH``).

``final``: the whole answer as one ``conversationResponse`` once complete (the
safe default: one message per turn, as every handler sends).

``sentences``: the first sentence as the turn's ``conversationResponse`` as soon
as it is complete; the sentences completed after it follow once the DP has
finished speaking the previous piece, as ``startSpeaking`` (the default of
``LLM_CONTINUATION``) or as further ``conversationResponse``s. Waiting for the
DP matters: a ``conversationResponse`` that arrives while the DP speaks cuts
the speech off (observed by community servers), and whether ``startSpeaking``
queues or cuts is undocumented. Sentences that complete while the DP speaks go
out together, so a fast model costs one wait, not one per sentence. Cards
known when the first sentence goes out ride on it; a card the model asks for
later rides on the last piece, then sent as a ``conversationResponse`` (the
only message with variables). What was sent is in the transcript; a cancelled
turn drops what was not.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import KW_ONLY, dataclass, field
from typing import Protocol

from orchestrator.handlers.api import Card, Conversation, ConversationRequest, Reply
from orchestrator.handlers.sentences import SentenceSplitter

SPEECH_START_GRACE_SECONDS = 1.5  # how long the DP may take to start speaking a piece
SPEECH_POLL_SECONDS = 0.02


class Speech(Protocol):
    spoken: bool  # something of this turn was sent

    def add_card(self, card: Card) -> None: ...

    async def add_text(self, text: str) -> None: ...

    async def finish(self) -> Reply | None:
        """The stream ended: the turn's reply, if the connection is to send one."""

    async def aclose(self) -> None:
        """The turn is over (done, failed or cancelled): stop what still runs."""


class EmptyAnswer(ValueError):
    """The model said nothing at all."""


class FinalSpeech:
    """``LLM_SPEECH=final``: one reply at the end."""

    def __init__(self, request: ConversationRequest) -> None:
        self.request = request
        self.spoken = False
        self.cards: list[Card] = []
        self.parts: list[str] = []
        self.splitter: SentenceSplitter | None = SentenceSplitter()  # until a sentence ends

    def add_card(self, card: Card) -> None:
        self.cards.append(card)

    async def add_text(self, text: str) -> None:
        self.parts.append(text)
        if self.splitter is not None and self.splitter.feed(text):
            self.request.timings.mark("first_sentence")
            self.splitter = None

    async def finish(self) -> Reply | None:
        text = "".join(self.parts).strip()
        if not text and not self.cards:
            raise EmptyAnswer("empty answer")
        if text:
            self.request.timings.mark("first_sentence")
        return Reply(text, cards=tuple(self.cards))

    async def aclose(self) -> None:
        return None


@dataclass
class SentenceSpeech:
    """``LLM_SPEECH=sentences``: a sender task speaks pieces as the DP is ready."""

    request: ConversationRequest
    conversation: Conversation
    _: KW_ONLY
    continuation: str = "startspeaking"
    spoken: bool = field(init=False, default=False)
    splitter: SentenceSplitter = field(init=False, default_factory=SentenceSplitter)
    pending: list[str] = field(init=False, default_factory=list)
    cards: list[Card] = field(init=False, default_factory=list)
    finished: bool = field(init=False, default=False)
    changed: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = field(init=False, default=None)

    def add_card(self, card: Card) -> None:
        self.cards.append(card)

    async def add_text(self, text: str) -> None:
        sentences = self.splitter.feed(text)
        if sentences:
            self._queue(sentences)

    def _queue(self, sentences: list[str]) -> None:
        self.pending.extend(sentences)
        self.changed.set()
        if self.sender is None:
            self.sender = asyncio.create_task(self._send_all())

    async def finish(self) -> Reply | None:
        rest = self.splitter.flush()
        if rest:
            self._queue([rest])
        self.finished = True
        self.changed.set()
        if self.sender is not None:
            await self.sender
        if self.cards:  # cards and no text after the last piece (or no text at all)
            await self._wait_for_speech()
            await self.conversation.respond(Reply("", cards=tuple(self.cards)))
            self.spoken, self.cards = True, []
        if not self.spoken:
            raise EmptyAnswer("empty answer")
        return None

    async def aclose(self) -> None:
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender

    async def _send_all(self) -> None:
        while True:
            while not self.pending and not self.finished:
                self.changed.clear()
                await self.changed.wait()
            if not self.pending:
                return
            if self.spoken:
                await self._wait_for_speech()
            # The first sentence alone, at once; then whatever completed meanwhile.
            cut = len(self.pending) if self.spoken else 1
            batch, self.pending = self.pending[:cut], self.pending[cut:]
            await self._send(" ".join(batch), last=self.finished and not self.pending)

    async def _send(self, text: str, *, last: bool) -> None:
        conversation = self.conversation
        if not self.spoken:
            self.request.timings.mark("first_sentence")
            cards, self.cards = tuple(self.cards), []
            await conversation.respond(Reply(text, cards=cards), input_text=self.request.text)
        elif self.continuation == "conversationresponse" or (last and self.cards):
            cards, self.cards = tuple(self.cards), []
            await conversation.respond(Reply(text, cards=cards))
        else:
            await conversation.speak(text, can_be_interrupted=True)
        self.spoken = True

    async def _wait_for_speech(self) -> None:
        """Until the DP has spoken the last piece: it starts (or a grace period
        passes, for a host that reports no speech state), then it is idle."""
        session = self.conversation.session
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SPEECH_START_GRACE_SECONDS
        # Polled: the Conversation can wait for idle, not for speech to start.
        while session.speech_state == "idle" and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(SPEECH_POLL_SECONDS)
        await self.conversation.speech_idle()
