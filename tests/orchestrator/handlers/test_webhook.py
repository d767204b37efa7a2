"""The webhook handler over real HTTP: a backend started by the tests checks
each signature with the package's helper and answers scripted replies."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from orchestrator.config import Settings, SettingsError
from orchestrator.handlers.api import Card, Reply
from orchestrator.handlers.budget import SessionBudget
from orchestrator.handlers.webhook import WebhookHandler, build
from orchestrator.metrics import Metrics
from orchestrator.sessions.model import Session
from tests.compression_bomb import INFLATED_BYTES, gzip_bomb
from tests.conftest import random_secret
from tests.orchestrator.handlers import test_handlers as handlers_tests
from tests.orchestrator.handlers.test_webhook_messages import make_request, make_session
from tests.orchestrator.handlers.webhook_receiver import Answer, WebhookReceiver

pytestmark = pytest.mark.anyio

APOLOGY = "Sorry, the backend is away."
TIMEOUT = 1.0  # the handler's own deadline is 90% of it
METRICS = Metrics(lambda: 0)  # shows the process's handler counters


class RecordingConversation(handlers_tests.RecordingConversation):
    """The handler tests' recording ``Conversation``, keeping whole replies
    (cards and all) and each ``set_variables`` call."""

    def __init__(self, session: Session | None = None) -> None:
        super().__init__(session or make_session())

    async def respond(self, reply: Reply, *, input_text: str = "") -> None:
        self.actions.append(("respond", reply))

    async def set_variables(self, variables: Mapping[str, Any], *, by_model: bool = False) -> None:
        self.actions.append(("set_variables", dict(variables)))


@pytest.fixture(scope="module")
def secret() -> str:
    return random_secret()


@pytest.fixture(scope="module")
def receiver(secret: str) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret) as backend:
        yield backend


@pytest.fixture
def backend(receiver: WebhookReceiver) -> WebhookReceiver:
    """The module's backend, its record and scripts reset for this test."""
    receiver.received.clear()
    receiver.most_in_flight.clear()
    receiver.turn_script = lambda received: Answer(
        json={"text": f"Heard {received.payload['text']}"}
    )
    receiver.event_script = lambda _received: Answer(204)
    return receiver


def handler_for(backend: WebhookReceiver, secret: str, **options: Any) -> WebhookHandler:
    values: dict[str, Any] = {
        "url": backend.turn_url,
        "events_url": backend.events_url,
        "secret": secret,
        "timeout_seconds": TIMEOUT,
        "apology": APOLOGY,
        **options,
    }
    return WebhookHandler(**values)


async def turn(handler: WebhookHandler, text: str = "hello") -> tuple[Reply | None, list[Any]]:
    conversation = RecordingConversation()
    try:
        reply = await handler.handle(make_request(text, session=conversation.session), conversation)
    finally:
        await handler.aclose()
    return reply, conversation.actions


def scripted(backend: WebhookReceiver, answer: Answer) -> None:
    backend.turn_script = lambda _received: answer


async def test_a_turn_is_a_signed_post_and_its_reply_is_what_the_dp_says(
    backend: WebhookReceiver, secret: str
) -> None:
    reply, actions = await turn(handler_for(backend, secret), "what is new")
    assert reply == Reply("Heard what is new")
    assert actions == []
    [received] = backend.received
    assert (received.path, received.event, received.verdict) == ("/turn", "turn", "ok")
    assert received.payload["text"] == "what is new"
    assert received.payload["claims"] == {"plan": "gold"}
    assert len(received.payload["turn_id"]) == 32


async def test_cards_variables_and_follow_up_lines_are_carried_out_in_order(
    backend: WebhookReceiver, secret: str
) -> None:
    card = {"id": "offer", "component": "markdown", "data": {"text": "**50%**"}}
    scripted(
        backend,
        Answer(json={"text": "Look.", "cards": [card], "variables": {"plan": "gold"},
                     "speak": ["One more thing.", "And another."]}),
    )  # fmt: skip
    reply, actions = await turn(handler_for(backend, secret))
    assert reply is None  # already sent, before the follow-up lines
    assert actions == [
        ("set_variables", {"plan": "gold"}),
        ("respond", Reply("Look.", cards=(Card("offer", "markdown", {"text": "**50%**"}),))),
        ("speak", "One more thing."),
        ("speak", "And another."),
    ]


async def test_a_reply_without_follow_up_lines_is_returned_with_its_variables_merged_first(
    backend: WebhookReceiver, secret: str
) -> None:
    scripted(backend, Answer(json={"text": "Noted.", "variables": {"topic": "tea"}}))
    reply, actions = await turn(handler_for(backend, secret))
    assert reply == Reply("Noted.")
    assert actions == [("set_variables", {"topic": "tea"})]


