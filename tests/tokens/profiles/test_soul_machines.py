"""The Soul Machines profile: every claim, policies, and verify()."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import random_secret
from tokens import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimsError,
    Keyring,
    NotYetValidTokenError,
    PolicyError,
    ReservedClaimError,
    SigningKey,
    SoulMachinesClaims,
    SoulMachinesPolicy,
    SoulMachinesProfile,
    TokenCodec,
    UnknownKeyError,
    WrongIssuerError,
    WrongTypeError,
)
from tokens.claims import REGISTERED_CLAIMS
from tokens.jws import read_unverified_claims, read_unverified_header
from tokens.profiles.soul_machines import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    NBF_BACKDATE_SECONDS,
    TYP,
    normalise_session_server,
)

CONTROL = "wss://orchestrator.example.com/ws"


def profile_for(
    keyring: Keyring, *, now: float | None = None, **policy: Any
) -> SoulMachinesProfile:
    clock = time.time if now is None else (lambda: now)
    settings: dict[str, Any] = {"session_server": "dh.soulmachines.cloud", "control_url": CONTROL}
    settings.update(policy)
    return SoulMachinesProfile(TokenCodec(keyring, clock=clock), SoulMachinesPolicy(**settings))


def test_minted_token_carries_every_claim_with_the_right_type(keyring: Keyring) -> None:
    """iss, iat, nbf (backdated), exp (30 min), the sm-* claims and session_id are all present."""
    issued = profile_for(keyring).mint()
    payload = read_unverified_claims(issued.jwt)
    assert set(payload) == {
        "iss",
        "iat",
        "nbf",
        "exp",
        "sm-session-server",
        "sm-control",
        "sm-control-via-browser",
        "session_id",
    }
    assert payload["iss"] == "test-key"
    for name in ("iat", "nbf", "exp"):
        assert type(payload[name]) is int
    assert payload["nbf"] == payload["iat"] - NBF_BACKDATE_SECONDS
    assert payload["exp"] == payload["iat"] + DEFAULT_TTL_SECONDS
    assert payload["sm-session-server"] == "dh.soulmachines.cloud"
    assert payload["sm-control"] == CONTROL
    assert payload["sm-control-via-browser"] is False
    assert isinstance(payload["session_id"], str)
    assert len(payload["session_id"]) >= 22
    assert read_unverified_header(issued.jwt) == {"alg": "HS256", "typ": TYP, "kid": "test-key"}


def test_issued_token_reports_what_it_says(keyring: Keyring) -> None:
    """``IssuedToken.claims`` matches the signed payload, including the session server URL."""
    issued = profile_for(keyring).mint()
    payload = read_unverified_claims(issued.jwt)
    assert issued.claims.session_id == payload["session_id"]
    assert issued.claims.expires_at == payload["exp"]
    assert issued.session_server_url == "wss://dh.soulmachines.cloud"


def test_round_trip_returns_typed_claims(keyring: Keyring) -> None:
    """verify() of a minted token gives the same typed claims, custom claims included."""
    profile = profile_for(keyring)
    issued = profile.mint(custom_claims={"user": "ada", "plan": {"tier": 2}})
    claims = profile.verify(issued.jwt)
    assert isinstance(claims, SoulMachinesClaims)
    assert claims == issued.claims
    assert claims.custom == {"user": "ada", "plan": {"tier": 2}}
    assert claims.issuer == "test-key"
    assert claims.control_url == CONTROL
    assert claims.control_via_browser is False
    assert claims.cookie_header is None


def test_claims_read_from_a_payload_equal_the_constructors(keyring: Keyring) -> None:
    """from_payload fills every field, as SoulMachinesClaims(...) would, custom claims apart."""
    issued = profile_for(keyring, control_cookie_name="sm").mint(custom_claims={"user": "ada"})
    built = SoulMachinesClaims(
        issuer="test-key",
        issued_at=issued.claims.issued_at,
        not_before=issued.claims.not_before,
        expires_at=issued.claims.expires_at,
        session_server="dh.soulmachines.cloud",
        control_url=CONTROL,
        control_via_browser=False,
        cookie_header=f"sm={issued.claims.session_id}",
        session_id=issued.claims.session_id,
        custom={"user": "ada"},
    )
    from_payload = SoulMachinesClaims.from_payload(read_unverified_claims(issued.jwt))
    assert from_payload == built == issued.claims
    assert vars(from_payload) == vars(built)


def test_session_id_is_fresh_for_every_token(keyring: Keyring) -> None:
    """Two tokens never share a session id."""
    profile = profile_for(keyring)
    ids = {profile.mint().claims.session_id for _ in range(50)}
    assert len(ids) == 50


def test_cookie_header_claim_names_the_session(keyring: Keyring) -> None:
    """With a cookie name configured, sm-control-cookie-header is ``NAME=<session id>``."""
    profile = profile_for(keyring, control_cookie_name="sm_session")
    issued = profile.mint()
    payload = read_unverified_claims(issued.jwt)
    assert payload["sm-control-cookie-header"] == f"sm_session={issued.claims.session_id}"
    assert profile.verify(issued.jwt).cookie_header == payload["sm-control-cookie-header"]


def test_invalid_cookie_name_is_refused() -> None:
    """A cookie name with separators cannot be configured."""
    with pytest.raises(PolicyError):
        SoulMachinesPolicy(session_server="dh.soulmachines.cloud", control_cookie_name="a b;c")


def test_via_browser_flag_is_carried_in_development(keyring: Keyring) -> None:
    """Development may ask the browser to open the control socket."""
    issued = profile_for(keyring, control_via_browser=True).mint()
    assert read_unverified_claims(issued.jwt)["sm-control-via-browser"] is True


def test_via_browser_is_refused_in_production() -> None:
    """A production policy refuses sm-control-via-browser, naming the vendor variables."""
    with pytest.raises(PolicyError) as caught:
        SoulMachinesPolicy(
            session_server="dh.soulmachines.cloud",
            control_url=CONTROL,
            control_via_browser=True,
            production=True,
        )
    assert "CONTROL_VIA_BROWSER=true together with PRODUCTION_PERSONA=true" in str(caught.value)


def test_production_verify_refuses_a_via_browser_token(keyring: Keyring) -> None:
    """A development token asking for via-browser control is refused by a production verifier."""
    token = profile_for(keyring, control_via_browser=True).mint().jwt
    with pytest.raises(InvalidClaimsError):
        profile_for(keyring, production=True).verify(token)


@pytest.mark.parametrize("name", ["sm-control", "sm-custom", "SM-Thing"])
def test_custom_claims_starting_with_sm_are_refused(keyring: Keyring, name: str) -> None:
    """Custom claims cannot use the vendor's ``sm-`` prefix."""
    with pytest.raises(ReservedClaimError) as caught:
        profile_for(keyring).mint(custom_claims={name: "x"})
    assert caught.value.code == "reserved_claim"


