"""Prometheus metrics at ``/metrics``.

One registry per app (so tests can build many apps). Each worker process
reports its own figures; scrape every worker, or run one worker per instance.
``/metrics`` needs the backend API key when one is configured, and is refused
in production without one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.loop_metrics import LoopMetrics
from tokens.web.auth import ApiKeys
from tokens.web.http import ApiError

# Stages are named by handlers: past this many names, the rest count as "other".
MAX_TURN_STAGES = 32
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Counted by the LLM handler, which is built before any app's registry exists:
# one per process, shown by every app's ``/metrics``.
LLM_ERRORS = Counter(
    "orchestrator_llm_errors",
    "LLM answers that failed (the DP said the apology), by reason",
    ["reason"],
    registry=None,
)
# Requests the built-in handlers did not make: a session over its budget
# (``requests``, ``input``: orchestrator.handlers.budget) or a webhook pool with
# too many waiting (``busy``). Per process, like LLM_ERRORS.
HANDLER_REFUSALS = Counter(
    "orchestrator_handler_refusals",
    "Requests a built-in handler refused to make, by handler and reason",
    ["handler", "reason"],
    registry=None,
)
LLM_INPUT_TRUNCATED = Counter(
    "orchestrator_llm_input_truncated",
    "User turns cut to LLM_MAX_INPUT_CHARS before they went to the model",
    registry=None,
)

# Counted by the WebSocket protocol below the app (orchestrator/server/websocket.py),
# which uvicorn builds per connection with no reference to an app: one per process.
STACK_HANDSHAKES_REFUSED = Counter(
    "orchestrator_websocket_handshakes_refused",
    "WebSocket handshakes the server stack refused before the app saw them "
    "(request line or headers too large, unparsable), by reason",
    ["reason"],
    registry=None,
)

# Counted likewise by the HTTP protocol below the app (orchestrator/server/heads.py).
HTTP_REQUESTS_REFUSED = Counter(
    "orchestrator_http_requests_refused",
    "Request heads the server stack refused before the app saw them (request line or "
    "headers too large; WebSocket handshakes included), by reason",
    ["reason"],
    registry=None,
)


class Metrics:
    def __init__(self, live_sessions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        shared = (LLM_ERRORS, HANDLER_REFUSALS, LLM_INPUT_TRUNCATED)
        for collector in (*shared, STACK_HANDSHAKES_REFUSED, HTTP_REQUESTS_REFUSED):
            registry.register(collector)
        self.sessions_live = Gauge(
            "orchestrator_sessions_live", "Control sockets open in this process", registry=registry
        )
        self.sessions_live.set_function(lambda: float(live_sessions()))
        self.handshakes_waiting = Gauge(
            "orchestrator_control_handshakes_waiting",
            "Control handshakes waiting for their pass (CONTROL_HANDSHAKES_PER_PASS)",
            registry=registry,
        )
        self.sse_streams_open = Gauge(
            "orchestrator_sse_streams_open",
            "Event streams (GET /sessions/{id}/events) open in this process",
            registry=registry,
        )
        counter = functools.partial(Counter, registry=registry)
        # The conversation's hot path: plain numbers, read at scrape time.
        hot = LoopMetrics()
        registry.register(hot)
        self.turns = hot.counter(
            "orchestrator_turns", "Conversation turns handled (conversationRequest)"
        )
        self.messages_in = hot.counter(
            "orchestrator_control_messages_in", "Frames received on control sockets"
        )
        self.messages_out = hot.counter(
            "orchestrator_control_messages_out", "Frames sent on control sockets"
        )
        self.bad_frames = counter(
            "orchestrator_control_bad_frames", "Frames ignored as malformed, by reason", ["reason"]
        )
        self.tokens_issued = counter(
            "orchestrator_tokens_issued", "Tokens issued, by profile", ["profile"]
        )
        self.tokens_refused = counter(
            "orchestrator_tokens_refused",
            "Presented tokens refused, by where and why",
            ["where", "reason"],
        )
        self.sse_streams_refused = counter(
            "orchestrator_sse_streams_refused",
            "Event streams refused at a cap, by which (session, address, global)",
            ["reason"],
        )
        self.handler_latency = hot.histogram(
            "orchestrator_handler_latency_seconds",
            "Time the conversation handler took per turn",
            LATENCY_BUCKETS,
        )
        self.turn_latency = hot.histogram_family(
            "orchestrator_turn_latency_seconds",
            "Time from a user turn's frame to each stage of its answer (handler_done, "
            "first_frame; the LLM handler adds first_token, first_sentence)",
            LATENCY_BUCKETS,
            label="stage",
            max_values=MAX_TURN_STAGES,
        )
        self.turns_interrupted = counter(
            "orchestrator_turns_interrupted",
            "Turns of an interruptible handler cancelled by the user speaking again",
        )
        self.variables_refused = counter(
            "orchestrator_variables_refused",
            "Changes to a session's variables refused past their writer's bound, by writer",
            ["writer"],
        )
        self.hook_failures = counter(
            "orchestrator_handler_hook_failures",
            "Handler hooks (on_start, on_idle, on_end, aclose) that raised or timed out",
            ["hook"],
        )

    def observe_turn(self, stages_ms: Mapping[str, float]) -> None:
        """One turn's stages (milliseconds from its frame) into ``turn_latency``."""
        for stage, ms in stages_ms.items():
            self.turn_latency.labels(stage).observe(ms / 1000)

    def route(self, api_keys: ApiKeys, *, production: bool) -> Route:
        async def metrics(request: Request) -> Response:
            if api_keys:
                if not api_keys.in_header(request):
                    raise ApiError(
                        401, "no_credentials", "send the API key as Authorization: Bearer"
                    )
            elif production:
                raise ApiError(
                    403, "forbidden", "set ORCHESTRATOR_API_KEY to read metrics in production"
                )
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return Route("/metrics", metrics, methods=["GET"])
