"""Fuzzing every profile's verifier with mutated tokens: none is ever accepted, and
every refusal is a ``tokens.InvalidTokenError`` (never another exception)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import profile_factories
from tests.fuzz_stats import record
from tokens import InvalidTokenError
from tokens.jws import MAX_TOKEN_BYTES
from tokens.profiles.voicegain import VoicegainIdentity
from tokens.registry import ProfileRegistry, ProfileVerifier

FUZZ = settings(
    max_examples=150,
    deadline=None,  # the first examples pay for imports and warm caches
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Target:
    """One profile's verifier, a valid token for it, and the secret that signed it."""

    name: str
    verifier: ProfileVerifier
    token: str
    secret: bytes
    kid: str
    required: tuple[str, ...]


def _build_targets() -> list[Target]:
    sm = profile_factories.soul_machines()
    ccai = profile_factories.ccai()
    videosdk = profile_factories.videosdk()
    voicegain = profile_factories.voicegain()
    from tokens.profiles.ccai import CcaiUser
    from tokens.profiles.videosdk import VideoSdkGrant

    api_token = asyncio.run(voicegain.regenerate("acct-1", "ctx-1"))
    identity = asyncio.run(voicegain.verify_api_token(api_token))
    short = asyncio.run(
        voicegain.mint_short(
            VoicegainIdentity(identity.account_id, identity.context_id, identity.token_id, "api"),
            aud="example.com",
            exp_in_sec=600,
        )
    )

    def secret(profile: Any) -> bytes:
        value: bytes = profile.codec.keyring.active.secret
        return value

    return [
        Target(
            "soul-machines",
            ProfileVerifier(sm),
            sm.mint().jwt,
            secret(sm),
            "sm-key",
            ("iss", "iat", "nbf", "exp", "sm-session-server", "session_id"),
        ),
        Target(
            "ccai",
            ProfileVerifier(ccai),
            ccai.mint(CcaiUser("user-1")),
            secret(ccai),
            "ccai",
            ("iss", "iat", "exp", "identifier"),
        ),
        Target(
            "videosdk",
            ProfileVerifier(videosdk),
            videosdk.mint(VideoSdkGrant()),
            secret(videosdk),
            "videosdk",
            ("apikey", "permissions", "iat", "exp"),
        ),
        Target(
            "voicegain-api",
            ProfileVerifier(voicegain),
            api_token,
            secret(voicegain),
            "voicegain",
            ("accountId", "contextId", "jti", "iat"),
        ),
        Target(
            "voicegain-short",
            ProfileVerifier(voicegain),
            short.token,
            secret(voicegain),
            "voicegain",
            ("accountId", "contextId", "jti", "gen", "aud", "iat", "exp"),
        ),
    ]