async def test_no_content_says_nothing(backend: WebhookReceiver, secret: str) -> None:
    scripted(backend, Answer(204))
    assert await turn(handler_for(backend, secret)) == (None, [])


BAD_ANSWERS = [
    ("bad JSON", Answer(body=b"{not json"), "reply is not JSON"),
    ("wrong type", Answer(json={"text": 5}), "reply field 'text' must be a string"),
    ("server error", Answer(500, body=b"boom"), "HTTP 500"),
    ("client error", Answer(404), "HTTP 404"),
    ("redirect", Answer(307, headers={"Location": "/elsewhere"}), "HTTP 307: redirects are"),
    ("slow", Answer(json={"text": "late"}, delay=2.0), "no answer within 0.9 s"),
    ("huge, declared", Answer(body=b" " * 70_000), "reply of 70000 bytes exceeds 65536"),
    ("huge, chunked", Answer(stream_bytes=1024 * 1024), "reply exceeds 65536 bytes"),
]


@pytest.mark.parametrize(("case", "answer", "reason"), BAD_ANSWERS, ids=[c[0] for c in BAD_ANSWERS])
async def test_a_bad_answer_gives_the_apology_and_logs_the_reason(
    backend: WebhookReceiver, secret: str, case: str, answer: Answer, reason: str
) -> None:
    scripted(backend, answer)
    with capture_logs() as logs:
        reply, actions = await turn(handler_for(backend, secret))
    assert (reply, actions) == (Reply(APOLOGY), [])
    [line] = [entry for entry in logs if entry["event"] == "webhook request failed"]
    assert line["reason"].startswith(reason)
    assert (line["event"], line["log_level"], line["session_id"]) == (
        "webhook request failed", "warning", "s-1"
    )  # fmt: skip
    assert line["url"] == backend.turn_url
    assert secret not in repr(logs)
    assert [r.path for r in backend.received] == ["/turn"]  # a redirect is not followed


GZIP = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


async def test_a_gzip_bomb_is_refused_unread_with_memory_bounded(
    backend: WebhookReceiver, secret: str
) -> None:
    """A compressed reply (here ~260 KB inflating to 256 MiB, chunked) is refused at its
    headers: nothing is inflated, so memory stays far below even one inflated chunk."""
    bomb = gzip_bomb()
    scripted(backend, Answer(chunked=bomb, headers=GZIP))
    handler = handler_for(backend, secret)
    tracemalloc.start()
    try:
        with capture_logs() as logs:
            reply, actions = await turn(handler)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (reply, actions) == (Reply(APOLOGY), [])
    assert peak < 4 * 1024 * 1024 < INFLATED_BYTES
    assert logs[0]["reason"] == "Content-Encoding 'gzip' refused (identity was asked)"
    [received] = backend.received
    assert received.verdict == "ok"


async def test_the_backend_is_asked_for_an_uncompressed_reply(
    backend: WebhookReceiver, secret: str
) -> None:
    seen: list[str] = []
    backend.turn_script = lambda received: (
        seen.append(received.accept_encoding) or Answer(json={"text": "plain"})
    )
    reply, _ = await turn(handler_for(backend, secret))
    assert reply == Reply("plain")
    assert seen == ["identity"]


async def test_an_unreachable_backend_gives_the_apology(secret: str) -> None:
    handler = WebhookHandler(url="http://127.0.0.1:9/turn", secret=secret, apology=APOLOGY)
    with capture_logs() as logs:
        reply, _ = await turn(handler)
    assert reply == Reply(APOLOGY)
    assert logs[0]["reason"].startswith("request failed: ConnectError")


async def test_the_log_shows_the_url_without_its_query_or_credentials(
    backend: WebhookReceiver, secret: str
) -> None:
    scripted(backend, Answer(500))
    url = backend.turn_url.replace("http://", "http://user:pw@") + "?key=hush"
    with capture_logs() as logs:
        await turn(handler_for(backend, secret, url=url))
    assert logs[0]["url"] == backend.turn_url


async def test_session_events_go_to_the_events_url_signed(
    backend: WebhookReceiver, secret: str
) -> None:
    handler = handler_for(backend, secret)
    session = make_session()
    try:
        await handler.on_start(session)
        assert await handler.on_idle(session, 30.0) is None
        await handler.on_end(session, "disconnected")
    finally:
        await handler.aclose()
    assert [(r.path, r.event, r.verdict) for r in backend.received] == [
        ("/events", "session.started", "ok"),
        ("/events", "session.idle", "ok"),
        ("/events", "session.ended", "ok"),
    ]
    assert backend.received[1].payload["idle_seconds"] == 30.0
    assert backend.received[2].payload["reason"] == "disconnected"


