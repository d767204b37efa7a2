"""Entry points for ASGI servers.

``orchestrator.asgi:app`` for ``uvicorn orchestrator.asgi:app``; the CLI uses
the ``configured_app`` factory so that every worker process sets up logging.
"""

from __future__ import annotations

from starlette.applications import Starlette

from orchestrator.app import create_app
from orchestrator.config import Settings
from orchestrator.logs import configure_logging
from orchestrator.server.collector import tune_for_serving


def configured_app() -> Starlette:
    """The app for this server process, with logging and the collector set up for it."""
    settings = Settings.from_env()
    configure_logging(json=settings.log_json, level=settings.log_level, secrets=settings.secrets)
    application = create_app(settings)
    tune_for_serving()
    return application


def __getattr__(name: str) -> Starlette:
    # Built on first access only, so importing this module has no side effects.
    if name == "app":
        application = configured_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