@pytest.mark.parametrize("name", ["session_id", "iss", "exp"])
def test_custom_claims_cannot_override_server_claims(keyring: Keyring, name: str) -> None:
    """The session id and registered claims are set by the server only."""
    with pytest.raises(ReservedClaimError):
        profile_for(keyring).mint(custom_claims={name: "x"})


def test_control_url_comes_from_the_request_when_the_policy_has_none(keyring: Keyring) -> None:
    """Without a fixed control URL the request's URL is used; with neither, refused."""
    profile = profile_for(keyring, control_url=None)
    issued = profile.mint(control_url="ws://localhost:8080/ws")
    assert issued.claims.control_url == "ws://localhost:8080/ws"
    with pytest.raises(PolicyError, match="PUBLIC_URL"):
        profile.mint()


def test_fixed_control_url_wins_over_the_request(keyring: Keyring) -> None:
    """A configured PUBLIC_URL-derived control URL is not overridden by a request's host."""
    issued = profile_for(keyring).mint(control_url="ws://attacker.example/ws")
    assert issued.claims.control_url == CONTROL


@pytest.mark.parametrize(
    "url", ["http://host/ws", "wss://", "wss://host/ws?x=1", "wss://host/ws#frag", "host/ws"]
)
def test_bad_control_urls_are_refused(keyring: Keyring, url: str) -> None:
    """sm-control must be a ws(s) URL without query or fragment (the SDK appends the token),
    every time: a refused URL is not remembered as checked, and a good one minted before
    it changes nothing."""
    profile = profile_for(keyring, control_url=None)
    profile.mint(control_url="ws://good.example/ws")
    for _ in range(2):
        with pytest.raises(PolicyError):
            profile.mint(control_url=url)


