"""tokens.compact reads tokens once, yet refuses and accepts exactly what PyJWT
did (tests/tokens/pyjwt_reference.py): same outcome, same error, same words."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import random_secret
from tests.tokens import pyjwt_reference as reference
from tokens import Keyring, SigningKey, TokenCodec
from tokens.compact import _HEADERS, _segment
from tokens.errors import MalformedTokenError
from tokens.jws import read_unverified_claims, read_unverified_header

TYP = "test+jwt"
NOW = 1_800_000_000
KEY = SigningKey.from_text("test-key", random_secret())
OTHER = SigningKey.from_text("other-key", random_secret())
CODEC = TokenCodec(Keyring(KEY, [OTHER]), clock=lambda: NOW)
HEADER = {"alg": "HS256", "typ": TYP, "kid": "test-key"}
CLAIMS = {"iss": "test-key", "iat": NOW, "nbf": NOW - 5, "exp": NOW + 600}
PARITY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def signed(header: Any = HEADER, claims: Any = CLAIMS, *, secret: bytes = KEY.secret) -> str:
    """A compact JWS over any header and claims (JSON values or raw bytes), HS256-signed."""
    signing_input = f"{b64(raw(header))}.{b64(raw(claims))}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def with_segment(token: str, index: int, segment: str) -> str:
    parts = token.split(".")
    parts[index] = segment
    return ".".join(parts)


def outcome(read: Callable[[], Any]) -> tuple[str, Any]:
    """What ``read()`` returns, or the class and words of what it raises."""
    try:
        return ("ok", read())
    except Exception as exc:  # any exception is an outcome to compare
        return (type(exc).__name__, str(exc))


def assert_same_as_pyjwt(token: Any) -> None:
    """Header, claims and verification (by kid, by iss, by the active key) agree."""
    _HEADERS.clear()  # the first read of a header, then the remembered one
    for _ in range(2):
        for ours, pyjwts in (
            (partial(read_unverified_header, token), partial(reference.read_header, token)),
            (partial(read_unverified_claims, token), partial(reference.read_claims, token)),
            (partial(CODEC.decode, token, TYP), partial(reference.decode, CODEC, token, TYP)),
            (
                partial(CODEC.decode, token, TYP, kid_fallback_claim=None),
                partial(reference.decode, CODEC, token, TYP, kid_fallback_claim=None),
            ),
        ):
            assert outcome(ours) == outcome(pyjwts)


VALID = signed()
NO_KID = {"alg": "HS256", "typ": TYP}
B64_FALSE = {**HEADER, "b64": False, "crit": ["b64"]}
EDGE_CASES: dict[str, Any] = {
    "a valid token": VALID,
    "a valid token without kid": signed(NO_KID),
    "not a string": b"a.b.c",
    "empty": "",
    "two segments": VALID.rsplit(".", 1)[0],
    "four segments": VALID + ".e30",
    "empty segments": "..",
    "a trailing dot": VALID + ".",
    "trailing garbage": VALID + "x",
    "trailing newline": VALID + "\n",
    "leading space": " " + VALID,
    "trailing padding": VALID + "==",
    "a padded header": with_segment(VALID, 0, VALID.split(".")[0] + "="),
    "a padded signature": VALID + "=",
    "three padding characters": with_segment(VALID, 1, VALID.split(".")[1] + "==="),
    "padding inside a segment": with_segment(VALID, 1, "e3=0"),
    "a segment of 4n+1 characters": with_segment(VALID, 1, "e30aa"),
    "stray bits in the last group": with_segment(VALID, 1, "e31"),
    "standard base64 characters": with_segment(VALID, 2, VALID.split(".")[2] + "+/"),
    "a space in a segment": with_segment(VALID, 1, "e3 0"),
    "a non-ASCII character": with_segment(VALID, 0, "é" + VALID.split(".")[0]),
    "a lone surrogate in the token": VALID[:5] + "\ud800" + VALID[5:],
    "a NUL byte": VALID[:5] + "\x00" + VALID[6:],
    "a header array": signed([]),
    "a header string": signed("x"),
    "a header null": signed(None),
    "claims array": signed(HEADER, [1]),
    "claims number": signed(HEADER, 1),
    "claims array without kid": signed(NO_KID, [1]),
    "header not JSON": signed(b"{"),
    "claims not JSON": signed(HEADER, b"{"),
    "claims not JSON without kid": signed(NO_KID, b"{"),
    "an empty header": signed(b""),
    "an empty payload": VALID.split(".")[0] + ".." + VALID.split(".")[2],
    "b64 false with crit and no payload": f"{b64(raw(B64_FALSE))}..{VALID.split('.')[2]}",
    "b64 false with a payload": signed(B64_FALSE),
    "b64 false without crit": f"{b64(raw({**HEADER, 'b64': False}))}..sig",
    "b64 false without kid": f"{b64(raw({**NO_KID, 'b64': False, 'crit': ['b64']}))}..sig",
    "b64 zero": signed({**HEADER, "b64": 0}),
    "crit b64 with b64 true": signed({**HEADER, "b64": True, "crit": ["b64"]}),
    "crit b64 without b64": signed({**HEADER, "crit": ["b64"]}),
    "crit exp": signed({**HEADER, "crit": ["exp"]}),
    "crit empty": signed({**HEADER, "crit": []}),
    "crit not a list": signed({**HEADER, "crit": "b64"}),
    "crit a number": signed({**HEADER, "crit": [1]}),
    "kid a number": signed({**HEADER, "kid": 1}),
    "kid unknown": signed({**HEADER, "kid": "nobody"}),
    "kid null falls back to iss": signed({**HEADER, "kid": None}),
    "iss not a string": signed(NO_KID, {**CLAIMS, "iss": 1}),
    "iss unknown": signed(NO_KID, {**CLAIMS, "iss": "nobody"}),
    "the other key's kid": signed({**HEADER, "kid": "other-key"}, secret=OTHER.secret),
    "alg none": signed({**HEADER, "alg": "none"}),
    "alg missing": signed({"typ": TYP, "kid": "test-key"}),
    "typ wrong": signed({**HEADER, "typ": "JWT"}),
    "duplicate header members": signed(
        b'{"alg":"HS256","typ":"test+jwt","kid":"test-key","kid":"x"}'
    ),
    "duplicate header members and a number kid": signed(b'{"kid":1,"kid":1}'),
    "duplicate claims": signed(HEADER, b'{"exp":1,"exp":1800000600,"iat":1800000000}'),
    "duplicate claims without kid": signed(NO_KID, b'{"iss":"nobody","iss":"test-key"}'),
    "NaN in the header": signed(b'{"alg":"HS256","typ":"test+jwt","n":NaN}'),
    "Infinity in the claims": signed(HEADER, b'{"exp":Infinity,"iat":1800000000}'),
    "1e999 in the header": signed(b'{"alg":"HS256","typ":"test+jwt","n":1e999}'),
    "1e999 in the claims": signed(HEADER, b'{"exp":1e999,"iat":1800000000}'),
    "a 5000-digit header number": signed(b'{"alg":"HS256","n":' + b"9" * 5000 + b"}"),
    "a 5000-digit claim": signed(HEADER, b'{"exp":' + b"9" * 4000 + b"}"),
    "a 5000-digit claim without kid": signed(NO_KID, b'{"iss":' + b"9" * 4000 + b"}"),
    "a big int claim": signed(HEADER, {**CLAIMS, "n": 10**300}),
    "whitespace in the JSON": signed(
        b' {\n"alg" : "HS256",\t"typ":"test+jwt","kid":"test-key"}\r\n'
    ),
    "a UTF-8 BOM header": signed(b"\xef\xbb\xbf" + raw(HEADER)),
    "a UTF-8 BOM payload": signed(HEADER, b"\xef\xbb\xbf" + raw(CLAIMS)),
    "a UTF-16 header": signed(json.dumps(HEADER).encode("utf-16")),
    "a UTF-16 header and a bad payload": with_segment(
        signed(json.dumps(HEADER).encode("utf-16")), 1, "!"
    ),
    "a UTF-16 payload": signed(HEADER, json.dumps(CLAIMS).encode("utf-16")),
    "a UTF-16 payload without kid": signed(NO_KID, json.dumps(CLAIMS).encode("utf-16-le")),
    "a non-UTF-8 header": signed(b'{"alg":"HS256","x":"\xff"}'),
    "a non-UTF-8 payload": signed(HEADER, b'{"exp":1,"x":"\xff"}'),
    "an encoded surrogate in the header": signed(b'{"alg":"HS256","x":"\xed\xa0\x80"}'),
    "an encoded surrogate in the payload": signed(HEADER, b'{"exp":1,"x":"\xed\xa0\x80"}'),
    "a lone surrogate escape in the header": signed({**HEADER, "x": "\ud800"}),
    "a lone surrogate escape in the claims": signed(HEADER, {**CLAIMS, "x": "\ud800"}),
    "a header nested too deep": signed(b"[" * 3000 + b"]" * 3000),
    "claims nested too deep": signed(HEADER, b"[" * 2000 + b"]" * 2000),
    "claims nested past the plain limit": signed(HEADER, {**CLAIMS, "x": [[[[[[[[[[]]]]]]]]]] * 8}),
    "claims with a sub number": signed(HEADER, {**CLAIMS, "sub": 1}),
    "claims with a jti list": signed(HEADER, {**CLAIMS, "jti": []}),
    "claims missing exp": signed(HEADER, {"iat": NOW}),
    "expired claims": signed(HEADER, {**CLAIMS, "exp": NOW - 60}),
    "an empty signature": VALID.rsplit(".", 1)[0] + ".",
    "a 31-byte signature": with_segment(VALID, 2, b64(bytes(31))),
    "a 33-byte signature": with_segment(VALID, 2, b64(bytes(33))),
    "a signature of another key": signed(secret=OTHER.secret),
    "an oversized token": signed(HEADER, {**CLAIMS, "pad": "x" * 8192}),
}


@pytest.mark.parametrize("token", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_every_edge_case_reads_and_verifies_exactly_as_with_pyjwt(token: Any) -> None:
    """Padding, alphabet, segments, JSON shapes, crit/b64, encodings, sizes: same outcome."""
    assert_same_as_pyjwt(token)


def test_a_valid_token_decodes_to_the_same_header_claims_and_key() -> None:
    """Not just equal outcomes: the accepted token gives PyJWT's own header and claims."""
    decoded = CODEC.decode(VALID, TYP)
    assert decoded.header == HEADER
    not_times = {"verify_iat": False, "verify_nbf": False, "verify_exp": False}
    assert decoded.claims == jwt.decode(VALID, KEY.secret, ["HS256"], options=not_times)  # type: ignore[arg-type]
    assert decoded.key is KEY


