"""The token profiles' routes as the app mounts them: shapes, auth, revocation, 429."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from orchestrator.app import create_app
from orchestrator.config import Settings
from tokens.jws import read_unverified_claims
from tokens.profiles.ccai import CcaiUser
from tokens.profiles.videosdk import GENERIC_FAILURE

pytestmark = pytest.mark.anyio

ALL = ("soul-machines", "ccai", "videosdk", "voicegain")


def resolve_user(request: Request) -> CcaiUser | None:
    """A CCAI_USER_RESOLVER for the tests: the site's own session, here a cookie."""
    if request.cookies.get("site_session") == "ada":
        return CcaiUser("user-ada", "Ada", "ada@example.com")
    return None


def profile_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "profiles": ALL,
        "verify_api_key": secrets.token_urlsafe(48),
        "ccai_company_name": "ACME",
        "ccai_secret": secrets.token_urlsafe(48),
        "videosdk_api_key": "videosdk-api-key",
        "videosdk_secret": secrets.token_urlsafe(48),
        "voicegain_secret": secrets.token_urlsafe(48),
        "voicegain_admin_key": secrets.token_urlsafe(48),
        "rate_limit": "1000/minute",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_default_deployment_mounts_soul_machines_only() -> None:
    """With the default profiles, only the Soul Machines routes answer."""
    app = create_app(Settings())
    async with running(app) as client:
        assert (await client.get("/api/jwt")).status_code == 200
        for path in ("/auth/token", "/videosdk/token", "/voicegain/whoami", "/tokens/verify"):
            assert (await client.get(path)).status_code == 404


async def test_soul_machines_routes_can_be_disabled() -> None:
    """A deployment that leaves soul-machines out of TOKEN_PROFILES does not serve /api/jwt."""
    app = create_app(profile_settings(profiles=("videosdk",)))
    async with running(app) as client:
        assert (await client.get("/api/jwt")).status_code == 404
        assert (await client.get("/videosdk/token")).status_code == 200


# --- CCAI ---------------------------------------------------------------------


async def test_ccai_anonymous_visitor_keeps_a_stable_identifier() -> None:
    """An anonymous visitor gets {"token"} and a cookie that keeps their identifier stable."""
    async with running(create_app(profile_settings())) as client:
        first = await client.get("/auth/token")
        assert set(first.json()) == {"token"}
        assert "ccai_anon" in first.cookies
        second = await client.get("/auth/token")
        assert "set-cookie" not in second.headers
    first_claims = read_unverified_claims(first.json()["token"])
    assert set(first_claims) == {"iss", "iat", "exp", "identifier"}
    assert (
        read_unverified_claims(second.json()["token"])["identifier"] == first_claims["identifier"]
    )


async def test_ccai_request_parameters_never_name_the_user() -> None:
    """identifier/name/email in the query string are ignored; the visitor stays anonymous."""
    async with running(create_app(profile_settings())) as client:
        response = await client.get("/auth/token?identifier=admin&name=Admin&email=a@b.c")
    claims = read_unverified_claims(response.json()["token"])
    assert claims["identifier"].startswith("anon-")
    assert "name" not in claims


async def test_ccai_trusted_headers_are_honoured_only_when_configured() -> None:
    """X-User-* headers name the user when configured, and are ignored otherwise."""
    headers = {"X-User-Id": "u-7", "X-User-Name": "Grace", "X-User-Email": "g@example.com"}
    configured = profile_settings(
        ccai_user_id_header="X-User-Id",
        ccai_user_name_header="X-User-Name",
        ccai_user_email_header="X-User-Email",
    )
    async with running(create_app(configured)) as client:
        trusted = (await client.get("/auth/token", headers=headers)).json()["token"]
    async with running(create_app(profile_settings())) as client:
        ignored = (await client.get("/auth/token", headers=headers)).json()["token"]
    claims = read_unverified_claims(trusted)
    assert (claims["identifier"], claims["name"], claims["email"]) == (
        "u-7",
        "Grace",
        "g@example.com",
    )
    assert read_unverified_claims(ignored)["identifier"].startswith("anon-")


async def test_ccai_user_resolver_setting_names_the_user() -> None:
    """A module:callable resolver decides who the user is."""
    settings = profile_settings(ccai_user_resolver=f"{__name__}:resolve_user")
    async with running(create_app(settings)) as client:
        client.cookies.set("site_session", "ada")
        response = await client.get("/auth/token")
    claims = read_unverified_claims(response.json()["token"])
    assert set(claims) == {"iss", "iat", "exp", "identifier", "name", "email"}
    assert (claims["iss"], claims["identifier"]) == ("ACME", "user-ada")


