"""The settings table: every environment variable the server reads, declared once.

Name, kind, default (development, and production where it differs), limits,
production rule and a one-line doc. ``Settings`` reads its fields from here,
and ``docs/configuration.md`` and ``.env.example`` are generated from here
(``python -m orchestrator.config --markdown`` / ``--env-example``).
"""

from __future__ import annotations

import os

from orchestrator.config.parsing import (
    BOOLEAN,
    INTEGER,
    LIST,
    LOWERCASE,
    NETWORKS,
    NUMBER,
    RAW_SECRET,
    SECRET,
    SECRET_LIST,
    TEXT,
    Kind,
    ProductionRule,
    Section,
    SettingsError,
    Variable,
    at_least,
    between,
    choice,
    greater_than,
)
from tokens.claims import DEFAULT_MAX_CUSTOM_CLAIMS_BYTES, ClientClaimsRule
from tokens.profiles.ccai import DEFAULT_TTL_SECONDS as CCAI_DEFAULT_TTL
from tokens.profiles.soul_machines import DEFAULT_TTL_SECONDS
from tokens.profiles.videosdk import DEFAULT_TTL_SECONDS as VIDEOSDK_DEFAULT_TTL
from tokens.profiles.voicegain import MAX_EXP_IN_SEC
from tokens.web.ccai import DEFAULT_ANONYMOUS_COOKIE

DEFAULT_SESSION_SERVER = "dh.soulmachines.cloud"
DEFAULT_PORT = 8080
CONTROL_PATH = "/ws"
EPHEMERAL_KEY_NAME = "dev-ephemeral"
# Set by `orchestrator serve` when it generated the development key, so every
# worker process shares it and says so in its log.
EPHEMERAL_FLAG = "ORCHESTRATOR_EPHEMERAL_KEY"
MIN_API_KEY_BYTES = 32
DEFAULT_HANDLER = "default"
DEFAULT_APOLOGY = "Sorry, something went wrong on my side. Could you say that again?"
DEFAULT_BUDGET_REPLY = "I need a moment to catch up. Please ask me again in a minute."
DEFAULT_LLM_BASE_URL = "https://api.openai.com/v1"
DEFAULT_LLM_SYSTEM_PROMPT = (
    "You are a friendly digital person talking with a user by voice. Answer in one to three "
    "short spoken sentences, without lists or markdown."
)
DEFAULT_LLM_WELCOME = "Hello! How can I help you today?"
DEV_CORS_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "https://localhost:*")
DEFAULT_RATE_LIMIT = "60/minute"
# A Redis URL may carry a password: never shown, like a secret.
REDIS_URL_KIND = Kind("URL", TEXT.parse, secret=True)


def _client_claims(name: str, raw: str) -> ClientClaimsRule:
    """``any``, ``none`` or claim names, each optionally ``name:BYTES``."""
    try:
        return ClientClaimsRule.parse(raw.split(","), max_bytes=DEFAULT_MAX_CUSTOM_CLAIMS_BYTES)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


CLIENT_CLAIMS_KIND = Kind("`any`, `none` or names", _client_claims)


