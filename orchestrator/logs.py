"""Logging: structlog for our events, the same pipeline for uvicorn's records.

JSON lines in production, readable console output in development. Every
record, ours or uvicorn's (access log, WebSocket handshakes), passes the
redactor, which removes token-bearing query parameters, anything shaped like a
JWT and the configured secrets, so a token or key never reaches a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_SENSITIVE_PARAM = re.compile(
    r"(?i)\b(access_token|id_token|refresh_token|token|jwt|api_?key|key|secret|password)"
    r"=([^&\s\"'\]]+)"
)
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")
REDACTED = "[redacted]"
# Set by our own processors from fixed values; they never carry input.
_OWN_FIELDS = frozenset({"timestamp", "level", "logger"})


class Redactor:
    """Scrubs tokens and secrets from any string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if len(s) >= 8)

    def __call__(self, text: str) -> str:
        # Every pattern needs "=", "eyJ" or "bearer": most log strings have none,
        # and skip the three regex passes.
        if "=" in text:
            text = _SENSITIVE_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
        if "eyJ" in text:
            text = _JWT_SHAPE.sub(REDACTED, text)
        if "earer" in text.lower():
            text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        return value

    def processor(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        for name, value in list(event.items()):
            if name.startswith("_") or name in _OWN_FIELDS:
                continue
            event[name] = self.scrub(value)
        return event


def configure_logging(
    *, json: bool, level: str = "info", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib (uvicorn) logging through one redacting pipeline.

    Output goes to ``stream`` (default: ``sys.stderr`` at call time).
    """
    stream = sys.stderr if stream is None else stream
    redactor = Redactor(secrets)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text first, so the redactor sees them too.
            structlog.processors.format_exc_info,
            redactor.processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def level_check(name: str) -> Callable[[int], bool]:
    """``isEnabledFor`` of the stdlib logger behind ``get_logger(name)``.

    For hot paths: a filtered-out structlog call still builds its event and
    enters the processor chain before ``filter_by_level`` drops it, and even
    asking the structlog proxy costs ~1.5 µs a call; this is the stdlib
    logger's cached answer (~0.1 µs), which is what ``filter_by_level`` asks
    under ``configure_logging``, and it follows later level changes. Without
    ``configure_logging`` (the app built by hand, structlog set up otherwise)
    the stdlib default applies: WARNING, so debug-only lines are skipped.
    """
    return logging.getLogger(name).isEnabledFor
