"""Logging: structlog for our events, the same pipeline for uvicorn's records.

JSON lines in production, readable console output in development. Every
record, ours or uvicorn's (access log, WebSocket handshakes), passes the
redactor, which removes token-bearing query parameters, anything shaped like a
JWT, the userinfo and every query value of any ``scheme://`` URL, and the
configured secrets (keys, and the secret parts of configured URLs: see
``url_secrets``), so a token, key or URL credential never reaches a log line.
The HTTP client libraries (httpx, httpcore, openai) log each request's full URL
at INFO and DEBUG; they are held at WARNING whatever ``LOG_LEVEL`` says.
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
from urllib.parse import unquote, urlsplit

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
# A ``scheme://`` URL up to whitespace or a quote; it only starts at the beginning
# of a run of scheme characters (linear, as for the JWT run above).
_URL = re.compile(r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://[^\s\"'<>]*+")
_AUTHORITY_END = re.compile(r"[/?#\s\"'<>]")
# How far back a cut looks for the "://" of a URL whose authority it would split.
_AUTHORITY_LOOKBACK = 512
REDACTED = "[redacted]"
# Shorter secrets are not searched for: they would redact ordinary words.
MIN_SECRET_LENGTH = 8
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


def _redact_pairs(text: str) -> str:
    """``a=1&b`` -> ``a=[redacted]&[redacted]``: every value (a bare item is one)."""
    pairs = []
    for pair in text.split("&"):
        name, equals, value = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if equals and value else pair if equals else REDACTED)
    return "&".join(pairs)


def redact_url(url: str) -> str:
    """``url`` without its userinfo and with every query and fragment value redacted:
    ``https://u:p@host/p?code=1`` -> ``https://[redacted]@host/p?code=[redacted]``."""
    scheme, _, rest = url.partition("://")
    end = _AUTHORITY_END.search(rest)
    authority, tail = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    if "@" in authority:
        authority = f"{REDACTED}@{authority.rpartition('@')[2]}"
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    if query:
        query = _redact_pairs(query)
    if fragment:
        fragment = _redact_pairs(fragment)
    return f"{scheme}://{authority}{path}{question}{query}{hash_}{fragment}"


def url_secrets(url: str | None, *, path: bool = False) -> tuple[str, ...]:
    """The secret parts of a configured URL, for the redactor: its userinfo (and the
    password alone), every query value and, with ``path``, its path; each as written
    and percent-decoded; not those under ``MIN_SECRET_LENGTH`` (the URL pattern still
    hides userinfo and query values inside any URL)."""
    if not url:
        return ()
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return (url,)
    raw: list[str] = []
    if "@" in parts.netloc:
        raw.append(parts.netloc.rpartition("@")[0])
    if password:
        raw.append(password)
    for pair in f"{parts.query}&{parts.fragment}".split("&"):
        _, equals, value = pair.partition("=")
        raw.append(value if equals else pair)
    if path and parts.path.strip("/"):
        raw.append(parts.path)
    found = [v for item in raw for v in (item, unquote(item)) if len(v) >= MIN_SECRET_LENGTH]
    return tuple(dict.fromkeys(found))


def error_reason(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of the innermost cause of ``exc`` (the driver's own reason:
    refused, no such database, DNS), on one line and at most ``limit`` characters."""
    root = exc
    seen = {id(root)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        root = nxt
    message = " ".join(str(root).split()) or type(exc).__name__
    text = f"{type(root).__name__}: {message}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        # Never inside a URL's authority: "https://user:pa" would keep half a password.
        mark = text.rfind("://", max(0, cut - _AUTHORITY_LOOKBACK), cut)
        if mark != -1 and not _AUTHORITY_END.search(text, mark + 3, cut):
            cut, moved = mark, True
            continue
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
        self.secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)

    def __call__(self, text: str) -> str:
        # Every pattern needs "://", "=", "eyJ" or "bearer": most log strings have
        # none, and skip the regex passes.
        if "://" in text:
            text = _URL.sub(lambda m: redact_url(m.group()), text)
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


# HTTP client libraries that log every request's full URL (userinfo, secret path,
# query) at INFO or DEBUG, and openai its options at DEBUG: held at WARNING.
LIBRARY_LOGGERS = ("httpx", "httpcore", "openai")

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
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
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
