"""CONVERSATION_HANDLER: built-in names, handler objects and their hooks, refused shapes."""

from __future__ import annotations

import pytest

from orchestrator.handlers import Reply
from orchestrator.handlers.default import IDLE_PROMPT, DefaultHandler
from orchestrator.handlers.hooks import LoadedHandler, idle_reply
from orchestrator.handlers.loader import HandlerLoadError, load_handler
from orchestrator.sessions.model import Session
from tests.orchestrator.control_helpers import make_settings
from tests.orchestrator.handlers_for_tests import hooked, interruptible

HANDLERS = "tests.orchestrator.handlers_for_tests"


def test_the_built_in_name_default_builds_the_default_handler_object() -> None:
    handler = load_handler("default", make_settings())
    assert isinstance(handler, DefaultHandler)
    loaded = LoadedHandler.of(handler)
    assert loaded.on_idle is not None and loaded.on_start is None and not loaded.interruptible


@pytest.mark.anyio
async def test_the_default_handler_asks_whether_the_user_is_still_there() -> None:
    session = Session(id="s", issuer="k", expires_at=2**40)
    assert await DefaultHandler().on_idle(session, 30.0) == Reply(IDLE_PROMPT)


def test_a_handler_object_is_loaded_with_its_hooks() -> None:
    handler = load_handler(f"{HANDLERS}:hooked")
    assert handler is hooked
    loaded = LoadedHandler.of(handler)
    assert loaded.turn == hooked.handle
    assert None not in (loaded.on_start, loaded.on_idle, loaded.on_end, loaded.aclose)
    assert LoadedHandler.of(load_handler(f"{HANDLERS}:interruptible")).interruptible
    assert LoadedHandler.of(interruptible.handle).interruptible is False


def test_a_function_handler_has_no_hooks() -> None:
    loaded = LoadedHandler.of(load_handler("orchestrator.handlers.default:handle"))
    assert (loaded.on_start, loaded.on_idle, loaded.on_end, loaded.aclose) == (None,) * 4


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "sync_hook",
            "its on_idle is not async; the server awaits it; declare it "
            "`async def on_idle(self, session, seconds)`",
        ),
        (
            "end_without_reason",
            "its on_end must accept two positional arguments "
            "(session, reason); its signature is (session: ",
        ),
        (
            "sync_handle_method",
            "its handle is not async; the server awaits it; declare it "
            "`async def handle(self, request, conversation)`",
        ),
        ("maybe_interruptible", "interruptible must be True or False"),
    ],
)
def test_a_handler_object_with_an_unusable_hook_is_refused_at_load(name: str, reason: str) -> None:
    with pytest.raises(HandlerLoadError) as refused:
        load_handler(f"{HANDLERS}:{name}")
    assert str(refused.value).startswith(f"CONVERSATION_HANDLER='{HANDLERS}:{name}': {reason}")


def test_an_unknown_name_without_a_colon_lists_the_built_in_names() -> None:
    with pytest.raises(HandlerLoadError) as refused:
        load_handler("echo")
    assert "use default, webhook, llm or 'package.module:callable'" in str(refused.value)


def test_what_on_idle_returns_becomes_the_reply_said() -> None:
    assert idle_reply("Hello?") == Reply("Hello?")
    assert idle_reply(Reply("Hi", variables={"a": 1})) == Reply("Hi", variables={"a": 1})
    assert idle_reply("") is None and idle_reply(None) is None
