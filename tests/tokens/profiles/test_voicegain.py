"""Voicegain-style API tokens: regeneration revokes, short-lived tokens, origin checks."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.backend.token_generations import RedisGenerationStore
from tests.live_server import free_port
from tests.profile_factories import secret, voicegain
from tokens.errors import (
    ExpiredTokenError,
    PolicyError,
    RevokedTokenError,
    WrongAudienceError,
    WrongTypeError,
)
from tokens.generation_store import MemoryGenerationStore
from tokens.jws import read_unverified_claims, read_unverified_header
from tokens.registry import ProfileRegistry, ProfileVerifier
from tokens.web.errors import EXCEPTION_HANDLERS
from tokens.web.verify import VerifyEndpoint

pytestmark = pytest.mark.anyio


async def test_api_token_has_exactly_account_context_jti_iat() -> None:
    """A long-lived token names the account and context, has an id and no expiry."""
    token = await voicegain().regenerate("acct-1", "ctx-1")
    claims = read_unverified_claims(token)
    assert set(claims) == {"accountId", "contextId", "jti", "iat"}
    assert (claims["accountId"], claims["contextId"]) == ("acct-1", "ctx-1")
    assert read_unverified_header(token)["typ"] == "vg-api+jwt"


async def test_regenerating_revokes_the_previous_token() -> None:
    """After regeneration the old token is refused as revoked and the new one accepted."""
    profile = voicegain()
    old = await profile.regenerate("acct-1", "ctx-1")
    new = await profile.regenerate("acct-1", "ctx-1")
    with pytest.raises(RevokedTokenError) as caught:
        await profile.verify(old)
    assert caught.value.code == "revoked"
    assert (await profile.verify(new)).kind == "api"


async def test_regenerating_one_context_leaves_another_alone() -> None:
    """Only the regenerated (account, context) pair loses its old token."""
    profile = voicegain()
    other = await profile.regenerate("acct-1", "ctx-2")
    await profile.regenerate("acct-1", "ctx-1")
    await profile.regenerate("acct-1", "ctx-1")
    assert (await profile.verify(other)).context_id == "ctx-2"


async def test_token_unknown_to_the_store_is_refused() -> None:
    """A token the store never recorded (a fresh in-memory store) is refused as revoked."""
    key = secret()
    token = await voicegain(key).regenerate("acct-1", "ctx-1")
    with pytest.raises(RevokedTokenError):
        await voicegain(key, store=MemoryGenerationStore()).verify(token)


@pytest.mark.redis
async def test_regeneration_revokes_across_instances_sharing_redis(fresh_redis_url: str) -> None:
    """Two instances on one Redis: a token regenerated on one revokes the old on the other."""
    key = secret()
    store_a = RedisGenerationStore.from_url(fresh_redis_url)
    store_b = RedisGenerationStore.from_url(fresh_redis_url)
    try:
        first, second = voicegain(key, store_a), voicegain(key, store_b)
        old = await first.regenerate("acct-1", "ctx-1")
        assert (await second.verify(old)).account_id == "acct-1"
        new = await second.regenerate("acct-1", "ctx-1")
        with pytest.raises(RevokedTokenError):
            await first.verify(old)
        assert (await first.verify(new)).kind == "api"
    finally:
        await store_a.aclose()
        await store_b.aclose()


async def test_short_lived_token_claims() -> None:
    """A short-lived token carries aud, exp = iat + expInSec and its parent's id as gen."""
    profile = voicegain()
    api = await profile.verify(await profile.regenerate("acct-1", "ctx-1"))
    issued = await profile.mint_short(api, aud="*.Example.com", exp_in_sec=300)
    claims = read_unverified_claims(issued.token)
    assert set(claims) == {"accountId", "contextId", "jti", "gen", "aud", "iat", "exp"}
    assert (claims["aud"], claims["gen"]) == ("*.example.com", api.token_id)
    assert claims["exp"] == claims["iat"] + 300 == issued.expires_at
    assert read_unverified_header(issued.token)["typ"] == "vg-short+jwt"