# --- VideoSDK -----------------------------------------------------------------


async def test_videosdk_get_and_post_return_a_token() -> None:
    """GET with query parameters and POST with JSON both answer {"token"} with those claims."""
    async with running(create_app(profile_settings())) as client:
        got = await client.get(
            "/videosdk/token", params={"roomId": "room-1", "roles": "rtc", "expiresIn": "10m"}
        )
        posted = await client.post(
            "/videosdk/token",
            json={"permissions": ["ask_join"], "participantId": "p-1", "version": 2},
        )
    assert set(got.json()) == set(posted.json()) == {"token"}
    get_claims = read_unverified_claims(got.json()["token"])
    assert set(get_claims) == {"apikey", "permissions", "iat", "exp", "roomId", "roles"}
    assert get_claims["exp"] - get_claims["iat"] == 600
    post_claims = read_unverified_claims(posted.json()["token"])
    assert set(post_claims) == {"apikey", "permissions", "iat", "exp", "participantId", "version"}


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"permissions": "allow_join,superuser"}, 422, "invalid_claims"),
        ({"permissions": "allow_mod"}, 403, "forbidden_by_policy"),
        ({"expiresIn": "1d"}, 403, "forbidden_by_policy"),
        ({"expiresIn": "soon"}, 400, "invalid_expiry"),
        ({"apikey": "mine"}, 400, "unknown_field"),
    ],
)
async def test_videosdk_refusals_say_why(query: dict[str, str], status: int, code: str) -> None:
    """Unknown permissions, ungranted ones, bad expiry and unknown fields are refused clearly."""
    async with running(create_app(profile_settings())) as client:
        response = await client.get("/videosdk/token", params=query)
    assert (response.status_code, response.json()["error"]) == (status, code)


# --- Voicegain ----------------------------------------------------------------


async def _regenerate(client: httpx.AsyncClient, admin_key: str) -> str:
    response = await client.post(
        "/voicegain/api-tokens",
        json={"accountId": "acct-1", "contextId": "ctx-1"},
        headers=bearer(admin_key),
    )
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"token"}
    token: str = response.json()["token"]
    return token


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-admin-key"}])
async def test_voicegain_generation_needs_the_admin_key(headers: dict[str, str]) -> None:
    """Generating an API token without the admin key is refused with 401."""
    async with running(create_app(profile_settings())) as client:
        response = await client.post(
            "/voicegain/api-tokens", json={"accountId": "a", "contextId": "c"}, headers=headers
        )
    assert (response.status_code, response.json()["error"]) == (401, "unauthorized")


async def test_voicegain_regeneration_revokes_over_http() -> None:
    """The old API token is refused with code revoked once a new one is generated."""
    settings = profile_settings()
    async with running(create_app(settings)) as client:
        old = await _regenerate(client, settings.voicegain_admin_key or "")
        new = await _regenerate(client, settings.voicegain_admin_key or "")
        refused = await client.get("/voicegain/whoami", headers=bearer(old))
        accepted = await client.get("/voicegain/whoami", headers=bearer(new))
    assert (refused.status_code, refused.json()["error"]) == (401, "revoked")
    assert accepted.json() == {"accountId": "acct-1", "contextId": "ctx-1", "kind": "api"}


@pytest.mark.redis
async def test_voicegain_revocation_holds_across_two_instances(fresh_redis_url: str) -> None:
    """Two app instances sharing Redis: regenerating on one revokes the old token on the other."""
    settings = profile_settings(redis_url=fresh_redis_url)
    admin = settings.voicegain_admin_key or ""
    first, second = create_app(settings), create_app(settings)
    async with running(first) as client_a, running(second) as client_b:
        old = await _regenerate(client_a, admin)
        assert (await client_b.get("/voicegain/whoami", headers=bearer(old))).status_code == 200
        new = await _regenerate(client_b, admin)
        refused = await client_a.get("/voicegain/whoami", headers=bearer(old))
        accepted = await client_a.get("/voicegain/whoami", headers=bearer(new))
    assert (refused.status_code, refused.json()["error"]) == (401, "revoked")
    assert accepted.status_code == 200


