"""``judge:``: an OpenAI-compatible model decides whether an answer meets a sentence.

For answers that are right without being identical ("greets the user by
name"). Configured like the LLM handler but separately (``JUDGE_BASE_URL``,
``JUDGE_API_KEY``, ``JUDGE_MODEL``), through the same ``openai`` client and
bounded HTTP client. The model is asked for JSON ``{"pass": bool, "reason":
text}``; an answer that is not that, or a failed call, fails the turn with
the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import httpx
import openai

from orchestrator.config import Settings, SettingsError
from orchestrator.handlers.llm import NO_KEY
from orchestrator.handlers.outbound import bounded_client

TIMEOUT_SECONDS = 60.0
CONNECT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_VERDICT_TOKENS = 300
MAX_REASON_CHARS = 300

INSTRUCTIONS = (
    "You check a digital person's answer in an automated test. You get what the user "
    "said, what the digital person answered, and a sentence describing the intended "
    "answer. Decide whether the answer meets that description; wording may differ. Reply "
    'with JSON only: {"pass": true or false, "reason": "one short sentence"}.'
)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


class Judge:
    """Asks ``model`` at an OpenAI-compatible API; ``aclose()`` when done."""

    def __init__(self, client: openai.AsyncOpenAI, model: str) -> None:
        self.client = client
        self.model = model

    @classmethod
    def from_settings(cls, settings: Settings) -> Judge:
        """``SettingsError`` without ``JUDGE_MODEL``."""
        if not settings.judge_model:
            raise SettingsError("a scenario uses judge: set JUDGE_MODEL (and JUDGE_BASE_URL)")
        timeout = httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_SECONDS)
        client = openai.AsyncOpenAI(
            base_url=settings.judge_base_url,
            api_key=settings.judge_api_key or NO_KEY,
            timeout=openai.Timeout(TIMEOUT_SECONDS, connect=CONNECT_SECONDS),
            max_retries=0,  # a failed call fails the turn, with its reason
            # openai >= 3 types this as httpx2's client; it takes httpx's (as the LLM handler).
            http_client=cast(Any, bounded_client(max_bytes=MAX_RESPONSE_BYTES, timeout=timeout)),
        )
        return cls(client, settings.judge_model)

    async def verdict(self, *, criterion: str, user: str | None, answer: str) -> Verdict:
        said = "(the conversation's opening)" if user is None else json.dumps(user)
        prompt = (
            f"The user said: {said}\n"
            f"The digital person answered: {json.dumps(answer)}\n"
            f"The intended answer: {criterion}"
        )
        try:
            completion = await self.client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": INSTRUCTIONS},
                    {"role": "user", "content": prompt},
                ],
                temperature=0,
                max_tokens=MAX_VERDICT_TOKENS,
            )
        except openai.APIStatusError as exc:
            return Verdict(False, f"the judge model failed: HTTP {exc.status_code}")
        except (openai.APIError, httpx.HTTPError) as exc:
            return Verdict(False, f"the judge model failed: {type(exc).__name__}: {exc}")
        choices = completion.choices
        content = choices[0].message.content if choices else None
        return parse_verdict(content or "")

    async def aclose(self) -> None:
        await self.client.close()


def parse_verdict(content: str) -> Verdict:
    """The model's JSON verdict (inside a code fence too); anything else fails."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    start, end = text.find("{"), text.rfind("}")
    try:
        verdict = json.loads(text[start : end + 1]) if start != -1 else None
    except ValueError:
        verdict = None
    if not isinstance(verdict, dict) or not isinstance(verdict.get("pass"), bool):
        return Verdict(False, f"the judge answered no verdict: {_short(content)!r}")
    reason = verdict.get("reason")
    return Verdict(verdict["pass"], _short(reason if isinstance(reason, str) else ""))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