TARGETS = _build_targets()
REGISTRY = ProfileRegistry(
    [TARGETS[0].verifier, TARGETS[1].verifier, TARGETS[2].verifier, TARGETS[3].verifier]
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def sign(header: bytes, payload: bytes, secret: bytes) -> str:
    """A compact JWS over raw header and payload bytes, HMAC-SHA256 signed with ``secret``."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def parts(target: Target) -> tuple[dict[str, Any], dict[str, Any]]:
    header_segment, payload_segment, _ = target.token.split(".")
    return json.loads(unb64(header_segment)), json.loads(unb64(payload_segment))


def verify(target: Target, token: str) -> Any:
    return asyncio.run(target.verifier.verify(token, origin=None))


def assert_refused(target: Target, token: str) -> None:
    with pytest.raises(InvalidTokenError) as refused:
        verify(target, token)
    assert refused.value.code != InvalidTokenError.code  # always a specific subclass
    result = asyncio.run(REGISTRY.verify(token))
    assert not result.valid


# --- strategies ------------------------------------------------------------------

target_index = st.integers(min_value=0, max_value=len(TARGETS) - 1)
lone_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
junk_text = st.text(max_size=40) | lone_surrogates
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | junk_text
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(junk_text, inner)
)
BAD_ALGS = [
    "none",
    "None",
    "NONE",
    "nOnE",
    "hs256",
    "Hs256",
    "HS256 ",
    " HS256",
    "HS256\x00",
    "HS384",
    "HS512",
    "RS256",
    "ES256",
    "PS256",
    "EdDSA",
    "",
    None,
    256,
    True,
    ["HS256"],
    {"alg": "HS256"},
]
HOSTILE_KIDS = [
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "' OR 1=1 --",
    '"; DROP TABLE keys; --',
    "http://attacker.example/key",
    "file:///dev/zero",
    "sm-key\x00",
    "SM-KEY",
    " sm-key",
    "k" * 10_000,
    "",
    0,
    1.5,
    True,
    [],
    ["sm-key"],
    {"kid": "sm-key"},
]
bad_alg = st.sampled_from(BAD_ALGS) | junk_text.filter(lambda a: a != "HS256")
bad_kid = st.sampled_from(HOSTILE_KIDS) | junk_text.filter(
    lambda k: k not in {t.kid for t in TARGETS}
)
bad_crit = st.sampled_from([["exp"], ["b64"], ["zzz"], [], "exp", None, 1])


@st.composite
def bad_header_token(draw: st.DrawFn) -> tuple[Target, str]:
    """A valid token re-signed with the right key but one header field broken."""
    target = TARGETS[draw(target_index)]
    header, claims = parts(target)
    broken = draw(st.sampled_from(["alg", "typ", "kid", "crit", "drop-alg", "drop-typ"]))
    if broken == "alg":
        header["alg"] = draw(bad_alg)
    elif broken == "typ":
        own = target.verifier.typs
        header["typ"] = draw(
            st.sampled_from(
                ["sm-control+jwt", "ccai+jwt", "videosdk+jwt", "vg-api+jwt", "JWT"]
            ).filter(lambda t: t not in own)
            | st.sampled_from([None, 1, [], "SM-CONTROL+JWT", " sm-control+jwt"])
        )
    elif broken == "kid":
        header["kid"] = draw(bad_kid)
    elif broken == "crit":
        header["crit"] = draw(bad_crit)
    else:
        header.pop(broken.removeprefix("drop-"))
    if draw(st.booleans()):  # an extra, harmless-looking member
        header[draw(junk_text)] = draw(json_values)
        if header.get("alg") == "HS256" and broken in ("alg", "drop-alg"):
            header["alg"] = "HS384"
    signature_mode = draw(st.sampled_from(["resign", "original", "empty"]))
    header_bytes = json.dumps(header).encode()
    payload_bytes = json.dumps(claims).encode()
    if signature_mode == "resign":
        token = sign(header_bytes, payload_bytes, target.secret)
    else:
        signature = "" if signature_mode == "empty" else target.token.rsplit(".", 1)[1]
        token = f"{b64(header_bytes)}.{b64(payload_bytes)}.{signature}"
    return target, token


BAD_NUMBERS = ["1800000000", "", True, False, None, [1], {"n": 1}, float("inf"), -float("inf")]


@st.composite
def bad_claims_token(draw: st.DrawFn) -> tuple[Target, str]:
    """A token correctly signed with the profile's key whose claims break a rule."""
    target = TARGETS[draw(target_index)]
    header, claims = parts(target)
    header_bytes = json.dumps(header).encode()
    rule = draw(
        st.sampled_from(
            ["not-object", "duplicate", "numeric", "missing", "expired", "future", "non-utf8"]
        )
    )
    if rule == "not-object":
        payload = json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    elif rule == "duplicate":
        name = draw(st.sampled_from(sorted(claims)))
        body = json.dumps(claims)
        extra = json.dumps({name: draw(json_values)})[1:-1]
        payload = (body[:-1] + ", " + extra + "}").encode()
    elif rule == "numeric":
        name = draw(st.sampled_from(["exp", "iat", "nbf"]))
        value = draw(st.sampled_from(BAD_NUMBERS) | st.text(max_size=12))
        claims[name] = value
        if value in (float("inf"), -float("inf")):
            text = json.dumps({name: 1})[1:-1].replace("1", "1e999" if value > 0 else "-1e999")
            del claims[name]
            payload = (json.dumps(claims)[:-1] + ", " + text + "}").encode()
        else:
            payload = json.dumps(claims).encode()
    elif rule == "missing":
        del claims[draw(st.sampled_from(target.required))]
        payload = json.dumps(claims).encode()
    elif rule == "expired":
        claims["exp"] = claims["iat"] - draw(st.integers(min_value=11, max_value=10**9))
        payload = json.dumps(claims).encode()
    elif rule == "future":
        claims[draw(st.sampled_from(["nbf", "iat"]))] = claims["iat"] + draw(
            st.integers(min_value=3600, max_value=10**9)
        )
        payload = json.dumps(claims).encode()
    else:
        raw = json.dumps(claims).encode()
        at = draw(st.integers(min_value=1, max_value=len(raw) - 1))
        payload = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[at:]
    return target, sign(header_bytes, payload, target.secret)


@st.composite
def mangled_token(draw: st.DrawFn) -> tuple[Target, str]:
    """A valid token after a blind mutation: bit flips, swaps, truncation, junk, padding."""
    target = TARGETS[draw(target_index)]
    token = target.token
    how = draw(
        st.sampled_from(["flip", "swap", "truncate", "insert", "oversize", "foreign", "none"])
    )
    if how == "flip":
        data = bytearray(token.encode("ascii"))
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            index = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[index] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        mutated = data.decode("latin-1")
    elif how == "swap":
        segments = token.split(".")
        order = draw(st.permutations([0, 1, 2]).filter(lambda p: list(p) != [0, 1, 2]))
        mutated = ".".join(segments[i] for i in order)
    elif how == "truncate":
        mutated = token[: draw(st.integers(min_value=0, max_value=len(token) - 1))]
    elif how == "insert":
        at = draw(st.integers(min_value=0, max_value=len(token)))
        mutated = token[:at] + draw(st.text(min_size=1, max_size=8)) + token[at:]
    elif how == "oversize":
        mutated = token + "A" * draw(st.integers(min_value=MAX_TOKEN_BYTES, max_value=50_000))
    elif how == "foreign":
        other = TARGETS[draw(target_index)]
        mine, theirs = token.split("."), other.token.split(".")
        slot = draw(st.integers(min_value=0, max_value=2))
        mine[slot] = theirs[slot]
        mutated = ".".join(mine)
    else:
        header, claims = parts(target)
        header["alg"] = draw(st.sampled_from(["none", "None", "NONE"]))
        mutated = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
    if mutated == token:
        mutated = token + "."
    return target, mutated


oversized_claims = st.builds(
    lambda char, size: char * size,
    st.characters(codec="utf-8"),
    st.integers(min_value=MAX_TOKEN_BYTES, max_value=3 * MAX_TOKEN_BYTES),
)


# --- tests -----------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_the_unmutated_tokens_are_accepted(target: Target) -> None:
    """Each profile accepts its own valid token, so the refusals below mean something."""
    assert verify(target, target.token)
    header, claims = parts(target)
    resigned = sign(json.dumps(header).encode(), json.dumps(claims).encode(), target.secret)
    assert verify(target, resigned)


@FUZZ
@given(case=mangled_token())
def test_blindly_mutated_tokens_are_refused(case: tuple[Target, str]) -> None:
    """Bit flips, swapped or foreign segments, truncation, junk, 'none' and oversize never pass."""
    record("tokens: blind mutations (flip/swap/truncate/junk/none/oversize)")
    assert_refused(*case)


@FUZZ
@given(case=bad_header_token())
def test_tokens_with_a_broken_header_are_refused_even_when_signed(
    case: tuple[Target, str],
) -> None:
    """A wrong alg/typ, a hostile kid or a crit member is refused, whatever the signature."""
    record("tokens: broken header (alg/typ/kid/crit), re-signed or not")
    assert_refused(*case)


@FUZZ
@given(case=bad_claims_token())
def test_correctly_signed_tokens_with_bad_claims_are_refused(case: tuple[Target, str]) -> None:
    """Signed with the right key but non-object, duplicate, mistyped or missing claims: refused."""
    record("tokens: bad claims, correctly signed")
    assert_refused(*case)


@FUZZ
@given(index=target_index, filler=oversized_claims)
def test_a_correctly_signed_oversized_token_is_refused(index: int, filler: str) -> None:
    """A token over the size limit is refused before any parsing, even with a valid signature."""
    record("tokens: oversized, correctly signed")
    target = TARGETS[index]
    header, claims = parts(target)
    claims["pad"] = filler
    assert_refused(
        target, sign(json.dumps(header).encode(), json.dumps(claims).encode(), target.secret)
    )


@FUZZ
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_is_refused_by_every_verifier(text: str) -> None:
    """Any string at all (dots, surrogates, control characters) is refused with a typed error."""
    record("tokens: arbitrary text")
    for target in TARGETS:
        assert_refused(target, text)


REGRESSIONS: list[tuple[str, Callable[[Target], str]]] = [
    (
        "kid is a number",
        lambda t: f"{b64(json.dumps({**parts(t)[0], 'kid': 1}).encode())}.e30.sig",
    ),
    (
        "unknown crit extension",
        lambda t: f"{b64(json.dumps({**parts(t)[0], 'crit': ['zzz']}).encode())}.e30.sig",
    ),
    ("payload is not JSON", lambda t: sign(json.dumps(parts(t)[0]).encode(), b"{", t.secret)),
    (
        "payload has a 5000-digit number",
        lambda t: sign(json.dumps(parts(t)[0]).encode(), b'{"exp":' + b"9" * 5000 + b"}", t.secret),
    ),
    ("exp is 1e999 (never expires)", lambda t: with_raw_claim(t, "exp", "1e999")),
]


def with_raw_claim(target: Target, name: str, raw_json: str) -> str:
    """``target``'s token re-signed with claim ``name`` set to the literal JSON ``raw_json``."""
    header, claims = parts(target)
    claims.pop(name, None)
    payload = json.dumps(claims)[:-1] + f', "{name}": {raw_json}}}'
    return sign(json.dumps(header).encode(), payload.encode(), target.secret)


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
@pytest.mark.parametrize("make", [m for _, m in REGRESSIONS], ids=[n for n, _ in REGRESSIONS])
def test_inputs_that_once_escaped_as_other_exceptions_are_typed_refusals(
    target: Target, make: Callable[[Target], str]
) -> None:
    """PyJWT's own errors, JSON/int-limit ValueErrors and infinite times become typed refusals."""
    assert_refused(target, make(target))


@pytest.mark.parametrize("target", TARGETS[3:], ids=[t.name for t in TARGETS[3:]])
def test_a_voicegain_token_id_with_a_lone_surrogate_is_refused_not_a_crash(target: Target) -> None:
    """A signed jti/gen of "\\ud800" once made hmac.compare_digest raise TypeError; now
    claims holding a lone surrogate are malformed before any comparison."""
    name = "jti" if target.name == "voicegain-api" else "gen"
    with pytest.raises(InvalidTokenError) as refused:
        verify(target, with_raw_claim(target, name, '"\\ud800"'))
    assert refused.value.code == "malformed"