def _archive_url(name: str, raw: str) -> str | None:
    """``none`` (off), or a URL the archive's drivers take (checked at start-up)."""
    if raw.lower() in ("none", "off"):
        return None
    from orchestrator.archive.schema import async_url

    try:
        async_url(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    return raw


# A PostgreSQL URL may carry a password: never shown, like a secret.
ARCHIVE_URL_KIND = Kind("URL", _archive_url, secret=True)
# The development archive: one file per user, whatever the working directory.
DEFAULT_ARCHIVE_SHOWN = "sqlite:///$XDG_DATA_HOME/dp-orchestration-companion/archive.db"


def default_archive_url() -> str:
    """``DEFAULT_ARCHIVE_SHOWN``, ``$XDG_DATA_HOME`` defaulting to ``~/.local/share``:
    the user's, from the process environment (not a setting of the server's)."""
    from orchestrator.archive.schema import default_archive_path

    return f"sqlite:///{default_archive_path(os.environ)}"


REFUSED_WHEN_TRUE = ProductionRule("refused when `true`", refused=("true",))

SECTIONS = (
    Section("Mode", (
        Variable("ORCHESTRATOR_ENV", choice("development", "production"), "Production refuses "
                 "unsafe settings (see Production refusals).", default="development"),
        Variable("PRODUCTION_PERSONA", BOOLEAN, "The vendor's switch: `true` also means "
                 "production mode.", default=False),
    )),
    Section("Listening", (
        Variable("HOST", TEXT, "Interface to listen on; `--host` overrides it.",
                 default="127.0.0.1", production_default="0.0.0.0"),  # noqa: S104
        Variable("PORT", INTEGER, "Port to listen on; `--port` overrides it.",
                 default=DEFAULT_PORT),
        Variable("TRUSTED_PROXY_HOPS", INTEGER, "How many reverse proxies in front append to "
                 "`X-Forwarded-For`; the client is the entry that many places from the right, "
                 "`X-Forwarded-Proto` gives the scheme. 0: forwarded headers are ignored. "
                 "`--trusted-proxy-hops` overrides it.", default=0, limits=between(0, 10)),
        Variable("HTTP_HEAD_TIMEOUT_SECONDS", NUMBER, "A connection must send a whole request "
                 "head (request line and headers, WebSocket handshakes included) this soon "
                 "after it opens or after its first byte; past it the server answers 408 and "
                 "closes (a slowly trickled or never-sent head holds no connection).",
                 default=10.0, limits=between(1, 300)),
    )),
    Section("Soul Machines", (
        Variable("SESSION_SERVER", TEXT, "The Soul Machines server named in Studio: a host "
                 "name (`wss://host`) or a `wss://` or `ws://` URL, whose scheme is kept; "
                 "tokens carry its host as `sm-session-server`.",
                 default=DEFAULT_SESSION_SERVER, production_default="",
                 production=ProductionRule("required; a `ws://` URL is refused",
                                           refused=("", "ws://dh.soulmachines.cloud"))),
        Variable("JWT_PUBLIC_KEY", TEXT, "The Studio key name: the token's `iss` and header "
                 "`kid`. Required when `JWT_PRIVATE_KEY` is set."),
        Variable("JWT_PRIVATE_KEY", RAW_SECRET, "The Studio private key (HS256 secret, its "
                 "UTF-8 bytes, at least 32). `orchestrator keygen` prints a strong one.",
                 shown_default="an ephemeral key generated at start-up",
                 production=ProductionRule("required (no ephemeral key)", refused=("",))),
        Variable("JWT_PREVIOUS_KEYS", SECRET, "Verify-only keys during a rotation, as JSON: "
                 '`{"oldKeyName": "oldPrivateKey"}`.'),
        Variable("TOKEN_TTL_SECONDS", INTEGER, "Token lifetime, 60 to 86400; a `POST` may ask "
                 "for less, never more.", default=DEFAULT_TTL_SECONDS),
        Variable("CLIENT_CLAIMS", CLIENT_CLAIMS_KIND, "Which custom claims a `POST "
                 "/auth/authorize` without the API key may set: `any`, `none` (custom claims "
                 "need `ORCHESTRATOR_API_KEY`), or names, each optionally with its most bytes "
                 "of JSON (`name:64,plan:16`). The token names them in `client_claims` "
                 "(docs/token-profiles.md).", default=ClientClaimsRule(None),
                 production_default=ClientClaimsRule({}),
                 shown_default="`any` (development), `none` (production)"),
    )),
    Section("This server's control socket (sm-control)", (
        Variable("PUBLIC_URL", TEXT, "This server's public address, `https://host[/base]`: "
                 "tokens carry `sm-control: wss://host[/base]/ws` (`ws://` for `http://`).",
                 shown_default="derived from each request",
                 production=ProductionRule(
                     "required (or `ORCHESTRATION_SERVER`): a control URL derived from request "
                     "headers is not trusted; it must give `wss://`",
                     refused=("", "http://orch.example.com"))),
        Variable("ORCHESTRATION_SERVER", TEXT, "The vendor's alternative to `PUBLIC_URL`: a "
                 "bare host becomes `sm-control: wss://HOST` (no path added), a `ws(s)://` URL "
                 "is used as is. Not together with `PUBLIC_URL`.",
                 production=ProductionRule("must be `wss://`",
                                           refused=("ws://orch.example.com",))),
        Variable("CONTROL_VIA_BROWSER", BOOLEAN, "Development only: `sm-control-via-browser`, "
                 "the browser opens the control socket, so a localhost orchestrator works.",
                 default=False, production=REFUSED_WHEN_TRUE),
        Variable("CONTROL_ALLOWED_NETWORKS", NETWORKS, "The networks from which the control "
                 "socket is accepted, e.g. the video hosts' egress: "
                 "`203.0.113.0/24,2001:db8::/48`; checked against the address "
                 "`TRUSTED_PROXY_HOPS` resolves, before the token (403 "
                 "`network_not_allowed`). Unset: any address, and a live session's socket may "
                 "then be replaced only from the address that holds it.",
                 default=(), shown_default="any address",
                 production=ProductionRule("unset is allowed, with a warning in the log",
                                           refusal=False)),
        Variable("SM_CONTROL_COOKIE", TEXT, "A cookie name: tokens carry "
                 "`sm-control-cookie-header: NAME=<session_id>`, which the video host sends on "
                 "the control connection (load-balancer affinity)."),
    )),
    Section("Browsers", (
        Variable("CORS_ORIGINS", LIST, "UI origins allowed by CORS, e.g. "
                 "`https://app.example.com,https://*.example.com,http://localhost:*`.",
                 default=DEV_CORS_ORIGINS, production_default=(),
                 production=ProductionRule("`*` is refused", refused=("*",))),
        Variable("CONSOLE_ENABLED", BOOLEAN, "Serve the developer console at `/console`.",
                 default=True, production_default=False,
                 production=ProductionRule("allowed when `true`, with a warning in the log",
                                           refusal=False)),
    )),
    Section("Logging", (
        Variable("LOG_LEVEL", LOWERCASE, "`debug`, `info`, `warning` or `error`.",
                 default="info"),
        Variable("LOG_FORMAT", choice("json", "console"), "`console`: readable lines; "
                 "`json`: one JSON object per line.", default="console",
                 production_default="json"),
    )),
    Section("The conversation (control socket)", (
        Variable("CONVERSATION_HANDLER", TEXT, "Who answers turns: `default` (the built-in "
                 "echo), `webhook` (your backend over HTTP), `llm` (an OpenAI-compatible "
                 "model), or your own as `package.module:callable` (an `async def` or a "
                 "handler object); one that does not load stops start-up.",
                 default=DEFAULT_HANDLER),
        Variable("HANDLER_TIMEOUT_SECONDS", NUMBER, "A turn whose handler takes longer is "
                 "abandoned and the DP says the apology.", default=10.0,
                 limits=greater_than(0)),
        Variable("HANDLER_APOLOGY", TEXT, "What the DP says when the handler raises or times "
                 "out.", default=DEFAULT_APOLOGY),
        Variable("HANDLER_REQUESTS_PER_MINUTE", INTEGER, "Requests the `llm` and `webhook` "
                 "handlers make for one session within any 60 s (each model call of a turn, "
                 "interrupted ones too; each webhook turn); past it the request is not made "
                 "and the DP says `HANDLER_BUDGET_REPLY`; `0`: no limit.", default=60,
                 limits=at_least(0)),
        Variable("HANDLER_INPUT_CHARS_PER_MINUTE", INTEGER, "Characters those requests send "
                 "for one session within any 60 s (the whole prompt, the webhook's JSON "
                 "body); `0`: no limit.", default=600_000, limits=at_least(0)),
        Variable("HANDLER_BUDGET_REPLY", TEXT, "What the DP says when a session is over "
                 "its budget (no request is made).", default=DEFAULT_BUDGET_REPLY),
        Variable("IDLE_PROMPT_SECONDS", NUMBER, "After this long with no user turn (and the "
                 "DP not speaking) the handler's `on_idle` is called once per silence (the "
                 "default handler asks \"Are you still there?\"); `0` turns it off.",
                 default=0.0, limits=at_least(0)),
        Variable("ALLOW_UNAUTHENTICATED_CONTROL", BOOLEAN, "Development only: a loopback "
                 "client may open the control socket without a token (a fresh anonymous "
                 "session).", default=False, production=REFUSED_WHEN_TRUE),
        Variable("CONTROL_MAX_FRAME_BYTES", INTEGER, "Larger control frames are ignored and "
                 "counted; three of them, or one over twice this, close the socket (1009).",
                 default=64 * 1024, limits=at_least(1024)),
        Variable("CONTROL_MAX_FRAMES_PER_SECOND", NUMBER, "Sustained frame rate per control "
                 "socket (bursts of 4x), and separately for its pings and pongs; a flood past "
                 "it closes the socket (1008).", default=50.0, limits=greater_than(0)),
        Variable("CONTROL_SEND_TIMEOUT_SECONDS", NUMBER, "A send that cannot complete this "
                 "long, or a write buffer that stays full this long, drops the connection "
                 "(4008).", default=10.0, limits=greater_than(0)),
        Variable("CONTROL_HANDSHAKES_PER_PASS", INTEGER, "Control-socket handshakes "
                 "started per pass of the event loop; more hosts connecting at once wait "
                 "their turn, so live conversations keep answering during a connect storm; "
                 "`0`: no limit.", default=16, limits=at_least(0)),
        Variable("TRANSACTION_TIMEOUT_SECONDS", NUMBER, "How long the server's own requests "
                 "(`startSpeaking`, ...) wait for the DP's response.", default=10.0,
                 limits=greater_than(0)),
    )),
    Section("Webhook handler (`CONVERSATION_HANDLER=webhook`)", (
        Variable("WEBHOOK_URL", TEXT, "Your backend's address: each turn is a signed `POST` "
                 "of JSON there, its JSON reply is what the DP says "
                 "(docs/webhook.md); required with `webhook`.",
                 production=ProductionRule("must be `https://` (`http://` only to a loopback "
                                           "address: a sidecar on the same host)",
                                           refused=("http://backend.example.com/turn",))),
        Variable("WEBHOOK_SECRET", SECRET, "The key of the `Orchestrator-Signature` HMAC "
                 "on every request, at least 32 bytes; required with `webhook`."),
        Variable("WEBHOOK_EVENTS_URL", TEXT, "Where the session events (started, idle, "
                 "ended) go, when not to `WEBHOOK_URL`.", shown_default="`WEBHOOK_URL`",
                 production=ProductionRule("must be `https://` (or loopback `http://`)",
                                           refused=("http://backend.example.com/events",))),
        Variable("WEBHOOK_HISTORY_LINES", INTEGER, "Transcript lines (user and DP, newest "
                 "last) each turn's request carries.", default=10, limits=between(0, 200)),
        Variable("WEBHOOK_MAX_REPLY_BYTES", INTEGER, "A longer reply is refused unread past "
                 "this size (the DP says the apology).", default=64 * 1024,
                 limits=between(1024, 4 * 1024 * 1024)),
        Variable("WEBHOOK_MAX_CONCURRENT", INTEGER, "Requests to the backend in flight at "
                 "once, over all sessions (the connection pool's size); one session has at "
                 "most one.", default=100, limits=between(1, 10_000)),
        Variable("WEBHOOK_MAX_WAITING", INTEGER, "Requests that may wait for a free "
                 "connection; past it a request is refused at once (the DP says the "
                 "apology).", default=100, limits=between(0, 100_000)),
    )),
    Section("Sessions", (
        Variable("ORCHESTRATOR_API_KEY", SECRET_LIST, "The backend's key(s) for the sessions "
                 "API, each at least 32 bytes (several while rotating). Unset: only UI tokens "
                 "reach `/sessions/{id}`.", default=()),
        Variable("SESSION_TTL_SECONDS", INTEGER, "How long a session record outlives its "
                 "token (or its end); a connected session never expires.", default=15 * 60),
        Variable("TRANSCRIPT_TURNS", INTEGER, "Lines (user and DP) a session's transcript "
                 "keeps; older ones drop off.", default=200, limits=between(1, 10_000)),
        Variable("TRANSCRIPT_MAX_BYTES", INTEGER, "Memory a session's transcript may take "
                 "(each entry's text plus 128 bytes); older lines drop off first.",
                 default=128 * 1024, limits=between(16 * 1024, 64 * 1024 * 1024)),
        Variable("SSE_MAX_STREAMS_PER_SESSION", INTEGER, "Event streams "
                 "(`/sessions/{id}/events`) one session may have open with UI tokens; one "
                 "more is 429 `too_many_streams`.", default=4, limits=between(1, 1000)),
        Variable("SSE_MAX_BACKEND_STREAMS_PER_SESSION", INTEGER, "Event streams one session "
                 "may have open with the API key (counted apart from the UI's).", default=16,
                 limits=between(1, 100_000)),
        Variable("SSE_MAX_STREAMS_PER_ADDRESS", INTEGER, "Event streams followed with UI "
                 "tokens from one client address (as `TRUSTED_PROXY_HOPS` resolves it); one "
                 "more is 429 `too_many_streams`.", default=64, limits=at_least(1)),
        Variable("SSE_MAX_STREAMS", INTEGER, "Event streams open in this process in all; one "
                 "more is 503 `server_busy`. Keep it well below the open-file limit, so "
                 "control sockets and `/healthz` keep room.",
                 shown_default="a quarter of the open-file limit (`ulimit -n`), at most 10000",
                 limits=at_least(1)),
        Variable("REDIS_URL", REDIS_URL_KIND, "`redis://[:password@]host:6379/0` (or "
                 "`rediss://`): sessions, live sockets, commands, events, rate limits and "
                 "Voicegain token state go through Redis, so several instances serve one "
                 "deployment.", shown_default="in memory, one process",
                 production=ProductionRule("required with the `voicegain` profile (else a "
                                           "restart revokes every API token)", refused=("",))),
    )),
    Section("LLM handler (`CONVERSATION_HANDLER=llm`)", (
        Variable("LLM_BASE_URL", TEXT, "An OpenAI-compatible API: OpenAI, Azure OpenAI, vLLM, "
                 "Ollama (`http://localhost:11434/v1`), llama.cpp server, LM Studio.",
                 default=DEFAULT_LLM_BASE_URL,
                 production=ProductionRule("`http://` refused unless the host is loopback "
                                           "(the key and the conversation would travel in clear)",
                                           refused=("http://llm.example.com/v1",))),
        Variable("LLM_API_KEY", SECRET, "The API key, sent as `Authorization: Bearer`; unset "
                 "for a local server that needs none."),
        Variable("LLM_MODEL", TEXT, "The model (or Azure deployment) name; required with "
                 "`CONVERSATION_HANDLER=llm`."),
        Variable("LLM_SYSTEM_PROMPT", TEXT, "The system prompt, or `@path` to a UTF-8 file; may "
                 "name `{claims.NAME}` and `{variables.NAME}` (see docs/llm.md).",
                 default=DEFAULT_LLM_SYSTEM_PROMPT),
        Variable("LLM_WELCOME", TEXT, "What the DP says on the init turn (a template like the "
                 "system prompt; the model is not asked).", default=DEFAULT_LLM_WELCOME),
        Variable("LLM_SPEECH", choice("final", "sentences"), "`final`: one "
                 "`conversationResponse` once the answer is complete; `sentences`: the first "
                 "sentence as soon as it is complete, the rest as the DP finishes speaking.",
                 default="final"),
        Variable("LLM_CONTINUATION", choice("startspeaking", "conversationresponse"), "With "
                 "`LLM_SPEECH=sentences`, the message that carries the sentences after the "
                 "first (see docs/llm.md).", default="startspeaking"),
        Variable("LLM_HISTORY_TURNS", INTEGER, "Transcript lines (user and DP) sent as "
                 "history.", default=20, limits=between(0, 1000)),
        Variable("LLM_HISTORY_MAX_CHARS", INTEGER, "Characters of history sent at most (the "
                 "newest lines are kept).", default=8000, limits=between(0, 1_000_000)),
        Variable("LLM_MAX_INPUT_CHARS", INTEGER, "Characters of one user turn sent to the "
                 "model; a longer turn is cut (logged and counted).", default=4000,
                 limits=between(100, 1_000_000)),
        Variable("LLM_MAX_TOKENS", INTEGER, "`max_tokens` of each request; `0`: none sent "
                 "(the server's default; for models that refuse `max_tokens`).", default=1024,
                 limits=between(0, 1_000_000)),
        Variable("LLM_MAX_ANSWER_CHARS", INTEGER, "Characters of one turn's answer spoken at "
                 "most; the stream is closed there (a server may ignore `max_tokens`).",
                 default=2000, limits=between(100, 20_000)),
        Variable("LLM_TEMPERATURE", NUMBER, "`temperature` of each request; unset: the "
                 "server's default.", limits=between(0, 2)),
        Variable("LLM_TOOLS", BOOLEAN, "Offer the model the `show_card` and `set_variable` "
                 "tools (turn off for a server or model without function calling).",
                 default=True),
    )),
    Section("Scenario judge (`orchestrator test`, docs/testing.md)", (
        Variable("JUDGE_BASE_URL", TEXT, "The OpenAI-compatible API that judges answers "
                 "against a scenario's `judge:` sentence (separate from the LLM handler's).",
                 default=DEFAULT_LLM_BASE_URL),
        Variable("JUDGE_API_KEY", SECRET, "Its API key, sent as `Authorization: Bearer`; unset "
                 "for a local server that needs none."),
        Variable("JUDGE_MODEL", TEXT, "The judging model; required by a scenario with "
                 "`judge:`."),
    )),
    Section("Token profiles", (
        Variable("TOKEN_PROFILES", LIST, "Which tokens the server issues: any of "
                 "`soul-machines`, `ccai`, `videosdk`, `voicegain`.", default=("soul-machines",)),
        Variable("TOKEN_RATE_LIMIT", TEXT, "Requests per client IP over all token routes, "
                 "e.g. `60/minute` or `10/second`.", default=DEFAULT_RATE_LIMIT),
        Variable("TOKEN_VERIFY_API_KEY", SECRET, "Enables `POST /tokens/verify` (Bearer key, "
                 "at least 32 bytes)."),
    )),
    Section("Google CCAI Platform (`ccai` profile)", (
        Variable("CCAI_COMPANY_NAME", TEXT, "The tokens' `iss`; required with `ccai`."),
        Variable("CCAI_COMPANY_SECRET", SECRET, "Signing secret, at least 32 bytes; required "
                 "with `ccai`."),
        Variable("CCAI_TOKEN_TTL_SECONDS", INTEGER, "Token lifetime, 60 to 86400.",
                 default=CCAI_DEFAULT_TTL),
        Variable("CCAI_USER_RESOLVER", TEXT, "`module:callable` taking the request, returning "
                 "a `CcaiUser` or `None`. Not with `CCAI_USER_ID_HEADER`."),
        Variable("CCAI_USER_ID_HEADER", TEXT, "Trusted header with the user's id, set by your "
                 "auth proxy (which must strip it from client requests)."),
        Variable("CCAI_USER_NAME_HEADER", TEXT, "Trusted header with the user's name (needs "
                 "`CCAI_USER_ID_HEADER`)."),
        Variable("CCAI_USER_EMAIL_HEADER", TEXT, "Trusted header with the user's email (needs "
                 "`CCAI_USER_ID_HEADER`)."),
        Variable("CCAI_ANONYMOUS_COOKIE", TEXT, "Cookie keeping anonymous identifiers stable.",
                 default=DEFAULT_ANONYMOUS_COOKIE),
    )),
    Section("VideoSDK (`videosdk` profile)", (
        Variable("VIDEOSDK_API_KEY", TEXT, "The VideoSDK account key; required with "
                 "`videosdk`."),
        Variable("VIDEOSDK_SECRET", SECRET, "The VideoSDK secret, at least 32 bytes; required "
                 "with `videosdk`."),
        Variable("VIDEOSDK_TOKEN_TTL", TEXT, "Maximum lifetime: `120m`, `2h` or seconds.",
                 default=str(VIDEOSDK_DEFAULT_TTL)),
        Variable("VIDEOSDK_ALLOWED_PERMISSIONS", LIST, "What clients may ask for.",
                 default=("allow_join", "ask_join")),
    )),
    Section("Voicegain-style API tokens (`voicegain` profile)", (
        Variable("VOICEGAIN_SECRET", SECRET, "Signing secret, at least 32 bytes; required with "
                 "`voicegain`."),
        Variable("VOICEGAIN_ADMIN_KEY", SECRET, "Admin Bearer key for generating API tokens, "
                 "at least 32 bytes; required with `voicegain`."),
        Variable("VOICEGAIN_MAX_EXP_IN_SEC", INTEGER, "Upper bound of `expInSec`, 1 to 86400.",
                 default=MAX_EXP_IN_SEC),
    )),
    Section("Archive", (
        Variable("ARCHIVE_URL", ARCHIVE_URL_KIND, "Where ended sessions and their transcripts "
                 "are kept (docs/archive.md): `sqlite:///path.db`, `postgresql://user:password@"
                 "host/db` (several instances), or `none`. The development default is per "
                 "user (`$XDG_DATA_HOME` defaults to `~/.local/share`), created 0600.",
                 default=default_archive_url, production_default=None,
                 shown_default=f"`{DEFAULT_ARCHIVE_SHOWN}` (development), "
                 "`none` (production, with a warning)"),
        Variable("ARCHIVE_CLAIMS", LIST, "Which custom claims are archived: `all`, `none` or "
                 "their names (names that look like credentials never are).", default=("all",)),
        Variable("ARCHIVE_RETENTION_DAYS", INTEGER, "Archived sessions older than this are "
                 "purged hourly; `0` keeps them.", default=0, limits=at_least(0)),
        Variable("ARCHIVE_QUEUE_SIZE", INTEGER, "Ended sessions waiting for the database, per "
                 "process, before they are dropped (with Redis: parked there instead).",
                 default=10_000, limits=at_least(1)),
    )),
    Section("Internal", (
        Variable(EPHEMERAL_FLAG, BOOLEAN, "Set by `orchestrator serve` when it generated the "
                 "development key, so every worker shares it and says so.", default=False,
                 internal=True),
    )),
)  # fmt: skip

VARIABLES = tuple(variable for section in SECTIONS for variable in section.variables)
VARIABLE = {variable.name: variable for variable in VARIABLES}