async def test_an_idle_reply_is_what_the_dp_says(backend: WebhookReceiver, secret: str) -> None:
    backend.event_script = lambda _received: Answer(
        json={"text": "Still there?", "variables": {"nudged": True, "gone": None}, "speak": ["x"]}
    )
    handler = handler_for(backend, secret)
    with capture_logs() as logs:
        reply = await handler.on_idle(make_session(), 12.5)
    await handler.aclose()
    assert reply == Reply("Still there?", variables={"nudged": True})
    assert "'speak' is ignored" in logs[0]["event"]


async def test_a_failing_event_is_logged_and_never_raised(
    backend: WebhookReceiver, secret: str
) -> None:
    backend.event_script = lambda _received: Answer(503)
    handler = handler_for(backend, secret)
    with capture_logs() as logs:
        await handler.on_start(make_session())
        assert await handler.on_idle(make_session(), 1.0) is None
        await handler.on_end(make_session(), "shutdown")
    await handler.aclose()
    assert [(entry["event"], entry["reason"]) for entry in logs] == [
        ("webhook request failed", "HTTP 503")
    ] * 3


async def test_without_an_events_url_events_go_to_the_turn_url(
    backend: WebhookReceiver, secret: str
) -> None:
    handler = handler_for(backend, secret, events_url=None)
    await handler.on_start(make_session())
    await handler.aclose()
    assert [(r.path, r.event) for r in backend.received] == [("/turn", "session.started")]


async def test_one_pooled_client_serves_every_turn_and_aclose_closes_it(
    backend: WebhookReceiver, secret: str
) -> None:
    handler = handler_for(backend, secret)
    conversation = RecordingConversation()
    for text in ("one", "two"):
        await handler.handle(make_request(text), conversation)
    client = handler.client
    assert handler.client is client and not client.is_closed
    await handler.aclose()
    assert client.is_closed
    with capture_logs() as logs:  # a turn after shutdown began: the apology, no crash
        assert await handler.handle(make_request(), conversation) == Reply(APOLOGY)
    assert logs[0]["reason"].startswith("request not sent")


def test_the_handler_never_shows_its_secret(secret: str) -> None:
    handler = WebhookHandler(url="https://backend.example.com/turn?k=1", secret=secret)
    assert secret not in repr(handler)
    assert repr(handler) == "WebhookHandler(url='https://backend.example.com/turn')"


def test_build_reads_the_settings() -> None:
    secret = random_secret()
    settings = Settings(
        webhook_url="https://backend.example.com/turn",
        webhook_secret=secret,
        handler_timeout_seconds=4.0,
        webhook_history_lines=3,
        webhook_max_reply_bytes=2048,
        handler_apology="Oops.",
    )
    handler = build(settings)
    assert (handler.url, handler.events_url) == ("https://backend.example.com/turn",) * 2
    assert (handler.deadline, handler.history_lines, handler.max_reply_bytes) == (3.6, 3, 2048)
    assert handler.apology == "Oops."
    assert secret in settings.secrets  # so the log redactor removes it anywhere


@pytest.mark.parametrize(
    ("values", "variable"),
    [({"webhook_secret": random_secret()}, "WEBHOOK_URL"),
     ({"webhook_url": "https://backend.example.com/turn"}, "WEBHOOK_SECRET")],
)  # fmt: skip
def test_build_names_the_missing_variable(values: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=f"CONVERSATION_HANDLER=webhook needs {variable}"):
        build(Settings(**values))


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"WEBHOOK_SECRET": "too-short"}, "WEBHOOK_SECRET must be at least 32 bytes"),
        ({"WEBHOOK_URL": "ftp://backend"}, "WEBHOOK_URL must look like https://host/path"),
        ({"WEBHOOK_URL": "https://:80/x"}, "WEBHOOK_URL must look like"),
        ({"WEBHOOK_EVENTS_URL": "backend/events"}, "WEBHOOK_EVENTS_URL must look like"),
        ({"WEBHOOK_HISTORY_LINES": "201"}, "WEBHOOK_HISTORY_LINES must be between 0 and 200"),
        ({"WEBHOOK_MAX_REPLY_BYTES": "10"}, "WEBHOOK_MAX_REPLY_BYTES must be between"),
    ],
)
def test_webhook_settings_are_checked_at_start_up(env: dict[str, str], refusal: str) -> None:
    with pytest.raises(SettingsError, match=f"^{refusal}"):
        Settings.from_env(env, env_file=None)


