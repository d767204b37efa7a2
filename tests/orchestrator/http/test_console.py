"""The developer console over plain HTTP: when it is served, with which headers, and
what its files promise (same-origin assets only, no HTML built from server text)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from orchestrator.config import Settings
from orchestrator.http.console import STATIC_DIR, console_enabled
from tests.conftest import random_secret
from tests.orchestrator.control_helpers import make_app

PATHS = ("/console", "/console/console.js", "/console/console.css", "/console/favicon.svg")
PRODUCTION: dict[str, Any] = {
    "production": True,
    "session_server": "dh.soulmachines.cloud",
    "control_url": "wss://companion.example.test/ws",
}


def csp_directives(response: Any) -> dict[str, str]:
    policy: str = response.headers["content-security-policy"]
    pairs = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {name: value for name, value in pairs}


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/favicon.svg", "image/svg+xml"),
    ],
)
def test_development_serves_the_console_with_security_headers(path: str, media_type: str) -> None:
    """In development each console file is served with a strict CSP, nosniff, no referrer
    and no framing."""
    with TestClient(make_app()) as client:
        response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    csp = csp_directives(response)
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    # The control socket the development token names: this very host, over ws://.
    assert csp["connect-src"] == "'self' ws://testserver"


def test_the_page_says_which_mode_the_server_runs_in() -> None:
    """The page is told the server's mode, so it can flag production-only problems."""
    with TestClient(make_app()) as client:
        page = client.get("/console").text
    assert 'data-mode="development"' in page


def test_production_hides_the_console_by_default() -> None:
    """In production, without CONSOLE_ENABLED, every console path is 404."""
    with TestClient(make_app(**PRODUCTION)) as client:
        for path in PATHS:
            assert client.get(path).status_code == 404, path


def test_production_serves_the_console_when_asked_and_warns() -> None:
    """CONSOLE_ENABLED=true in production serves the page (CSP naming the public control
    socket) and logs a warning."""
    with capture_logs() as logs, TestClient(make_app(console_enabled=True, **PRODUCTION)) as client:
        response = client.get("/console")
    assert response.status_code == 200
    assert 'data-mode="production"' in response.text
    assert csp_directives(response)["connect-src"] == "'self' wss://companion.example.test"
    warnings = [e for e in logs if e["log_level"] == "warning" and "console" in e["event"]]
    assert len(warnings) == 1


def test_development_can_turn_the_console_off() -> None:
    """CONSOLE_ENABLED=false removes the console in development too."""
    with TestClient(make_app(console_enabled=False)) as client:
        assert client.get("/console").status_code == 404


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, True),
        ({"CONSOLE_ENABLED": "false"}, False),
        ({"CONSOLE_ENABLED": ""}, True),
    ],
)
def test_console_enabled_defaults_on_in_development(
    environ: dict[str, str], expected: bool
) -> None:
    """CONSOLE_ENABLED defaults to true in development; an empty value counts as unset."""
    assert console_enabled(Settings.from_env(environ, env_file=None)) is expected


@pytest.mark.parametrize(("raw", "expected"), [(None, False), ("true", True), ("no", False)])
def test_console_enabled_defaults_off_in_production(raw: str | None, expected: bool) -> None:
    """CONSOLE_ENABLED defaults to false in production and may be turned on explicitly."""
    environ = {
        "ORCHESTRATOR_ENV": "production",
        "JWT_PUBLIC_KEY": "k",
        "JWT_PRIVATE_KEY": random_secret(),
        "SESSION_SERVER": "dh.soulmachines.cloud",
        "PUBLIC_URL": "https://companion.example.test",
    }
    if raw is not None:
        environ["CONSOLE_ENABLED"] = raw
    assert console_enabled(Settings.from_env(environ, env_file=None)) is expected


def test_a_bad_console_enabled_value_is_a_configuration_error() -> None:
    """A CONSOLE_ENABLED that is not a boolean stops start-up with the variable named."""
    with pytest.raises(ValueError, match="CONSOLE_ENABLED"):
        Settings.from_env({"CONSOLE_ENABLED": "maybe"}, env_file=None)


def test_the_console_files_load_nothing_from_elsewhere() -> None:
    """The page's scripts and styles are relative, same-origin files (no CDN, no inline code)."""
    page = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r'<script src="([^"]+)"', page) == ["console/console.js"]
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)"', page) == ["console/console.css"]
    assert "<script>" not in page
    assert " style=" not in page
    for path in STATIC_DIR.iterdir():
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://", text), path.name


def test_the_script_never_parses_server_text_as_html() -> None:
    """console.js builds the page from text nodes only: no innerHTML, outerHTML,
    insertAdjacentHTML, document.write or eval."""
    script = Path(STATIC_DIR / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
