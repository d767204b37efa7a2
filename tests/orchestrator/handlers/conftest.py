"""One fake OpenAI-compatible server per module of LLM handler tests, emptied per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake(llm: FakeOpenAI) -> FakeOpenAI:
    """The module's server with no script and no record of earlier tests."""
    llm.script.clear()
    llm.received.clear()
    llm.stream_started.clear()
    return llm
