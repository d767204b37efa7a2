"""The application factory: ``create_app(settings)`` wires settings into routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from orchestrator.archive.http import ARCHIVE_ERRORS, ArchiveApi
from orchestrator.archive.record import ClaimPolicy
from orchestrator.archive.store import ArchiveStore
from orchestrator.archive.writer import ArchiveWriter
from orchestrator.backend.factory import build_backend
from orchestrator.config import CONTROL_PATH, Settings
from orchestrator.control.admission import HandshakeAdmission
from orchestrator.control.connection import ControlServices
from orchestrator.control.endpoint import ControlEndpoint, ControlSocketRoutes, WebSocketHandler
from orchestrator.control.handshake import ControlAuthenticator
from orchestrator.control.options import CLOSE_GOING_AWAY, ControlOptions
from orchestrator.handlers.hooks import close_handler
from orchestrator.handlers.loader import load_handler
from orchestrator.http import ops
from orchestrator.http.console import console_routes
from orchestrator.http.event_streams import StreamCaps, derived_total, open_file_limit
from orchestrator.http.issued_sessions import IssuedSessionRecorder
from orchestrator.http.sessions_api import SESSIONS_API_ERRORS, SessionsApi
from orchestrator.http.tokens import build_token_profiles
from orchestrator.logs import get_logger
from orchestrator.metrics import Metrics
from orchestrator.server.forwarded import ForwardedHeadersMiddleware
from tokens import SoulMachinesProfile, TokenCodec
from tokens.web.auth import ApiKeys
from tokens.web.errors import TOKEN_ERRORS, exception_handlers
from tokens.web.soul_machines import SoulMachinesTokenEndpoints

log = get_logger("orchestrator.app")


def shown_url(url: str) -> str:
    """A database URL fit for a log line: its password and query (which may
    carry credentials too) left out."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(unparsable URL)"
    return parsed.set(query={}).render_as_string(hide_password=True)


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app from ``settings`` (default: the environment and ``.env``)."""
    settings = settings if settings is not None else Settings.from_env()
    codec = TokenCodec(settings.keyring)
    sm_profile = SoulMachinesProfile(codec, settings.sm_policy())
    backend = build_backend(settings.redis_url, grace_seconds=settings.session_grace_seconds)
    store, events = backend.store, backend.events
    metrics = Metrics(lambda: len(backend.live))
    archive = None
    if settings.archive_url is not None:
        archive = ArchiveWriter(
            ArchiveStore(settings.archive_url),
            policy=ClaimPolicy.parse(settings.archive_claims),
            queue_size=settings.archive_queue_size,
            retention_days=settings.archive_retention_days,
            redis_url=settings.redis_url,
            registry=metrics.registry,
        )
    services = ControlServices(
        store=store,
        events=events,
        live=backend.live,
        metrics=metrics,
        archive=archive,
        options=ControlOptions.from_settings(
            settings, load_handler(settings.conversation_handler, settings)
        ),
    )
    authenticator = ControlAuthenticator(
        sm_profile,
        store,
        cookie_name=settings.control_cookie_name,
        allow_unauthenticated=settings.allow_unauthenticated_control,
        allowed_networks=settings.control_allowed_networks,
        origin_regex=settings.cors_origin_regex(),
    )
    admission = HandshakeAdmission(settings.control_handshakes_per_pass)
    metrics.handshakes_waiting.set_function(lambda: float(admission.waiting))
    control_endpoint = ControlEndpoint(authenticator, services, admission)
    file_limit = open_file_limit()
    stream_caps = StreamCaps(
        per_session=settings.sse_max_streams_per_session,
        per_session_backend=settings.sse_max_backend_streams_per_session,
        per_address=settings.sse_max_streams_per_address,
        total=settings.sse_max_streams or derived_total(file_limit),
    )
    sessions_api = SessionsApi(
        store=store,
        router=backend.router,
        events=events,
        profile=sm_profile,
        api_keys=settings.api_keys,
        stream_caps=stream_caps,
        metrics=metrics,
        archive=archive,
    )

    on_issued = IssuedSessionRecorder(store, metrics.tokens_issued.labels("soul-machines"))
    sm_endpoints = SoulMachinesTokenEndpoints(
        sm_profile,
        control_path=CONTROL_PATH,
        on_issued=on_issued,
        api_keys=ApiKeys(settings.api_keys),
    )
    token_profiles = build_token_profiles(settings, sm_profile, sm_endpoints.routes())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        log.info(
            "orchestrator started",
            mode="production" if settings.production else "development",
            key_name=settings.keyring.active.kid,
            verify_keys=len(settings.keyring.kids),
            control_url=settings.control_url or f"derived from each request (path {CONTROL_PATH})",
            session_server=sm_profile.policy.session_server_url,
            backend=backend.name,
            control_via_browser=settings.control_via_browser,
            handler=settings.conversation_handler,
            archive=shown_url(settings.archive_url) if settings.archive_url else "off",
            sse_max_streams=stream_caps.total,
        )
        if file_limit is not None and stream_caps.total > file_limit // 2:
            log.warning(
                "SSE_MAX_STREAMS is over half the open-file limit: event streams could "
                "leave control sockets and /healthz without descriptors",
                sse_max_streams=stream_caps.total,
                open_file_limit=file_limit,
            )
        if settings.ephemeral_key and settings.redis_url:
            log.warning(
                "using the development signing key shared through Redis (orch:dev-signing-key): "
                "every instance on this Redis accepts its tokens, a real Soul Machines session "
                "server refuses them; set JWT_PUBLIC_KEY and JWT_PRIVATE_KEY"
            )
        elif settings.ephemeral_key:
            log.warning(
                "using an ephemeral signing key generated at start-up: tokens stop verifying "
                "on restart and a real Soul Machines session server will refuse them; set "
                "JWT_PUBLIC_KEY and JWT_PRIVATE_KEY"
            )
        await backend.start()
        if archive is not None:
            await archive.start()
        elif settings.production:
            log.warning("ARCHIVE_URL is none: ended sessions and transcripts are not archived")
        if settings.production and not settings.control_allowed_networks:
            log.warning(
                "CONTROL_ALLOWED_NETWORKS is not set: whoever holds a session's token (the "
                "browser too) can open its control socket; set it to the video hosts' egress "
                "networks"
            )
        yield
        live = services.live.all()
        if archive is not None:
            archive.shutting_down = True
        await services.live.close_all(CLOSE_GOING_AWAY, "server shutting down")
        for connection in live:
            await connection.persist()
            if archive is not None:
                archive.session_ended(connection.session)
        await close_handler(services.options.loaded, settings.handler_timeout_seconds, log)
        if archive is not None:
            await archive.stop()
        await backend.stop()
        await token_profiles.aclose()
        log.info("orchestrator stopped", closed_sockets=len(live))

    middleware = []
    if settings.trusted_proxy_hops:
        # First, so everything after it (and the access log) sees the client's address.
        middleware.append(Middleware(ForwardedHeadersMiddleware, hops=settings.trusted_proxy_hops))
    # The control socket, ahead of the HTTP middleware (see ControlSocketRoutes); the
    # vendor's ORCHESTRATION_SERVER=host gives sm-control wss://host/, hence "/".
    control_routes: dict[str, WebSocketHandler] = {
        CONTROL_PATH: control_endpoint.handle,
        "/": control_endpoint.handle,
    }
    middleware.append(Middleware(ControlSocketRoutes, routes=control_routes))
    origin_regex = settings.cors_origin_regex()
    if origin_regex is not None:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origin_regex=origin_regex,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=[
            *ops.routes,
            ops.readiness_route(
                backend.name, backend.check_ready, archive.status if archive else None
            ),
            metrics.route(ApiKeys(settings.api_keys), production=settings.production),
            *token_profiles.routes,
            *sessions_api.routes(),
            *(ArchiveApi(archive.store, sessions_api.caller).routes() if archive else ()),
            *console_routes(settings),
        ],
        middleware=[*middleware, *token_profiles.middleware],
        exception_handlers=exception_handlers(
            {**TOKEN_ERRORS, **SESSIONS_API_ERRORS, **ARCHIVE_ERRORS}
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sm_profile = sm_profile
    app.state.sessions_api = sessions_api
    app.state.store = store
    app.state.backend = backend
    app.state.metrics = metrics
    app.state.services = services
    app.state.control_admission = admission
    app.state.archive = archive
    app.state.token_profiles = token_profiles
    return app
