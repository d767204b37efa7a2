"""Time to first speech with the LLM handler, against a fake OpenAI-compatible server.

Starts an OpenAI-compatible server (``tests/fake_openai.py``) that streams a
three-sentence answer of 37 words, one word per chunk every ``--token-ms``
milliseconds (20 ms: 50 tokens/s, a fast local model), and the app with
``CONVERSATION_HANDLER=llm`` in uvicorn (``tests/uvicorn_thread.py``), both in
this process on loopback. A host (``HostSimulator``) says R turns per speech
mode and measures, from sending the ``conversationRequest``, when the first
``conversationResponse`` arrives (time to first speech); the server's own
marks (``latency_ms``: first token, first sentence, first frame) are read from
the transcript. Prints the medians per mode. No target: the figure shows what
``LLM_SPEECH=sentences`` saves over ``final`` for a given token rate.

    python3 bench/llm_first_speech.py               # R=20, 20 ms per token
    python3 bench/llm_first_speech.py --token-ms 50
    python3 bench/llm_first_speech.py --quick       # R=3, 2 ms per token, for smoke tests
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from orchestrator.control import protocol  # noqa: E402
from orchestrator.logs import configure_logging  # noqa: E402
from orchestrator.simulate import HostSimulator  # noqa: E402
from tests.fake_openai import Answer, FakeOpenAI  # noqa: E402
from tests.orchestrator.control_helpers import make_app  # noqa: E402
from tests.uvicorn_thread import ThreadedServer  # noqa: E402

ANSWER = (
    "Paris is the capital of France and its largest city. "
    "It sits on the Seine in the north of the country, with about two million people. "
    "Would you like to hear about its museums or its food?"
)
SETTLE_SECONDS = 0.3
STAGES = ("first_token", "first_sentence", "first_frame", "handler_done")


async def measure(mode: str, rounds: int, token_seconds: float) -> dict[str, float]:
    """Medians (ms) of time to first speech at the host and of the server's marks."""
    with FakeOpenAI() as llm:
        app = make_app(
            conversation_handler="llm",
            llm_base_url=llm.base_url,
            llm_model="bench",
            llm_speech=mode,
            log_level="warning",
        )
        with ThreadedServer(app) as server:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                issued = (await http.get("/api/jwt")).json()
            first_speech: list[float] = []
            async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
                await host.start(settle=0.05)
                for index in range(rounds):
                    llm.script.append(Answer(ANSWER, delay=token_seconds))
                    first_speech.append(await first_response_ms(host, f"question {index}"))
            session = await app.state.store.get(issued["session_id"])
    replies = [t.latency_ms for t in session.transcript if t.role == "dp" and t.latency_ms]
    figures = {"first_speech": statistics.median(first_speech)}
    for stage in STAGES:
        values = [latency[stage] for latency in replies if stage in latency]
        if values:
            figures[stage] = statistics.median(values)
    return figures


async def first_response_ms(host: HostSimulator, text: str) -> float:
    """Say ``text``; ms until the first ``conversationResponse``. Plays the DP (speech
    states, responses) until the turn has been quiet for ``SETTLE_SECONDS``."""
    started = time.perf_counter()
    await host.send(host._request(text))
    first: float | None = None
    while True:
        try:
            frame = await asyncio.wait_for(
                host.connection.recv(), SETTLE_SECONDS if first is not None else 30
            )
        except TimeoutError:
            if first is None:
                raise
            return first
        envelope = protocol.parse_frame(frame)
        await host._act_like_the_dp(envelope)
        if envelope.name == "conversationResponse" and first is None:
            first = (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="R=3, 2 ms per token")
    args = parser.parse_args()
    rounds, token_ms = (3, 2.0) if args.quick else (args.rounds, args.token_ms)
    configure_logging(json=False, level="error", stream=sys.stderr)
    words = len(ANSWER.split())
    print(f"answer: {words} words in 3 sentences, one word per chunk every {token_ms} ms")
    print(f"turns per mode: {rounds}")
    print("| LLM_SPEECH | first speech at the host | first token | first sentence | first frame |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode in ("final", "sentences"):
        figures = asyncio.run(measure(mode, rounds, token_ms / 1000))
        cells = [f"{figures.get(stage, float('nan')):.1f}" for stage in
                 ("first_speech", "first_token", "first_sentence", "first_frame")]  # fmt: skip
        print(f"| `{mode}` | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
