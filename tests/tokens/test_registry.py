"""The profile registry: names, typ routing, and no token crossing between profiles."""

from __future__ import annotations

import pytest

from tests import profile_factories as make
from tokens.errors import UnknownProfileError, WrongTypeError
from tokens.profiles.ccai import CcaiUser
from tokens.profiles.videosdk import GENERIC_FAILURE, VideoSdkGrant
from tokens.registry import ProfileRegistry, ProfileVerifier, parse_profile_names

pytestmark = pytest.mark.anyio

# The platform profiles share one secret, so only the typ rule tells their tokens apart.
SHARED = make.secret()


async def _tokens_and_registry() -> tuple[dict[str, str], ProfileRegistry]:
    sm = make.soul_machines()
    ccai = make.ccai(SHARED)
    videosdk = make.videosdk(SHARED)
    voicegain = make.voicegain(SHARED)
    tokens = {
        "soul-machines": sm.mint().jwt,
        "ccai": ccai.mint(CcaiUser("u-1")),
        "videosdk": videosdk.mint(VideoSdkGrant()),
        "voicegain": await voicegain.regenerate("acct-1", "ctx-1"),
    }
    registry = ProfileRegistry(
        [
            ProfileVerifier(sm),
            ProfileVerifier(ccai),
            ProfileVerifier(videosdk),
            ProfileVerifier(voicegain),
        ]
    )
    return tokens, registry


async def test_each_token_verifies_under_its_own_profile_by_typ() -> None:
    """Without a profile name, the token's typ picks the profile that accepts it."""
    tokens, registry = await _tokens_and_registry()
    for name, token in tokens.items():
        result = await registry.verify(token)
        assert (result.valid, result.profile) == (True, name)


@pytest.mark.parametrize("minted", ["soul-machines", "ccai", "videosdk", "voicegain"])
@pytest.mark.parametrize("verifier", ["soul-machines", "ccai", "videosdk", "voicegain"])
async def test_a_token_of_one_profile_is_refused_by_every_other(minted: str, verifier: str) -> None:
    """Even under the same secret, another profile's verifier refuses the token as wrong_type."""
    tokens, registry = await _tokens_and_registry()
    result = await registry.verify(tokens[minted], profile=verifier)
    if minted == verifier:
        assert result.valid
    else:
        assert isinstance(result.error, WrongTypeError)
        assert registry.failure(result)["error"] == "wrong_type"


async def test_videosdk_failures_use_the_vendor_wording() -> None:
    """A refused token, checked as VideoSDK, says "Token is invalid or expired" plus why."""
    tokens, registry = await _tokens_and_registry()
    result = await registry.verify(tokens["ccai"], profile="videosdk")
    failure = registry.failure(result)
    assert set(failure) == {"error", "detail", "reason"}
    assert failure["detail"] == GENERIC_FAILURE


async def test_token_of_a_disabled_profile_is_refused() -> None:
    """A registry without a profile refuses its tokens by typ and its name outright."""
    tokens, _ = await _tokens_and_registry()
    registry = ProfileRegistry([ProfileVerifier(make.soul_machines())])
    result = await registry.verify(tokens["ccai"])
    assert (result.valid, result.profile) == (False, None)
    assert isinstance(result.error, WrongTypeError)
    with pytest.raises(UnknownProfileError):
        await registry.verify(tokens["ccai"], profile="ccai")


def test_profile_names_parse_in_order_with_soul_machines_as_default() -> None:
    """TOKEN_PROFILES is a comma list of known names; empty means Soul Machines only."""
    assert parse_profile_names(" CCAI, videosdk,ccai ") == ("ccai", "videosdk")
    assert parse_profile_names("") == ("soul-machines",)
    with pytest.raises(UnknownProfileError):
        parse_profile_names("soul-machines,zoom")
