"""Entry points for ASGI servers.

``orchestrator.asgi:app`` for ``uvicorn orchestrator.asgi:app``; the CLI uses
the ``configured_app`` factory so that every worker process sets up logging.
"""

from __future__ import annotations

from starlette.applications import Starlette

from orchestrator.app import create_app
from orchestrator.logs import configure_logging
from orchestrator.profile_settings import ProfileSettings
from orchestrator.settings import Settings


def configured_app() -> Starlette:
    settings = Settings.from_env()
    profiles = ProfileSettings.from_env(production=settings.production)
    secrets = (*settings.secrets, *profiles.secrets)
    configure_logging(json=settings.log_json, level=settings.log_level, secrets=secrets)
    return create_app(settings, profiles)


def __getattr__(name: str) -> Starlette:
    # Built on first access only, so importing this module has no side effects.
    if name == "app":
        application = configured_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
