"""The developer console in a real headless Chromium against a real server: token,
control socket, chat, content card, a variable set in the panel used by the DP, and the
ended session read back from the archive.

Needs Debian's ``chromium`` and the ``playwright`` package (which drives that system
browser; no browser is downloaded). Without them the test is skipped, unless
``REQUIRE_BROWSER=1`` (as in CI), which makes their absence a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import random_secret
from tests.orchestrator.control_helpers import KEY_NAME, make_app
from tests.uvicorn_thread import ThreadedServer

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def chromium_path() -> str:
    """The system Chromium (``CHROMIUM`` overrides), or skip/fail as REQUIRE_BROWSER says."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if path is not None and not os.access(path, os.X_OK):
        path = None
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the playwright package is not installed"
    if reason is None and path is None:
        reason = "no chromium binary (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    assert path is not None
    return path


@pytest.fixture
def page() -> Iterator[Any]:
    """A fresh page in headless system Chromium; console errors (CSP violations
    included) are collected in ``page.errors``."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "response",
                lambda r: errors.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
            )
            page.errors = errors
            yield page
            context.close()
        finally:
            browser.close()


def test_the_console_drives_a_whole_conversation_in_chromium(page: Any, tmp_path: Path) -> None:
    """In a real browser the console gets a token, plays the DP over the control socket,
    shows the echo and a content card, a variable set in the session panel changes
    the next reply, and the ended session is listed in the archive and opens with its
    transcript."""
    from playwright.sync_api import expect

    key = random_secret()
    app = make_app(api_keys=(key,), archive_url=f"sqlite:///{tmp_path / 'archive.db'}")
    with ThreadedServer(app) as server:
        try:
            page.goto(server.base_url + "/console")
            page.get_by_role("button", name="Get token").click()
            expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
            expect(page.locator("#flags")).to_contain_text("Token usable")
            expect(page.locator("#s-stream")).to_have_text("open")
            expect(page.locator("#s-status")).to_have_text("issued")

            page.get_by_role("button", name="Connect", exact=True).click()
            chat = page.get_by_role("log", name="Conversation")
            expect(chat).to_contain_text("Hello! I am a digital person")
            expect(page.locator("#s-status")).to_have_text("connected")
            expect(page.locator("#s-dp-session")).to_have_text(re.compile(r"^console-"))

            say = page.get_by_label("Say")
            say.fill("hello there")
            say.press("Enter")
            expect(chat.locator(".msg-dp").last).to_contain_text("You said: hello there")

            say.fill("show me a card")
            page.get_by_role("button", name="Send").click()
            card = chat.get_by_role("figure", name="Content card about")
            expect(card).to_contain_text("Orchestration companion")
            # The markdown card is rendered as text: bold becomes <strong>, nothing else.
            expect(card.locator("strong")).to_have_text("Orchestration companion")

            say.fill("why is the sky blue")
            say.press("Enter")
            expect(chat.locator(".msg-dp").last).to_contain_text("fallback")

            page.get_by_label("Name", exact=True).fill("name")
            page.get_by_label("Value", exact=True).fill("Lin")
            page.get_by_role("button", name="Set variable").click()
            expect(page.locator("#vars")).to_contain_text('"Lin"')

            say.fill("good morning")
            say.press("Enter")
            expect(chat.locator(".msg-dp").last).to_contain_text("Lin, you said: good morning")
            expect(page.locator("#transcript")).to_contain_text("Lin, you said: good morning")
            # Each reply shows its latency (from the turn event) next to it.
            reply = page.locator("#transcript .turn-dp").last
            expect(reply.locator(".latency")).to_have_text(
                re.compile(r"^handler \d+\.\d ms · first frame \d+\.\d ms$")
            )
            expect(page.locator("#s-speech")).to_have_text("idle")
            # The server saw the page as a DP: keyName = the token's iss, and every
            # request it sent was answered (the idle state came after the last response).
            (connection,) = server.app.state.services.live.all()
            assert connection.session.key_name == KEY_NAME
            assert len(connection.pending) == 0

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

            page.get_by_role("button", name="End session").click()
            expect(page.locator("#s-status")).to_have_text("ended (terminated)")
            expect(page.locator("#socket-state")).to_contain_text("closed (1000")

            session_id = page.locator("#session-id").inner_text()
            page.get_by_label("Backend API key").fill(key)
            archived = page.get_by_role("list", name="Archived sessions, newest first")
            entry = archived.locator(f'button[data-session-id="{session_id}"]')
            deadline = time.monotonic() + 10
            while entry.count() == 0 and time.monotonic() < deadline:
                # The writer archives off the conversation path: list again until it has.
                page.get_by_role("button", name="Show archived sessions").click()
                page.wait_for_timeout(100)
            expect(entry).to_contain_text("terminated")
            entry.click()
            expect(page.locator("#archive-facts")).to_contain_text(session_id)
            transcript = page.get_by_role("list", name="Archived transcript")
            expect(transcript).to_contain_text("hello there")
            expect(transcript).to_contain_text("Lin, you said: good morning")
            expect(transcript.locator(".turn-dp .latency").last).to_have_text(
                re.compile(r"^handler \d+\.\d ms · first frame \d+\.\d ms$")
            )
            page.screenshot(path=str(ARTIFACTS / "console-archive.png"), full_page=True)
        finally:
            # Close the event stream first, so the server stops without waiting for it.
            page.goto("about:blank")
    assert page.errors == []