def test_production_requires_wss_control() -> None:
    """Production refuses a plain ws:// control URL."""
    with pytest.raises(PolicyError, match="wss"):
        SoulMachinesPolicy(
            session_server="dh.soulmachines.cloud", control_url="ws://h/ws", production=True
        )


def test_lifetime_is_configurable_and_capped(keyring: Keyring) -> None:
    """The policy lifetime is used; callers may shorten it but not lengthen it."""
    profile = profile_for(keyring, ttl_seconds=600)
    default = profile.mint().claims
    assert default.expires_at - default.issued_at == 600
    short = profile.mint(ttl_seconds=120).claims
    assert short.expires_at - short.issued_at == 120
    with pytest.raises(PolicyError):
        profile.mint(ttl_seconds=601)
    with pytest.raises(PolicyError):
        profile.mint(ttl_seconds=10)


@pytest.mark.parametrize("ttl", [0, 59, MAX_TTL_SECONDS + 1])
def test_policy_lifetime_outside_bounds_is_refused(ttl: int) -> None:
    """TOKEN_TTL_SECONDS below a minute or above a day is refused."""
    with pytest.raises(PolicyError, match="lifetime"):
        SoulMachinesPolicy(session_server="dh.soulmachines.cloud", ttl_seconds=ttl)


@pytest.mark.parametrize(
    "value", ["dh.soulmachines.cloud", "wss://dh.soulmachines.cloud/", " dh.soulmachines.cloud/ "]
)
def test_session_server_is_normalised_to_a_host(value: str) -> None:
    """The vendor accepts a bare host; a wss:// URL or trailing slash gives the same host."""
    assert normalise_session_server(value) == "dh.soulmachines.cloud"


@pytest.mark.parametrize(
    ("value", "url", "host"),
    [
        ("dh.soulmachines.cloud", "wss://dh.soulmachines.cloud", "dh.soulmachines.cloud"),
        ("ws://127.0.0.1:9000", "ws://127.0.0.1:9000", "127.0.0.1:9000"),
        ("WS://localhost:9000/", "ws://localhost:9000", "localhost:9000"),
        ("wss://staging.example:8443", "wss://staging.example:8443", "staging.example:8443"),
        ("https://dh.soulmachines.cloud", "wss://dh.soulmachines.cloud", "dh.soulmachines.cloud"),
    ],
)
def test_session_server_url_keeps_an_explicit_ws_scheme(
    keyring: Keyring, value: str, url: str, host: str
) -> None:
    """A SESSION_SERVER given as ws:// (a local or staging server) stays ws:// in the URL the
    SDK connects to; a bare host becomes wss://. The claim carries the host, as before."""
    issued = profile_for(keyring, session_server=value).mint()
    assert issued.session_server_url == url
    assert read_unverified_claims(issued.jwt)["sm-session-server"] == host


def test_plain_ws_session_server_is_refused_in_production() -> None:
    """Production tokens send users to the session server over wss:// only."""
    with pytest.raises(PolicyError, match=r"SESSION_SERVER must use wss:// in production"):
        SoulMachinesPolicy(
            session_server="ws://dh.soulmachines.cloud", control_url=CONTROL, production=True
        )
    policy = SoulMachinesPolicy(
        session_server="wss://dh.soulmachines.cloud", control_url=CONTROL, production=True
    )
    assert policy.session_server_url == "wss://dh.soulmachines.cloud"


@pytest.mark.parametrize("value", ["", "host/with/path", "two words", "ftp://dh.example"])
def test_bad_session_servers_are_refused(value: str) -> None:
    """Empty values, paths and spaces are not host names."""
    with pytest.raises(PolicyError):
        SoulMachinesPolicy(session_server=value)


def test_expired_and_not_yet_valid_tokens_are_refused(keyring: Keyring) -> None:
    """verify() applies exp and nbf with the codec's leeway."""
    token = profile_for(keyring, now=1_800_000_000).mint().jwt
    with pytest.raises(ExpiredTokenError):
        profile_for(keyring, now=1_800_000_000 + DEFAULT_TTL_SECONDS + 60).verify(token)
    with pytest.raises(NotYetValidTokenError):
        profile_for(keyring, now=1_800_000_000 - 3600).verify(token)


def test_tampered_token_is_refused(keyring: Keyring) -> None:
    """Swapping the payload of one token into another's signature fails."""
    profile = profile_for(keyring)
    first, second = profile.mint().jwt.split("."), profile.mint().jwt.split(".")
    with pytest.raises(BadSignatureError):
        profile.verify(f"{first[0]}.{second[1]}.{first[2]}")


