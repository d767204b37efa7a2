"""The handler API's value types and the built-in default handler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from orchestrator.handlers import Card, ConversationRequest, Reply
from orchestrator.handlers.default import ABOUT_CARD, handle
from orchestrator.handlers.loader import HandlerLoadError, load_handler
from orchestrator.sessions.model import Session, VariableWriter


class RecordingConversation:
    """A Conversation that records what the handler asked for."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self.actions: list[tuple[str, Any]] = []

    @property
    def session(self) -> Session:
        return self._session

    async def respond(self, reply: Reply, *, input_text: str = "") -> None:
        self.actions.append(("respond", reply.text))

    async def speak(
        self, text: str, *, can_be_interrupted: bool = True, filter_commands: bool | None = None
    ) -> None:
        self.actions.append(("speak", text))

    async def stop_speaking(self) -> None:
        self.actions.append(("stop", None))

    async def set_variables(self, variables: Mapping[str, Any], *, by_model: bool = False) -> None:
        # Through the session's one bounded merge, as the live connection does.
        writer = VariableWriter.MODEL if by_model else VariableWriter.HANDLER
        self._session.patch_variables(variables, writer)


async def turn(text: str, *, init: bool = False, **variables: Any) -> tuple[Reply | None, Any]:
    session = Session(id="s", issuer="k", expires_at=2**40, variables=dict(variables))
    conversation = RecordingConversation(session)
    request = ConversationRequest(
        text=text, variables={}, is_init=init, optional_args={}, session=session
    )
    return await handle(request, conversation), conversation


def test_cards_append_their_marker_and_variable() -> None:
    """A card adds @showcards(id) to the text (once) and public-<id> to the variables."""
    card = Card("c1", "markdown", {"text": "hi"})
    reply = Reply("Look", variables={"a": 1}, cards=(card,))
    assert reply.output_text() == "Look @showcards(c1)"
    assert Reply("Look @showcards(c1)", cards=(card,)).output_text() == "Look @showcards(c1)"
    assert reply.all_variables() == {
        "a": 1,
        "public-c1": {"component": "markdown", "data": {"text": "hi"}},
    }


def test_load_handler_imports_module_colon_callable() -> None:
    """The setting's module:callable form resolves to the function."""
    assert load_handler("orchestrator.handlers.default:handle") is handle


HANDLERS = "tests.orchestrator.handlers_for_tests"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "answer"),
    [("async_object", "object: hi"), ("async_partial", "partial: hi"), ("partial_of_object", "hi")],
)
async def test_load_handler_accepts_async_callables(name: str, answer: str) -> None:
    """Objects with an ``async def __call__`` and partials of async callables are handlers."""
    handler = load_handler(f"{HANDLERS}:{name}")
    session = Session(id="s", issuer="k", expires_at=2**40)
    conversation = RecordingConversation(session)
    request = ConversationRequest(
        text="hi", variables={}, is_init=False, optional_args={}, session=session
    )
    assert await handler(request, conversation) == Reply(answer)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sync_handle", "is a plain (not async) function"),
        ("sync_lambda", "is a plain (not async) function"),
        ("sync_object", "is not async"),
        ("SyncCallable", "is a class"),
        ("AsyncCallable", "is a class"),
    ],
)
def test_load_handler_refuses_a_synchronous_handler(name: str, reason: str) -> None:
    """A handler that does not return an awaitable is refused at load, naming the fix,
    instead of failing every turn with ``TypeError: ... awaitable is required``."""
    with pytest.raises(HandlerLoadError) as refused:
        load_handler(f"{HANDLERS}:{name}")
    message = str(refused.value)
    assert message.startswith(f"CONVERSATION_HANDLER='{HANDLERS}:{name}' ")
    assert reason in message
    assert "`async def" in message


@pytest.mark.parametrize(
    ("name", "signature"),
    [("one_argument", "(request: "), ("keyword_only", "(*, request: ")],
)
def test_load_handler_refuses_a_handler_that_cannot_take_request_and_conversation(
    name: str, signature: str
) -> None:
    """The handler is called with two positional arguments: other signatures are refused."""
    with pytest.raises(HandlerLoadError) as refused:
        load_handler(f"{HANDLERS}:{name}")
    message = str(refused.value)
    assert message.startswith(f"CONVERSATION_HANDLER='{HANDLERS}:{name}' ")
    assert "two positional arguments (request, conversation)" in message
    assert signature in message


@pytest.mark.anyio
async def test_default_handler_welcomes_on_init_using_the_shared_name() -> None:
    """init gets a welcome; a name set by the UI or backend is used in it."""
    reply, _ = await turn("", init=True, name="Ada")
    assert reply is not None and reply.text.startswith("Hello, Ada!")


@pytest.mark.anyio
async def test_default_handler_echoes_and_remembers_a_name() -> None:
    """Plain lines are echoed; 'my name is X' stores X in the session variables."""
    reply, conversation = await turn("my name is Grace")
    assert reply is not None and reply.text == "Nice to meet you, Grace."
    assert conversation.session.variables["name"] == "Grace"
    echoed, _ = await turn("nice weather", name="Grace")
    assert echoed is not None and echoed.text == "Grace, you said: nice weather"


@pytest.mark.anyio
async def test_default_handler_reads_any_whitespace_as_one_space() -> None:
    """Tabs, newlines and Unicode spaces between, before and after words are one space
    (none at the ends), and a closing '.' or '!' is dropped."""
    reply, _ = await turn("\u3000 nice\t\n weather\u00a0\u2003 today!. \n")
    assert reply is not None and reply.text == "You said: nice weather today"
    named, _ = await turn("my  name\tis \u00a0Grace")
    assert named is not None and named.text == "Nice to meet you, Grace."


@pytest.mark.anyio
async def test_default_handler_shows_a_card_and_falls_back_on_questions() -> None:
    """'show me a card' returns the example card; unknown questions set fallback."""
    card_reply, _ = await turn("show me a card")
    assert card_reply is not None and card_reply.cards == (ABOUT_CARD,)
    question, _ = await turn("why is the sky blue?")
    assert question is not None and question.fallback is True


@pytest.mark.anyio
async def test_default_handler_announce_speaks_unprompted() -> None:
    """'announce X' answers, then makes the DP say X through startSpeaking."""
    reply, conversation = await turn("announce dinner is ready")
    assert reply is None
    assert conversation.actions == [("respond", "Listen to this."), ("speak", "dinner is ready")]
