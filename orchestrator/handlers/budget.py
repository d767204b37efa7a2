"""A session's budget of requests to the handler's service, per minute.

The LLM and webhook handlers each keep one ``SessionBudget`` and ``charge`` it
before every request they make for a session: one request and the characters
it sends (the whole prompt for the model, the JSON body for the webhook).
Past ``HANDLER_REQUESTS_PER_MINUTE`` requests or
``HANDLER_INPUT_CHARS_PER_MINUTE`` characters within the last 60 s the
request is not made: ``charge`` raises ``OverBudget`` (the handler makes the DP
say ``HANDLER_BUDGET_REPLY``), counted in
``orchestrator_handler_refusals_total{handler, reason}`` and logged once per
run of refusals. Interrupted turns count: their request was sent.

The window slides (each request leaves it 60 s after it was made): a deque of
(time, characters) per session, never longer than the request limit. The
``limits`` library's moving window keeps one entry per unit of cost (one per
character here), its fixed window lets twice the limit through across a
boundary. A session's entry goes when the session is ended for good through
the sessions API (``ended``, from ``on_end``) and otherwise within two windows
of its last request (a sweep at most once per window), so memory follows the
sessions active in the last two minutes. A socket that merely closes keeps the
entry: its token may open the socket again, and must find the budget spent.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from orchestrator.handlers.api import END_TERMINATED
from orchestrator.logs import get_logger
from orchestrator.metrics import HANDLER_REFUSALS

WINDOW_SECONDS = 60.0
REQUESTS = "requests"  # the refusal reasons (the metric's ``reason`` label)
INPUT = "input"

log = get_logger("orchestrator.handlers.budget")


class OverBudget(Exception):
    """The session spent its budget: the request must not be made."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Window:
    __slots__ = ("chars", "refusing", "sizes", "times")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.sizes: deque[int] = deque()
        self.chars = 0
        self.refusing = False  # refused since the last request made (logged once)

    def expire(self, before: float) -> None:
        times, sizes = self.times, self.sizes
        while times and times[0] <= before:
            times.popleft()
            self.chars -= sizes.popleft()


class SessionBudget:
    """Requests and characters per session per minute (``0``: that limit is off)."""

    def __init__(
        self,
        handler: str,
        *,
        requests_per_minute: int,
        input_chars_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.requests = requests_per_minute
        self.input_chars = input_chars_per_minute
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._next_sweep = clock() + WINDOW_SECONDS

    def __len__(self) -> int:
        """Sessions with state kept."""
        return len(self._windows)

    def charge(self, session_id: str, chars: int) -> None:
        """Count one request of ``chars`` characters; ``OverBudget`` (nothing counted)
        when it would pass a limit."""
        if not (self.requests or self.input_chars):
            return
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        window = self._windows.get(session_id)
        if window is None:
            window = self._windows[session_id] = _Window()
        window.expire(now - WINDOW_SECONDS)
        if self.requests and len(window.times) >= self.requests:
            self._refuse(session_id, window, REQUESTS, chars)
        if self.input_chars and window.chars + chars > self.input_chars:
            self._refuse(session_id, window, INPUT, chars)
        window.refusing = False
        window.times.append(now)
        window.sizes.append(chars)
        window.chars += chars

    def ended(self, session_id: str, reason: str) -> None:
        """A conversation ended (``on_end``): forget the session only when it was
        terminated; after a disconnect its token may reconnect, into the same budget."""
        if reason == END_TERMINATED:
            self._windows.pop(session_id, None)

    def _refuse(self, session_id: str, window: _Window, reason: str, chars: int) -> None:
        HANDLER_REFUSALS.labels(self.handler, reason).inc()
        if not window.refusing:
            window.refusing = True
            log.warning(
                "session over its budget; request not made",
                handler=self.handler,
                reason=reason,
                session_id=session_id,
                requests=len(window.times),
                chars=window.chars,
                request_chars=chars,
            )
        raise OverBudget(reason)

    def _sweep(self, now: float) -> None:
        """Forget the sessions with no request in the last window."""
        before = now - WINDOW_SECONDS
        stale = [
            session_id
            for session_id, window in self._windows.items()
            if not window.times or window.times[-1] <= before
        ]
        for session_id in stale:
            del self._windows[session_id]
        self._next_sweep = now + WINDOW_SECONDS