def test_token_of_another_type_is_refused(signing_key: SigningKey, keyring: Keyring) -> None:
    """A ``typ: JWT`` token with valid SM claims and signature is not a Soul Machines token."""
    payload = read_unverified_claims(profile_for(keyring).mint().jwt)
    token = jwt.encode(payload, signing_key.secret, "HS256", headers={"kid": signing_key.kid})
    with pytest.raises(WrongTypeError):
        profile_for(keyring).verify(token)


def test_issuer_must_match_the_signing_key(signing_key: SigningKey, keyring: Keyring) -> None:
    """``iss`` naming a different key than ``kid`` is ``wrong_issuer``."""
    payload = read_unverified_claims(profile_for(keyring).mint().jwt)
    payload["iss"] = "someone-else"
    token = TokenCodec(keyring).encode(payload, TYP)
    with pytest.raises(WrongIssuerError) as caught:
        profile_for(keyring).verify(token)
    assert caught.value.code == "wrong_issuer"


@pytest.mark.parametrize(
    ("claim", "value"),
    [("session_id", None), ("session_id", 7), ("sm-session-server", None), ("iat", "x")],
)
def test_missing_or_mistyped_claims_are_refused(keyring: Keyring, claim: str, value: Any) -> None:
    """A correctly signed token lacking the session id or with mistyped claims is refused."""
    payload = read_unverified_claims(profile_for(keyring).mint().jwt)
    if value is None:
        del payload[claim]
    else:
        payload[claim] = value
    token = TokenCodec(keyring).encode(payload, TYP)
    with pytest.raises(InvalidClaimsError):
        profile_for(keyring).verify(token)


def test_rotation_keeps_old_tokens_valid_until_the_key_is_removed(signing_key: SigningKey) -> None:
    """After rotating, tokens from the old key verify while it is listed, then ``unknown_key``."""
    old_token = profile_for(Keyring(signing_key)).mint().jwt
    new_key = SigningKey.from_text("next-key", random_secret())

    rotating = profile_for(Keyring(new_key, [signing_key]))
    assert rotating.verify(old_token).issuer == "test-key"
    assert rotating.mint().claims.issuer == "next-key"

    with pytest.raises(UnknownKeyError):
        profile_for(Keyring(new_key)).verify(old_token)


@settings(max_examples=60, deadline=None)
@given(
    custom=st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda n: n.isalpha() and n.isascii()),
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        max_size=4,
    ),
    cookie=st.none() | st.sampled_from(["sm_session", "x-ctl"]),
    via_browser=st.booleans(),
    control_path=st.text(alphabet='abc/é"\\-_~', max_size=12),
)
def test_minted_token_is_pyjwt_encode_of_its_claims_in_order(
    custom: dict[str, Any], cookie: str | None, via_browser: bool, control_path: str
) -> None:
    """mint assembles its claims JSON from pieces; the token is byte for byte
    jwt.encode of the same claims as a dict, in the documented order."""
    custom = {k: v for k, v in custom.items() if k.lower() not in REGISTERED_CLAIMS}
    key = SigningKey.from_text("kid-1", random_secret())
    profile = SoulMachinesProfile(
        TokenCodec(Keyring(key), clock=lambda: 1_700_000_000.5),
        SoulMachinesPolicy(
            "dh.soulmachines.cloud", control_via_browser=via_browser, control_cookie_name=cookie
        ),
    )
    control = f"ws://localhost:8080/{control_path}"
    issued = profile.mint(control_url=control, custom_claims=custom)
    claims: dict[str, Any] = {
        "iss": "kid-1",
        "iat": 1_700_000_000,
        "nbf": 1_700_000_000 - NBF_BACKDATE_SECONDS,
        "exp": 1_700_000_000 + DEFAULT_TTL_SECONDS,
        "sm-session-server": "dh.soulmachines.cloud",
        "sm-control": control,
        "sm-control-via-browser": via_browser,
    }
    if cookie is not None:
        claims["sm-control-cookie-header"] = f"{cookie}={issued.claims.session_id}"
    claims["session_id"] = issued.claims.session_id
    claims.update(custom)
    expected = jwt.encode(
        claims, key.secret, algorithm="HS256", headers={"typ": TYP, "kid": "kid-1"}
    )
    assert issued.jwt == expected
    assert issued.claims == profile.verify(issued.jwt)