@pytest.mark.parametrize("exp_in_sec", [0, -1, 86401])
async def test_exp_in_sec_is_bounded(exp_in_sec: int) -> None:
    """expInSec must lie between 1 and 86400 seconds."""
    profile = voicegain()
    api = await profile.verify(await profile.regenerate("acct-1", "ctx-1"))
    with pytest.raises(PolicyError):
        await profile.mint_short(api, aud="example.com", exp_in_sec=exp_in_sec)


@pytest.mark.parametrize(
    ("origin", "refused"),
    [
        (None, False),
        ("https://app.example.com", False),
        ("https://evil-example.com", True),
        ("https://example.com.evil.tld", True),
    ],
)
async def test_short_lived_aud_is_checked_only_when_origin_is_present(
    origin: str | None, refused: bool
) -> None:
    """Without Origin the token is accepted; with one, its host must match aud."""
    profile = voicegain()
    api = await profile.verify(await profile.regenerate("acct-1", "ctx-1"))
    issued = await profile.mint_short(api, aud="*.example.com", exp_in_sec=300)
    if refused:
        with pytest.raises(WrongAudienceError):
            await profile.verify(issued.token, origin=origin)
    else:
        assert (await profile.verify(issued.token, origin=origin)).kind == "short"


async def test_long_lived_token_is_refused_from_a_browser_origin() -> None:
    """A long-lived token presented with an Origin header is refused as wrong_audience."""
    profile = voicegain()
    token = await profile.regenerate("acct-1", "ctx-1")
    with pytest.raises(WrongAudienceError):
        await profile.verify(token, origin="https://example.com")


async def test_regeneration_revokes_derived_short_lived_tokens() -> None:
    """Short-lived tokens minted from a regenerated API token are refused as revoked."""
    profile = voicegain()
    api = await profile.verify(await profile.regenerate("acct-1", "ctx-1"))
    issued = await profile.mint_short(api, aud="example.com", exp_in_sec=300)
    await profile.regenerate("acct-1", "ctx-1")
    with pytest.raises(RevokedTokenError):
        await profile.verify(issued.token)


async def test_short_lived_token_cannot_mint_another() -> None:
    """Only a long-lived token may mint short-lived ones, so browsers cannot extend them."""
    profile = voicegain()
    api = await profile.verify(await profile.regenerate("acct-1", "ctx-1"))
    issued = await profile.mint_short(api, aud="example.com", exp_in_sec=300)
    with pytest.raises(WrongTypeError):
        await profile.verify_api_token(issued.token)


async def test_short_lived_token_expires() -> None:
    """A short-lived token is refused once expInSec has passed."""
    key, store = secret(), MemoryGenerationStore()
    profile = voicegain(key, store, clock=lambda: 1_000_000.0)
    api = await profile.verify(await profile.regenerate("acct-1", "ctx-1"))
    issued = await profile.mint_short(api, aud="example.com", exp_in_sec=60)
    with pytest.raises(ExpiredTokenError):
        await voicegain(key, store, clock=lambda: 1_000_000.0 + 120).verify(issued.token)


async def test_wildcard_aud_is_allowed_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """aud='*' is accepted, as the vendor allows, but logged as a warning."""
    profile = voicegain()
    api = await profile.verify(await profile.regenerate("acct-1", "ctx-1"))
    with caplog.at_level(logging.WARNING, logger="tokens.voicegain"):
        issued = await profile.mint_short(api, aud="*", exp_in_sec=60)
    assert any("aud='*'" in record.getMessage() for record in caplog.records)
    assert (await profile.verify(issued.token, origin="https://any.example.org")).kind == "short"


def test_verify_route_answers_503_while_the_token_store_is_unreachable() -> None:
    """POST /tokens/verify of a Voicegain token with Redis unreachable: 503
    store_unavailable in the usual error shape, not a 500."""
    key, api_key = secret(), secret()
    minted = asyncio.run(voicegain(key).regenerate("acct", "ctx"))
    store = RedisGenerationStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    registry = ProfileRegistry([ProfileVerifier(voicegain(key, store=store))])
    routes = VerifyEndpoint(registry, api_key=api_key).routes()
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as client:
        answer = client.post(
            "/tokens/verify",
            json={"token": minted},
            headers={"Authorization": f"Bearer {api_key}"},
        )
    assert answer.status_code == 503
    assert answer.json()["error"] == "store_unavailable"
