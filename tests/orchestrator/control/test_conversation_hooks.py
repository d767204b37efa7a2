"""The sans-I/O side of handler hooks: idle deadlines, interruption, latency, end reasons."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.control import actions as do
from orchestrator.control.conversation import ConversationCore
from orchestrator.control.idle import IdleWatch
from orchestrator.control.options import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_SERVICE_RESTART,
    CLOSE_SLOW_PEER,
    ControlOptions,
    end_reason,
)
from orchestrator.handlers import (
    END_CLOSED_BY_SERVER,
    END_DISCONNECTED,
    END_SHUTDOWN,
    END_TERMINATED,
    Reply,
    TurnTimings,
)
from orchestrator.sessions.model import Session
from tests.orchestrator.control.test_conversation import FrozenClock, speech_state
from tests.orchestrator.control_helpers import KEY_NAME, envelope, say
from tests.orchestrator.handlers_for_tests import HookedEcho, SlowInterruptible


def core_with(handler: Any, clock: FrozenClock, **options: Any) -> ConversationCore:
    session = Session(id="s1", issuer=KEY_NAME, expires_at=2**31)
    return ConversationCore(
        session, ControlOptions(handler=handler, **options), verified=True, clock=clock
    )


def idle_timers(actions: Any) -> list[float | None]:
    return [a.deadline for a in actions if isinstance(a, do.IdleTimer)]


def test_a_handler_without_hooks_gets_no_idle_or_interrupt_actions() -> None:
    """The hot path stays as it was: one do.StartTurn per request, nothing else."""
    clock = FrozenClock()
    core = core_with(HookedEcho().handle, clock, idle_prompt_seconds=5)
    assert core.idle is None
    (start,) = core.receive(say("hi"))
    assert isinstance(start, do.StartTurn)
    assert core.turn_done() == ()


def test_the_idle_deadline_follows_turns_and_speech_and_fires_once_per_silence() -> None:
    clock = FrozenClock()
    core = core_with(HookedEcho(), clock, idle_prompt_seconds=5)
    assert idle_timers(core.connected("query")) == [1005.0]
    actions = core.receive(say("", init=True))
    assert idle_timers(actions) == [None]  # a turn runs: no prompt meanwhile
    clock.now = 1001.0
    assert idle_timers(core.turn_done()) == [1006.0]
    clock.now = 1002.0
    assert idle_timers(core.receive(speech_state("speaking"))) == [None]
    clock.now = 1003.0
    assert idle_timers(core.receive(speech_state("idle"))) == [1008.0]
    clock.now = 1007.0
    assert core.idle_due() == (do.IdleTimer(1008.0),)  # early (a stale timer): re-armed
    clock.now = 1008.0
    (prompt,) = core.idle_due()
    assert prompt == do.StartIdle(5.0)
    assert idle_timers(core.turn_done()) == [None]  # said once: not again this silence
    clock.now = 1020.0
    assert core.idle_due() == (do.IdleTimer(None),)
    core.receive(say("I am here"))
    assert idle_timers(core.turn_done()) == [1025.0]  # a user turn starts a new silence


def test_the_user_starting_to_speak_restarts_the_silence() -> None:
    clock = FrozenClock()
    core = core_with(HookedEcho(), clock, idle_prompt_seconds=5)
    clock.now = 1004.0
    actions = core.receive(envelope("state", {"recognizing": True}))
    assert idle_timers(actions) == [1009.0]
    assert do.INTERRUPT not in actions  # the handler is not interruptible


def test_idle_watch_counts_a_prompt_as_a_turn() -> None:
    clock = FrozenClock()
    watch = IdleWatch(2.0, clock)
    clock.now = 1002.5
    assert watch.due() == 2.5
    assert watch.busy == 1 and watch.prompted
    assert watch.due() is None


def test_an_interruptible_handler_is_interrupted_by_a_user_turn_or_recognizing() -> None:
    core = core_with(SlowInterruptible(), FrozenClock())
    (init,) = core.receive(say("", init=True))  # the init turn interrupts nothing
    assert isinstance(init, do.StartTurn)
    interrupt, start = core.receive(say("again"))
    assert interrupt is do.INTERRUPT and isinstance(start, do.StartTurn)
    actions = core.receive(envelope("state", {"recognizing": True}))
    assert do.INTERRUPT in actions and actions[-1] is do.SAVE
    assert do.INTERRUPT not in core.receive(envelope("state", {"recognizing": True}))


def test_a_speech_change_is_announced_for_speech_idle_waiters() -> None:
    core = core_with(HookedEcho().handle, FrozenClock())
    assert do.SPEECH_CHANGED in core.receive(speech_state("speaking"))
    assert do.SPEECH_CHANGED not in core.receive(envelope("state", {"recognizing": True}))


def test_a_timed_reply_is_published_once_sent_with_its_latency_counted_in_the_budget() -> None:
    clock = FrozenClock()
    core = core_with(HookedEcho(), clock)
    timings = TurnTimings(clock)
    send, sent = core.respond(Reply("hi"), timings=timings)
    assert isinstance(send, do.Send) and isinstance(sent, do.SentReply)
    assert sent.turn.latency_ms == {} and sent.extra == {"fallback": False}
    untimed = core.respond(Reply("hi"))
    assert isinstance(untimed[1], do.Publish)
    assert sent.turn.cost > core.session.transcript[-1].cost
    assert core.session.transcript_bytes == sum(t.cost for t in core.session.transcript)


def test_turn_timings_keep_the_first_mark_in_milliseconds_from_arrival() -> None:
    clock = FrozenClock()
    timings = TurnTimings(clock)
    clock.now += 0.0123
    timings.mark("handler_done")
    clock.now += 0.5
    timings.mark("handler_done")
    timings.mark("first_frame")
    assert timings.as_ms() == {"handler_done": 12.3, "first_frame": 512.3}
    for stage in range(20):
        timings.mark(f"stage-{stage}" * 10)
    assert len(timings.as_ms()) == 8
    assert max(len(stage) for stage in timings.as_ms()) == 32


def test_turn_timings_read_after_a_new_mark_include_it_and_are_the_callers_own() -> None:
    """``as_ms`` is worked out once per set of marks, and each caller gets a copy."""
    clock = FrozenClock()
    timings = TurnTimings(clock)
    clock.now += 0.002
    timings.mark("handler_done")
    first = timings.as_ms()
    first["handler_done"] = -1.0
    assert timings.as_ms() == {"handler_done": 2.0}
    clock.now += 0.001
    timings.mark("first_frame")
    assert timings.as_ms() == {"handler_done": 2.0, "first_frame": 3.0}
    timings.mark("first_frame")  # already there: nothing changes
    assert timings.as_ms() == {"handler_done": 2.0, "first_frame": 3.0}


@pytest.mark.parametrize(
    ("code", "by_server", "reason"),
    [
        (1000, False, END_DISCONNECTED),
        (1006, False, END_DISCONNECTED),
        (None, False, END_DISCONNECTED),
        (CLOSE_GOING_AWAY, False, END_DISCONNECTED),  # a browser leaving the page
        (CLOSE_SERVICE_RESTART, False, END_SHUTDOWN),  # uvicorn's own close at shutdown
        (CLOSE_NORMAL, True, END_TERMINATED),
        (CLOSE_GOING_AWAY, True, END_SHUTDOWN),
        (CLOSE_POLICY, True, END_CLOSED_BY_SERVER),
        (CLOSE_SLOW_PEER, True, END_CLOSED_BY_SERVER),
    ],
)
def test_the_end_reason_follows_who_closed_and_how(
    code: int | None, by_server: bool, reason: str
) -> None:
    assert end_reason(code, by_server=by_server) == reason
