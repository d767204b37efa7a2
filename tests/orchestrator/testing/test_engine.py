"""The in-process runner goes through the server's own conversation core: hooks,
variables, several messages per turn, the handler timeout and apology, as live."""

from __future__ import annotations

import pytest

from orchestrator.config import Settings
from orchestrator.control.options import ControlOptions
from orchestrator.handlers.default import DefaultHandler
from orchestrator.testing import conversation, play
from tests.orchestrator.handlers_for_tests import HookedEcho, chatty, dawdle, explode
from tests.orchestrator.testing.bots import greeter

pytestmark = pytest.mark.anyio


async def test_claims_and_starting_variables_reach_the_handler() -> None:
    async with conversation(greeter, claims={"user": "Ada"}, variables={"plan": "gold"}) as convo:
        assert convo.welcome is not None
        assert convo.welcome.text == "Hello Ada on gold"
        turn = await convo.say("hi")
    assert turn.text == "heard hi"
    # The session's variables after the turn, and what the reply gave the DP.
    assert turn.variables == {"plan": "gold", "last": "hi", "turn_only": True}
    assert convo.session.variables == {"plan": "gold", "last": "hi"}
    assert turn.latency_ms is not None and turn.latency_ms >= 0


async def test_lifecycle_hooks_run_as_live() -> None:
    handler = HookedEcho()
    async with conversation(handler) as convo:
        turn = await convo.say("one")
        session_id = convo.session.id
    assert turn.text == "echo: one"
    assert handler.calls == [("on_start", session_id), ("on_end", session_id, "disconnected")]


async def test_every_message_of_a_turn_counts() -> None:
    async with conversation(chatty, welcome=False) as convo:
        turn = await convo.say("hey")
    # respond("one"), speak("two"), then the returned reply "three".
    assert turn.text == "one two three"
    assert turn.variables == {"seen": "hey", "extra": 1}


async def test_cards_and_fallback_of_the_built_in_handler() -> None:
    async with conversation(DefaultHandler()) as convo:
        card = await convo.say("show me a card")
        unsure = await convo.say("why is the sky blue?")
    assert card.cards == ["about"] and card.text == "Here is a content card."
    assert "public-about" in card.variables and card.fallback is False
    assert unsure.fallback is True and unsure.cards == []


async def test_the_handler_timeout_and_apology_are_the_settings() -> None:
    settings = Settings(handler_timeout_seconds=0.2, handler_apology="Sorry, slow.")
    async with conversation(dawdle, settings=settings) as convo:
        turn = await convo.say("wait")
    assert turn.text == "Sorry, slow."
    assert turn.latency_ms is not None and turn.latency_ms >= 200


async def test_a_failing_handler_makes_the_dp_apologise() -> None:
    async with conversation(explode, settings=Settings(handler_apology="Oops.")) as convo:
        turn = await convo.say("boom")
    assert turn.text == "Oops."


async def test_a_handler_named_by_its_setting_is_loaded_as_the_server_loads_it() -> None:
    async with conversation("tests.orchestrator.handlers_for_tests:async_object") as convo:
        turn = await convo.say("hi")
    assert turn.text == "object: hi"


async def test_play_runs_a_script_of_user_turns() -> None:
    """What replay reuses: user turns with claims and variables, per-turn results."""
    options = ControlOptions.from_settings(Settings(), DefaultHandler())
    played = await play(options, ["my name is Ada", "what is my name"], variables={"plan": "gold"})
    assert played.error is None and played.welcome is not None
    assert [t.text for t in played.turns] == ["Nice to meet you, Ada.", "Your name is Ada."]
    assert played.turns[1].variables == {"plan": "gold", "name": "Ada"}
