"""Logging: structlog for our events, the same pipeline for uvicorn's records.

JSON lines in production, readable console output in development. Every
record, ours or uvicorn's (access log, WebSocket handshakes), passes the
redactor, which removes token-bearing query parameters, anything shaped like a
JWT and the configured secrets, so a token or key never reaches a log line.
uvicorn's lines never carry a query string at all (it is logged raw, still
percent-encoded, and no pattern can chase every encoding of a token), and every
string is cut to a bounded length before the redactor sees it, so one log line
costs linear, bounded time whatever a client sends.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Every pattern runs in linear time: no nested or overlapping repetition, and
# the JWT pattern only starts at the beginning of a run of token characters (a
# pattern that could start at every "eyJ" inside one run rescans the rest of the
# run each time: quadratic, seconds on 100 KB).
_SENSITIVE_PARAM = re.compile(
    r"(?i)\b(access_token|id_token|refresh_token|token|jwt|api_?key|key|secret|password)"
    r"=([^&\s\"'\]]++)"
)
_JWT_RUN = re.compile(r"(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]*eyJ[A-Za-z0-9_.-]*")
_BEARER = re.compile(r"(?i)\b(bearer)\s++[A-Za-z0-9._~+/=-]{8,}+")
# Characters of a bearer credential, a superset of a JWT's: a string is never cut
# inside a run of them, so a cut-off token cannot slip past the patterns above.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9._~+/=-]*")
REDACTED = "[redacted]"
# Longest string kept per field (and per argument of a stdlib record); the
# message, traceback and stack get more. Longer ones end in "…[+N chars]".
FIELD_LIMIT = 4096
MESSAGE_LIMIT = 16384
_LONG_FIELDS = frozenset({"event", "exception", "stack"})
# Set by our own processors from fixed values; they never carry input.
_OWN_FIELDS = frozenset({"timestamp", "level", "logger"})


def _has_jwt_shape(run: str) -> bool:
    """Whether ``run`` (token characters only) holds ``eyJ`` + 4, ``.``, 4, ``.``: linear."""
    parts = run.split(".")
    for index in range(len(parts) - 2):
        start = parts[index].find("eyJ")
        if start != -1 and len(parts[index]) - start >= 7 and len(parts[index + 1]) >= 4:
            return True
    return False


def _redact_jwt_run(match: re.Match[str]) -> str:
    return REDACTED if _has_jwt_shape(match.group()) else match.group()


def _run_before(text: str, end: int) -> int:
    """Length of the run of token characters that ends at ``end``."""
    match = _TOKEN_RUN.match(text[end - 1 :: -1]) if end > 0 else None
    return 0 if match is None else match.end()


def _safe_cut(text: str, limit: int, secrets: Iterable[str]) -> int:
    """Where to cut ``text`` (longer than ``limit``): at most ``limit``, never inside
    a run of token characters or one of ``secrets``, so what is kept never ends in
    the prefix of a token that the redactor would no longer recognise."""
    cut, moved = limit, True
    while moved and cut > 0:
        moved = False
        if _TOKEN_RUN.fullmatch(text, cut - 1, cut + 1):
            cut -= _run_before(text, cut)
            moved = True
        for secret in secrets:
            start = text.find(secret, max(0, cut - len(secret) + 1), cut + len(secret) - 1)
            if -1 < start < cut:
                cut, moved = start, True
    return cut


def truncate(text: str, limit: int, secrets: Iterable[str] = ()) -> str:
    """``text`` cut safely (see ``_safe_cut``) to ``limit`` characters, marked ``…[+N chars]``."""
    if len(text) <= limit:
        return text
    cut = _safe_cut(text, limit, secrets)
    return f"{text[:cut]}…[+{len(text) - cut} chars]"


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
            text = _JWT_RUN.sub(_redact_jwt_run, text)
        if "earer" in text.lower():
            text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def bounded(self, text: str, limit: int = FIELD_LIMIT) -> str:
        """``text`` truncated (see ``truncate``), then redacted: bounded, linear work."""
        if len(text) <= limit:
            return self(text)
        cut = _safe_cut(text, limit, self.secrets)
        return f"{self(text[:cut])}…[+{len(text) - cut} chars]"

    def scrub(self, value: Any, limit: int = FIELD_LIMIT) -> Any:
        """``value`` with every string, dictionary keys included, bounded and redacted."""
        if isinstance(value, str):
            return self.bounded(value, limit)
        if isinstance(value, dict):
            return {self.scrub(k, limit): self.scrub(v, limit) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v, limit) for v in value)
        return value

    def processor(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        for name, value in list(event.items()):
            if name.startswith("_") or name in _OWN_FIELDS:
                continue
            event[name] = self.scrub(value, MESSAGE_LIMIT if name in _LONG_FIELDS else FIELD_LIMIT)
        return event


# websockets' handshake lines at debug level ("< Authorization: Bearer ...").
_HEADER_LINES = frozenset({"< %s: %s", "> %s: %s"})
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


class _RecordArguments(logging.Filter):
    """Bounds a stdlib record's string arguments; drops uvicorn's query strings.

    uvicorn (and websockets, under uvicorn's logger) log the request target with
    its query exactly as received, percent-encoded: ``access%5Ftoken=%65yJ...``
    is a token Starlette accepts that no pattern sees. A query never reaches a
    log line: ``/ws?access_token=...`` is logged ``/ws?[redacted]``, as are
    credential headers. Arguments are cut before formatting so that a long
    path does not push the status code out of the bounded message.
    """

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return True
        uvicorn = record.name.startswith("uvicorn")
        if (
            uvicorn
            and isinstance(record.msg, str)
            and record.msg in _HEADER_LINES
            and len(args) == 2
            and str(args[0]).lower() in _SECRET_HEADERS
        ):
            args = (args[0], REDACTED)
        record.args = tuple(self._argument(arg, uvicorn=uvicorn) for arg in args)
        return True

    def _argument(self, arg: object, *, uvicorn: bool) -> object:
        if not isinstance(arg, str):
            return arg
        if uvicorn and arg.startswith("/") and "?" in arg:
            arg = f"{arg.partition('?')[0]}?{REDACTED}"
        return truncate(arg, FIELD_LIMIT, self.secrets)


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
    handler.addFilter(_RecordArguments(redactor.secrets))
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
