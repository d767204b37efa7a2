"""The developer console: a plain HTML/CSS/JS page at ``/console`` for trying
the whole flow in a browser (token, control socket, sessions API and SSE).

The page plays the digital person's side of the control socket as the Web
SDK does in via-browser mode. It is on by default in development and off in
production (``CONSOLE_ENABLED``). Its files live in ``console_static/`` in the
package and are read once, when the routes are built; every response carries
a strict Content-Security-Policy (same origin only, plus the control socket's
origin) and the usual anti-framing and anti-sniffing headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.config import CONTROL_PATH, Settings
from orchestrator.logs import get_logger
from tokens.web.soul_machines import control_url_from_request

log = get_logger("orchestrator.console")

STATIC_DIR = Path(__file__).resolve().parent / "console_static"
CONSOLE_PATH = "/console"
# (URL under /console/, file in console_static/, media type)
ASSETS = (
    ("console.js", "console.js", "text/javascript; charset=utf-8"),
    ("console.css", "console.css", "text/css; charset=utf-8"),
    ("favicon.svg", "favicon.svg", "image/svg+xml"),
)
MODE_PLACEHOLDER = "__ORCHESTRATOR_MODE__"


def console_enabled(settings: Settings) -> bool:
    """``CONSOLE_ENABLED`` when set, else on in development and off in production."""
    if settings.console_enabled is None:
        return not settings.production
    return settings.console_enabled


def security_headers(connect_src: str) -> dict[str, str]:
    """The headers every console response carries."""
    policy = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {connect_src}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str


class Console:
    """The console's files, read once, and the routes that serve them with their headers."""

    def __init__(self, settings: Settings, static_dir: Path = STATIC_DIR) -> None:
        self.settings = settings
        mode = "production" if settings.production else "development"
        page = (static_dir / "index.html").read_text("utf-8").replace(MODE_PLACEHOLDER, mode)
        self.page = _Asset(page.encode(), "text/html; charset=utf-8")
        self.assets = {
            name: _Asset((static_dir / filename).read_bytes(), media_type)
            for name, filename, media_type in ASSETS
        }

    def connect_src(self, request: Request) -> str:
        """``'self'`` plus the origin of the control socket the tokens name."""
        control_url = self.settings.control_url or control_url_from_request(request, CONTROL_PATH)
        parts = urlsplit(control_url)
        if parts.scheme in ("ws", "wss") and parts.netloc:
            return f"'self' {parts.scheme}://{parts.netloc}"
        return "'self'"

    def _endpoint(self, asset: _Asset) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            headers = security_headers(self.connect_src(request))
            return Response(asset.body, media_type=asset.media_type, headers=headers)

        return endpoint

    def routes(self) -> list[BaseRoute]:
        """``GET /console`` and its asset files (one explicit route each)."""
        return [
            Route(CONSOLE_PATH, self._endpoint(self.page), methods=["GET"]),
            *(
                Route(f"{CONSOLE_PATH}/{name}", self._endpoint(asset), methods=["GET"])
                for name, asset in self.assets.items()
            ),
        ]


def console_routes(settings: Settings) -> list[BaseRoute]:
    """The console's routes when it is enabled, else none (so ``/console`` is 404)."""
    if not console_enabled(settings):
        return []
    if settings.production:
        log.warning(
            "the developer console is enabled in production (CONSOLE_ENABLED=true): "
            "anyone who can reach it gets a ready-made tool to play a digital person's side "
            "of the control socket against this server"
        )
    return Console(settings).routes()
