"""What happens after ``/api/jwt`` mints a Soul Machines token: its session is
recorded, so the control socket and the sessions API find it, and counted."""

from __future__ import annotations

import logging

from prometheus_client import Counter
from starlette.requests import Request

from orchestrator.logs import get_logger, level_check
from orchestrator.sessions.store import SessionStore, StoreUnavailable
from tokens import IssuedToken

LOGGER_NAME = "orchestrator.http.issued_sessions"
log = get_logger(LOGGER_NAME)
log_enabled_for = level_check(LOGGER_NAME)


class IssuedSessionRecorder:
    """The Soul Machines token routes' ``on_issued`` hook: one record in
    ``store`` and one count in ``issued`` per minted token."""

    def __init__(self, store: SessionStore, issued: Counter) -> None:
        self.store = store
        self.issued = issued

    async def __call__(self, token: IssuedToken, _request: Request) -> None:
        claims = token.claims
        try:
            await self.store.create_issued(
                claims.session_id,
                issuer=claims.issuer,
                expires_at=claims.expires_at,
                claims=claims.custom,
            )
        except StoreUnavailable:
            # The token is still good: the session is recorded when the host connects.
            log.warning(
                "issued session not recorded: store unreachable", session_id=claims.session_id
            )
        self.issued.inc()
        # Debug, not info: the access log already has a line per token request,
        # and at info this second line would cost more than minting the token.
        if log_enabled_for(logging.DEBUG):
            log.debug("token issued", profile="soul-machines", session_id=claims.session_id)
