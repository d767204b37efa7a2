"""µs per Soul Machines ``mint()`` and ``verify()``, against a standard-library floor.

The floor is the same signing done with ``json`` + ``base64`` + ``hmac`` alone,
over the same header and claims a real ``mint()`` produced (and it must yield
the very same token, which the script checks). Verification is compared with
the stdlib equivalent: split, decode the header, check ``alg``/``typ``,
recompute and compare the HMAC, decode the claims, check ``exp``.

Target: ``mint()`` within 2x of the signing floor. A missed target is printed as
``TARGET MISSED``; the exit status is non-zero only on errors.

    python3 bench/token_mint.py            # ~10 s
    python3 bench/token_mint.py --quick    # ~1 s, for smoke tests
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import platform
import secrets
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tokens import Keyring, SigningKey, SoulMachinesPolicy, SoulMachinesProfile  # noqa: E402
from tokens.jws import ALGORITHM, TokenCodec, read_unverified_claims  # noqa: E402
from tokens.profiles.soul_machines import TYP  # noqa: E402

MINT_TARGET = 2.0
CONTROL_URL = "ws://127.0.0.1:8080/ws"


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def stdlib_sign(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """The floor: header and claims to compact JWS with the standard library alone."""
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + b"."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def stdlib_verify(token: str, secret: bytes, typ: str) -> dict[str, Any]:
    """The verify floor: the checks a correct HS256 verifier cannot skip."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    if header.get("alg") != ALGORITHM or header.get("typ") != typ:
        raise ValueError("wrong alg or typ")
    expected = b64url(
        hmac.new(secret, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    )
    if not hmac.compare_digest(expected, signature_b64.encode()):
        raise ValueError("bad signature")
    claims: dict[str, Any] = json.loads(b64url_decode(payload_b64))
    if claims["exp"] <= time.time():
        raise ValueError("expired")
    return claims


@dataclass(frozen=True)
class Timing:
    name: str
    loops: int
    per_call_us: list[float]

    @property
    def best(self) -> float:
        return min(self.per_call_us)

    @property
    def median(self) -> float:
        return statistics.median(self.per_call_us)


def measure(name: str, fn: Callable[[], object], *, repeat: int, loops: int | None) -> Timing:
    """timeit-style: ``repeat`` runs of ``loops`` calls (autoranged to ~0.2 s if None)."""
    timer = timeit.Timer(fn)
    if loops is None:
        loops, _ = timer.autorange()
    runs = timer.repeat(repeat=repeat, number=loops)
    return Timing(name, loops, [run / loops * 1e6 for run in runs])


def build_profile() -> SoulMachinesProfile:
    key = SigningKey.from_text("bench-key", secrets.token_urlsafe(48))
    policy = SoulMachinesPolicy(session_server="dh.soulmachines.cloud")
    return SoulMachinesProfile(TokenCodec(Keyring(key)), policy)


def run(repeat: int, loops: int | None) -> int:
    profile = build_profile()
    key = profile.codec.keyring.active
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": TYP}

    # The floor must do exactly the same work: same header, same claims, same bytes out.
    sample = profile.mint(control_url=CONTROL_URL).jwt
    claims = read_unverified_claims(sample)
    floor_token = stdlib_sign(header, claims, key.secret)
    if floor_token != sample:
        print("error: the stdlib floor does not reproduce mint()'s token", file=sys.stderr)
        return 1
    profile.verify(floor_token)
    stdlib_verify(sample, key.secret, TYP)

    timings = [
        measure(
            "stdlib floor: sign",
            lambda: stdlib_sign(header, claims, key.secret),
            repeat=repeat,
            loops=loops,
        ),
        measure(
            "SoulMachinesProfile.mint()",
            lambda: profile.mint(control_url=CONTROL_URL),
            repeat=repeat,
            loops=loops,
        ),
        measure(
            "stdlib floor: verify",
            lambda: stdlib_verify(sample, key.secret, TYP),
            repeat=repeat,
            loops=loops,
        ),
        measure(
            "SoulMachinesProfile.verify()",
            lambda: profile.verify(sample),
            repeat=repeat,
            loops=loops,
        ),
    ]
    sign_floor, mint, verify_floor, verify = timings

    import jwt

    print(
        f"Soul Machines token micro-benchmark: Python {platform.python_version()}, "
        f"PyJWT {jwt.__version__}, best and median of {repeat} runs"
    )
    print(f"{'operation':<30} {'loops':>7} {'best µs':>9} {'median µs':>10} {'x floor':>8}")
    for timing, floor in (
        (sign_floor, sign_floor),
        (mint, sign_floor),
        (verify_floor, verify_floor),
        (verify, verify_floor),
    ):
        print(
            f"{timing.name:<30} {timing.loops:>7} {timing.best:>9.2f} "
            f"{timing.median:>10.2f} {timing.best / floor.best:>7.2f}x"
        )
    mint_ratio = mint.best / sign_floor.best
    mint_ratio_median = mint.median / sign_floor.median
    verify_ratio = verify.best / verify_floor.best
    verdict = "target met" if mint_ratio <= MINT_TARGET else "TARGET MISSED"
    print()
    print(
        f"mint / sign floor:     {mint_ratio:.2f}x best, {mint_ratio_median:.2f}x median "
        f"(target <= {MINT_TARGET:.1f}x): {verdict}"
    )
    print(f"verify / verify floor: {verify_ratio:.2f}x best (no target)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per operation")
    parser.add_argument("--loops", type=int, default=None, help="calls per run (default: auto)")
    parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
    args = parser.parse_args(argv)
    if args.quick:
        return run(repeat=3, loops=args.loops or 100)
    return run(repeat=args.repeat, loops=args.loops)


if __name__ == "__main__":
    raise SystemExit(main())