def test_a_remembered_header_is_a_fresh_copy_each_time() -> None:
    """Changing the header one caller got does not change what the next one gets."""
    read_unverified_header(VALID)["alg"] = "none"
    assert read_unverified_header(VALID) == HEADER


base64ish = st.text(
    alphabet=st.sampled_from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ .!é"
    ),
    max_size=24,
)


@PARITY
@given(segment=base64ish | st.binary(max_size=12).map(lambda b: b64(b) + "=" * (-len(b64(b)) % 4)))
def test_each_segment_decodes_or_is_refused_like_pyjwts_segment_reader(segment: str) -> None:
    """Any mix of alphabet, padding and junk decodes to PyJWT's bytes or is refused as by it."""
    data = segment.encode("utf-8")
    try:
        expected: Any = jwt.PyJWS._decode_base64url_segment(data, "payload")
    except jwt.DecodeError as exc:
        expected = f"unreadable header: {exc}"
    try:
        actual: Any = _segment(data, "payload")
    except MalformedTokenError as exc:
        actual = str(exc)
    assert actual == expected


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
header_members = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["HS256", "none", "HS384"]) | json_values,
        "typ": st.sampled_from([TYP, "JWT"]) | json_values,
        "kid": st.sampled_from(["test-key", "other-key", "nobody"]) | json_values,
        "b64": st.sampled_from([False, True, 0]),
        "crit": st.sampled_from([["b64"], ["exp"], [], "b64"]) | json_values,
    },
)
claim_sets = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from(["test-key", "other-key"]) | json_values,
        "iat": st.sampled_from([NOW, NOW + 3600]) | json_values,
        "exp": st.sampled_from([NOW + 600, NOW - 600]) | json_values,
        "sub": json_values,
        "jti": json_values,
    },
)


