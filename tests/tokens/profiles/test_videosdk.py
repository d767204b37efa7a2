"""The VideoSDK profile: claims, permissions and roles, expiry forms, failure wording."""

from __future__ import annotations

import pytest

from tests.profile_factories import VIDEOSDK_API_KEY, secret, videosdk
from tokens.durations import parse_duration
from tokens.errors import ClaimsError, ExpiredTokenError, InvalidClaimsError, PolicyError
from tokens.jws import read_unverified_claims, read_unverified_header
from tokens.profiles.videosdk import GENERIC_FAILURE, VideoSdkGrant, VideoSdkPolicy, failure_body


def test_minimal_token_has_exactly_apikey_permissions_iat_exp() -> None:
    """Without options the token has apikey, the default permission, iat and exp only."""
    claims = read_unverified_claims(videosdk().mint(VideoSdkGrant()))
    assert set(claims) == {"apikey", "permissions", "iat", "exp"}
    assert claims["apikey"] == VIDEOSDK_API_KEY
    assert claims["permissions"] == ["allow_join"]
    assert claims["exp"] == claims["iat"] + 120 * 60


def test_full_token_has_every_optional_claim() -> None:
    """version, roomId, participantId and roles appear when asked for, under the vendor names."""
    grant = VideoSdkGrant(
        permissions=("ask_join",),
        room_id="2kyv-gzay-64pg",
        participant_id="lxvdplwt",
        roles=("crawler", "rtc"),
        version=2,
        ttl_seconds=600,
    )
    token = videosdk().mint(grant)
    claims = read_unverified_claims(token)
    assert set(claims) == {
        "apikey",
        "permissions",
        "iat",
        "exp",
        "version",
        "roomId",
        "participantId",
        "roles",
    }
    assert (claims["roomId"], claims["participantId"]) == ("2kyv-gzay-64pg", "lxvdplwt")
    assert (claims["roles"], claims["version"]) == (["crawler", "rtc"], 2)
    assert claims["exp"] - claims["iat"] == 600
    assert read_unverified_header(token)["typ"] == "videosdk+jwt"


@pytest.mark.parametrize(
    "grant",
    [
        VideoSdkGrant(permissions=("allow_everything",)),
        VideoSdkGrant(permissions=()),
        VideoSdkGrant(roles=("admin",)),
        VideoSdkGrant(version=3),
        VideoSdkGrant(room_id="has space"),
    ],
    ids=["unknown-permission", "no-permission", "unknown-role", "version", "room-id"],
)
def test_values_outside_the_vendor_schema_are_refused(grant: VideoSdkGrant) -> None:
    """Permissions, roles, version and ids outside the documented schema are refused."""
    with pytest.raises(ClaimsError):
        videosdk().mint(grant)


def test_moderator_permission_needs_the_deployment_to_allow_it() -> None:
    """allow_mod is refused by the default policy and granted when configured."""
    with pytest.raises(PolicyError):
        videosdk().mint(VideoSdkGrant(permissions=("allow_mod",)))
    policy = VideoSdkPolicy(VIDEOSDK_API_KEY, allowed_permissions=("allow_join", "allow_mod"))
    token = videosdk(policy=policy).mint(VideoSdkGrant(permissions=("allow_mod",)))
    assert read_unverified_claims(token)["permissions"] == ["allow_mod"]


@pytest.mark.parametrize("ttl", [59, 120 * 60 + 1])
def test_requested_lifetime_is_bounded_by_the_policy(ttl: int) -> None:
    """A client may shorten the lifetime, never below a minute nor above the configured one."""
    with pytest.raises(PolicyError):
        videosdk().mint(VideoSdkGrant(ttl_seconds=ttl))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("120m", 7200), ("2h", 7200), ("3600", 3600), ("90s", 90), ("1d", 86400), (45, 45)],
)
def test_duration_forms(text: str | int, seconds: int) -> None:
    """Expiry is accepted as plain seconds or with an s/m/h/d unit, as the vendor writes it."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "2 weeks", "-5m", "1.5h", "m"])
def test_bad_durations_are_refused(text: str) -> None:
    """Anything but a positive whole number with an optional unit is refused."""
    with pytest.raises(PolicyError):
        parse_duration(text)


def test_expired_token_fails_with_vendor_wording_and_reason() -> None:
    """A refused token reads "Token is invalid or expired" with the specific reason alongside."""
    key = secret()
    token = videosdk(key, clock=lambda: 1_000_000.0).mint(VideoSdkGrant())
    with pytest.raises(ExpiredTokenError) as caught:
        videosdk(key, clock=lambda: 1_000_000.0 + 7200 + 60).verify(token)
    body = failure_body(caught.value)
    assert body == {"error": "expired", "detail": GENERIC_FAILURE, "reason": str(caught.value)}
    assert "expired" in body["reason"]


def test_token_for_another_api_key_is_refused() -> None:
    """A token signed with our secret but another apikey is refused."""
    key = secret()
    other = videosdk(key, policy=VideoSdkPolicy("someone-else")).mint(VideoSdkGrant())
    with pytest.raises(InvalidClaimsError):
        videosdk(key).verify(other)