def test_production_wants_https_except_to_a_loopback_sidecar() -> None:
    from tests.orchestrator.config.test_table import production_env

    def start(url: str) -> Settings:
        return Settings.from_env({**production_env(), "WEBHOOK_URL": url}, env_file=None)

    with pytest.raises(SettingsError, match="WEBHOOK_URL must be https:// in production"):
        start("http://backend.internal/turn")
    for url in ("https://backend.example.com/turn", "http://127.0.0.1:9000/turn",
                "http://localhost/turn", "http://[::1]:9000/turn"):  # fmt: skip
        assert start(url).webhook_url == url


# --- fairness and the session's budget (issue 23) ----------------------------------------


def refusals(reason: str) -> float:
    labels = {"handler": "webhook", "reason": reason}
    value = METRICS.registry.get_sample_value("orchestrator_handler_refusals_total", labels)
    return value or 0.0


async def test_a_session_never_has_two_requests_in_flight(
    backend: WebhookReceiver, secret: str
) -> None:
    """Two turns of one session at once (a takeover's old and new socket, say): the
    second waits for the first, so one session holds at most one pool connection."""
    backend.turn_script = lambda received: Answer(
        json={"text": f"Heard {received.payload['text']}"}, delay=0.2
    )
    handler = handler_for(backend, secret, timeout_seconds=3.0)
    session = make_session(id="one-at-a-time")  # no earlier test's slow request counts
    try:
        turns = [
            handler.handle(make_request(text, session=session), RecordingConversation(session))
            for text in ("one", "two")
        ]
        replies = await asyncio.gather(*turns)
        other = await handler.handle(make_request("three"), RecordingConversation())
    finally:
        await handler.aclose()
    assert replies == [Reply("Heard one"), Reply("Heard two")]
    assert other == Reply("Heard three")
    assert backend.most_in_flight[session.id] == 1
    assert handler._sessions == {}  # each session's gate goes with its last request


async def test_past_the_pools_waiting_room_a_request_is_refused_at_once(
    backend: WebhookReceiver, secret: str
) -> None:
    """One connection, one waiting: a third session's turn gets the apology while the
    first is still in flight, instead of queueing behind a slow backend."""
    backend.turn_script = lambda received: Answer(
        json={"text": f"Heard {received.payload['text']}"}, delay=0.5
    )
    handler = handler_for(backend, secret, timeout_seconds=5.0, max_concurrent=1, max_waiting=1)
    before = refusals("busy")
    sessions = [make_session(id=f"s-{index}") for index in range(3)]
    try:
        first = asyncio.create_task(
            handler.handle(make_request("first", session=sessions[0]), RecordingConversation())
        )
        for _ in range(500):  # until the first holds the only connection
            if backend.of("turn"):
                break
            await asyncio.sleep(0.01)
        second = asyncio.create_task(
            handler.handle(make_request("second", session=sessions[1]), RecordingConversation())
        )
        await asyncio.sleep(0)  # the second is waiting for the connection
        with capture_logs() as logs:
            third = await handler.handle(
                make_request("third", session=sessions[2]), RecordingConversation()
            )
        assert third == Reply(APOLOGY)
        assert not first.done()
        assert await first == Reply("Heard first")
        assert await second == Reply("Heard second")
    finally:
        await handler.aclose()
    assert [r.payload["text"] for r in backend.of("turn")] == ["first", "second"]
    assert refusals("busy") == before + 1
    [line] = [line for line in logs if line["event"] == "webhook request failed"]
    assert line["reason"].startswith("busy")


async def test_a_session_over_its_budget_is_answered_without_a_request(
    backend: WebhookReceiver, secret: str
) -> None:
    budget = SessionBudget("webhook", requests_per_minute=2, input_chars_per_minute=0)
    handler = handler_for(backend, secret, session_budget=budget, budget_reply="Slow down.")
    session = make_session()
    before = refusals("requests")
    try:
        replies = [
            await handler.handle(make_request(text, session=session), RecordingConversation())
            for text in ("a", "b", "c", "d")
        ]
        other = await handler.handle(
            make_request("e", session=make_session(id="s-2")), RecordingConversation()
        )
        await handler.on_end(session, "disconnected")
        assert len(budget) == 2  # its token may reconnect: the spent budget stays
        await handler.on_end(session, "terminated")
        assert len(budget) == 1  # the ended session's state went
    finally:
        await handler.aclose()
    assert replies == [Reply("Heard a"), Reply("Heard b"), Reply("Slow down."), Reply("Slow down.")]
    assert other == Reply("Heard e")  # another session has its own budget
    assert [r.payload["text"] for r in backend.of("turn")] == ["a", "b", "e"]
    # c and d, then both session.ended events: over the budget too, not sent.
    assert refusals("requests") == before + 4
    assert backend.of("session.ended") == []