@st.composite
def raw_json(draw: st.DrawFn, members: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """JSON text of ``members`` or any value, sometimes with a duplicate, odd bytes or encoding."""
    value = draw(members | json_values)
    text = json.dumps(value, allow_nan=True, ensure_ascii=draw(st.booleans()))
    if isinstance(value, dict) and value and draw(st.booleans()):
        text = text[:-1] + ", " + json.dumps({next(iter(value)): draw(json_values)})[1:]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-8-sig"]))
    data = text.encode(encoding, "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data)))
        data = (
            data[:at] + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b" ", b"\x00"])) + data[at:]
        )
    return data


@st.composite
def forged_tokens(draw: st.DrawFn) -> str:
    """Tokens over generated headers and claims, signed by either key or not at all, then
    perhaps one segment swapped for generated base64-ish text."""
    secret = draw(st.sampled_from([KEY.secret, OTHER.secret, b"\x00" * 32]))
    token = signed(draw(raw_json(header_members)), draw(raw_json(claim_sets)), secret=secret)
    if draw(st.integers(0, 3)) == 0:
        token = with_segment(token, draw(st.integers(0, 2)), draw(base64ish))
    return token


@PARITY
@given(token=forged_tokens())
def test_generated_tokens_read_and_verify_exactly_as_with_pyjwt(token: str) -> None:
    """Whatever the header, claims, encoding, key or segment junk: the same outcome."""
    assert_same_as_pyjwt(token)
