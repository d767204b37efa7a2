"""When the idle prompt is due (sans I/O): ``IDLE_PROMPT_SECONDS`` of silence.

Silence starts when the last turn finished or the persona stopped speaking,
whichever is later, and lasts while no turn runs and the persona is quiet.
The prompt fires once per silence: only a user turn makes it due again.
"""

from __future__ import annotations

from collections.abc import Callable


class IdleWatch:
    """The state the idle deadline follows; each change returns the new deadline."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.clock = clock
        self.quiet_since = clock()
        self.busy = 0  # turns (and idle prompts) started and not yet finished
        self.speaking = False
        self.prompted = False

    @property
    def deadline(self) -> float | None:
        """When to prompt (the watch's clock), or ``None`` while that cannot happen."""
        if self.prompted or self.busy or self.speaking:
            return None
        return self.quiet_since + self.seconds

    def turn_started(self, *, user: bool) -> float | None:
        self.busy += 1
        if user:
            self.prompted = False
        return self.deadline

    def turn_finished(self) -> float | None:
        self.busy -= 1
        self.quiet_since = self.clock()
        return self.deadline

    def speech(self, *, speaking: bool) -> float | None:
        if speaking != self.speaking:
            self.speaking = speaking
            self.quiet_since = self.clock()
        return self.deadline

    def heard(self) -> float | None:
        """The user started speaking: the silence starts again."""
        self.quiet_since = self.clock()
        return self.deadline

    def due(self) -> float | None:
        """The silence's length if the prompt is due now (then it counts as
        prompted and as a turn started); ``None`` otherwise."""
        deadline = self.deadline
        now = self.clock()
        if deadline is None or now < deadline:
            return None
        self.prompted = True
        self.busy += 1
        return now - self.quiet_since