async def test_voicegain_short_lived_token_and_origin_check() -> None:
    """/security/jwt mints {token, expires_at}; whoami checks Origin against aud when sent."""
    settings = profile_settings()
    async with running(create_app(settings)) as client:
        api = await _regenerate(client, settings.voicegain_admin_key or "")
        minted = await client.get(
            "/voicegain/security/jwt",
            params={"aud": "*.example.com", "expInSec": "300"},
            headers=bearer(api),
        )
        short = minted.json()["token"]
        no_origin = await client.get("/voicegain/whoami", headers=bearer(short))
        good = await client.get(
            "/voicegain/whoami", headers={**bearer(short), "Origin": "https://app.example.com"}
        )
        evil = await client.get(
            "/voicegain/whoami", headers={**bearer(short), "Origin": "https://evil-example.com"}
        )
    assert set(minted.json()) == {"token", "expires_at"}
    assert no_origin.status_code == good.status_code == 200
    assert good.json()["kind"] == "short"
    assert (evil.status_code, evil.json()["error"]) == (403, "wrong_audience")


@pytest.mark.parametrize("exp_in_sec", ["0", "86401", "-5", "ten"])
async def test_voicegain_exp_in_sec_is_bounded(exp_in_sec: str) -> None:
    """expInSec outside 1..86400 (or not a number) gets no token."""
    settings = profile_settings()
    async with running(create_app(settings)) as client:
        api = await _regenerate(client, settings.voicegain_admin_key or "")
        response = await client.get(
            "/voicegain/security/jwt",
            params={"aud": "example.com", "expInSec": exp_in_sec},
            headers=bearer(api),
        )
    assert response.status_code in (400, 422)
    assert "token" not in response.json()


# --- /tokens/verify -----------------------------------------------------------


async def test_verify_needs_the_api_key() -> None:
    """Introspection without the configured API key is refused with 401."""
    async with running(create_app(profile_settings())) as client:
        response = await client.post("/tokens/verify", json={"token": "x.y.z"})
    assert (response.status_code, response.json()["error"]) == (401, "unauthorized")


async def test_verify_reports_valid_tokens_and_why_others_fail() -> None:
    """A valid token comes back with its profile and claims; a refused one with code and detail."""
    settings = profile_settings()
    key = bearer(settings.verify_api_key or "")
    async with running(create_app(settings)) as client:
        token = (await client.get("/videosdk/token")).json()["token"]
        valid = await client.post("/tokens/verify", json={"token": token}, headers=key)
        as_ccai = await client.post(
            "/tokens/verify", json={"token": token, "profile": "ccai"}, headers=key
        )
        head, _, signature = token.rpartition(".")
        forged = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
        tampered = await client.post("/tokens/verify", json={"token": forged}, headers=key)
    assert set(valid.json()) == {"valid", "profile", "claims"}
    assert (valid.json()["valid"], valid.json()["profile"]) == (True, "videosdk")
    assert as_ccai.json() == {
        "valid": False,
        "profile": "ccai",
        "error": "wrong_type",
        "detail": as_ccai.json()["detail"],
    }
    assert set(tampered.json()) == {"valid", "profile", "error", "detail", "reason"}
    assert (tampered.json()["error"], tampered.json()["detail"]) == (
        "bad_signature",
        GENERIC_FAILURE,
    )


# --- rate limiting ------------------------------------------------------------


async def test_token_routes_answer_429_with_retry_after_over_the_limit() -> None:
    """Past the per-IP limit a token route answers 429, Retry-After and a JSON error."""
    app = create_app(profile_settings(rate_limit="2/minute"))
    async with running(app) as client:
        statuses = [(await client.get("/videosdk/token")).status_code for _ in range(2)]
        limited = await client.get("/auth/token")
        health = await client.get("/healthz")
    assert statuses == [200, 200]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["error"] == "rate_limited"
    assert health.status_code == 200


@pytest.mark.redis
async def test_rate_limit_is_shared_across_instances_through_redis(fresh_redis_url: str) -> None:
    """With REDIS_URL, requests to two instances count against one limit per IP."""
    settings = dataclasses.replace(
        profile_settings(rate_limit="2/minute"), redis_url=fresh_redis_url
    )
    first, second = create_app(settings), create_app(settings)
    async with running(first) as client_a, running(second) as client_b:
        assert (await client_a.get("/videosdk/token")).status_code == 200
        assert (await client_b.get("/videosdk/token")).status_code == 200
        limited = await client_a.get("/videosdk/token")
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers


async def test_rate_limit_state_per_address_does_not_grow_with_requests() -> None:
    """The limiter keeps two counters per address, not one entry per request, so a
    high limit under heavy traffic costs neither memory nor time per hit."""
    app = create_app(profile_settings(rate_limit="100000/minute"))
    async with running(app) as client:
        for _ in range(300):
            assert (await client.get("/api/jwt")).status_code == 200
    storage = app.state.token_profiles.rate_limit_storage
    assert storage.events == {}
    assert 1 <= len(storage.storage) <= 2
    assert sum(storage.storage.values()) == 300
