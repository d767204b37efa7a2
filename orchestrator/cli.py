"""The ``orchestrator`` command: serve, mint and inspect tokens, generate keys, archive."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.archive.cli import add_archive_commands
from orchestrator.config import (
    CONTROL_PATH,
    EPHEMERAL_FLAG,
    EPHEMERAL_KEY_NAME,
    Settings,
    SettingsError,
)
from orchestrator.logs import configure_logging, get_logger
from orchestrator.testing.command import add_test_command
from orchestrator.testing.replay_command import add_replay_command
from tokens import InvalidTokenError, SoulMachinesProfile, TokenCodec, TokenPackageError
from tokens.jws import humanize_seconds, read_unverified_claims, read_unverified_header
from tokens.keyring import generate_secret

# Exit statuses (docs/cli.md#exit-status): the archive commands use the same numbers.
EXIT_INVALID = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3  # the server could not start serving; a database is unreachable
STARTUP_FAILURE = 3  # what uvicorn.run exits with when the server did not start
MAX_PORT = 65535


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestrator.handlers.loader import HandlerLoadError, load_handler

    if args.trusted_proxy_hops is not None:
        # Through the environment, like the ephemeral key: every worker reads it there.
        os.environ["TRUSTED_PROXY_HOPS"] = str(args.trusted_proxy_hops)
    settings = _settings()
    trusted = args.forwarded_allow_ips or os.environ.get("FORWARDED_ALLOW_IPS", "")
    if args.proxy_headers and trusted.strip() == "*":
        print(
            "configuration error: --forwarded-allow-ips='*' makes uvicorn take the client's "
            "address from the leftmost X-Forwarded-For entry, which the client writes; use "
            "--trusted-proxy-hops N (TRUSTED_PROXY_HOPS) or list the proxies' addresses",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        # Checked here so that a bad name is a configuration error, not a worker traceback.
        load_handler(settings.conversation_handler, settings)
    except (HandlerLoadError, SettingsError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if settings.ephemeral_key:
        # Generated once here so every worker process signs with the same key;
        # with Redis, every instance on it too.
        key = generate_secret()
        if settings.redis_url:
            from orchestrator.backend.dev_key import SharedKeyUnavailable, shared_development_key

            try:
                key = shared_development_key(settings.redis_url, key)
            except SharedKeyUnavailable as exc:
                print(
                    "error: no JWT_PRIVATE_KEY is set, and the development key that every "
                    f"instance on REDIS_URL shares could not be read from Redis ({exc}); "
                    "start Redis, or set JWT_PUBLIC_KEY and JWT_PRIVATE_KEY",
                    file=sys.stderr,
                )
                return EXIT_UNAVAILABLE
        os.environ["JWT_PUBLIC_KEY"] = EPHEMERAL_KEY_NAME
        os.environ["JWT_PRIVATE_KEY"] = key
        os.environ[EPHEMERAL_FLAG] = "true"
        settings = _settings()
    configure_logging(json=settings.log_json, level=settings.log_level, secrets=settings.secrets)
    if args.workers > 1 and not settings.redis_url:
        get_logger("orchestrator.cli").warning(
            "several workers without REDIS_URL: each worker keeps its own sessions, so the "
            "sessions API may not find a session whose socket another worker holds; set "
            "REDIS_URL or run one worker (tokens are unaffected)",
            workers=args.workers,
        )
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    if not 0 <= port <= MAX_PORT:
        print(f"configuration error: --port {port}: use 0 to {MAX_PORT}", file=sys.stderr)
        return EXIT_CONFIG
    problem = _cannot_listen(host, port)
    if problem is not None:
        # Before the application starts, so this is the last line, not one above
        # "Application startup complete".
        print(f"error: cannot listen on {_address(host, port)}: {problem}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        _run_uvicorn(uvicorn, args, settings, host, port)
    except SystemExit as exc:
        if exc.code != STARTUP_FAILURE:
            raise
        # e.g. the port was taken between the check and uvicorn's bind, or the
        # application's start-up failed: uvicorn logged why above.
        print(
            f"error: the server did not start on {_address(host, port)}; the log above says why",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    return 0


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the server could not bind ``host:port`` (bound as uvicorn does, with
    ``SO_REUSEADDR``), or ``None``: an address in use is then said plainly."""
    try:
        # Every address the host names, as uvicorn's asyncio server binds them all.
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, _, _, _, address in addresses:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
        return None
    except socket.gaierror as exc:
        return f"cannot resolve the host ({exc.strerror})"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (
                "the port is already in use (is another server running there?); "
                "stop it or choose another port with --port or PORT"
            )
        if exc.errno == errno.EACCES:
            return "permission denied (ports below 1024 need privileges); choose another port"
        return exc.strerror or str(exc)


def _run_uvicorn(
    uvicorn: Any, args: argparse.Namespace, settings: Settings, host: str, port: int
) -> None:
    from orchestrator.server.heads import uvicorn_http_options
    from orchestrator.server.websocket import uvicorn_websocket_options

    uvicorn.run(
        "orchestrator.asgi:configured_app",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        log_config=None,
        **uvicorn_http_options(settings),
        **uvicorn_websocket_options(settings),
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=args.graceful_timeout,
        server_header=False,
    )


def _parse_claim(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--claim {text!r}: use NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, value


def cmd_token_mint(args: argparse.Namespace) -> int:
    settings = _settings()
    if settings.ephemeral_key:
        print(
            "warning: no JWT_PRIVATE_KEY set; this token is signed with a throw-away key that "
            "no server will accept",
            file=sys.stderr,
        )
    profile = SoulMachinesProfile(TokenCodec(settings.keyring), settings.sm_policy())
    control_url = args.control_url or f"ws://{settings.host}:{settings.port}{CONTROL_PATH}"
    try:
        issued = profile.mint(
            custom_claims=dict(args.claim or []), control_url=control_url, ttl_seconds=args.ttl
        )
    except TokenPackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(
            json.dumps(
                {
                    "url": issued.session_server_url,
                    "jwt": issued.jwt,
                    "expires_at": issued.claims.expires_at,
                    "session_id": issued.claims.session_id,
                },
                indent=2,
            )
        )
    else:
        print(issued.jwt)
    return 0


def _when(timestamp: Any, now: float) -> str:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return repr(timestamp)
    iso = datetime.fromtimestamp(timestamp, UTC).isoformat()
    delta = timestamp - now
    relative = f"in {humanize_seconds(delta)}" if delta >= 0 else f"{humanize_seconds(delta)} ago"
    return f"{iso} ({relative})"


def cmd_token_inspect(args: argparse.Namespace) -> int:
    token = sys.stdin.read().strip() if args.token == "-" else args.token.strip()  # noqa: S105
    try:
        header = read_unverified_header(token)
        claims = read_unverified_claims(token)
    except InvalidTokenError as exc:
        print(f"INVALID ({exc.code}): {exc}")
        return EXIT_INVALID
    now = time.time()
    print("header:", json.dumps(header, indent=2))
    print("claims:", json.dumps(claims, indent=2))
    for name, label in (("iat", "issued"), ("nbf", "valid from"), ("exp", "expires")):
        if name in claims:
            print(f"{label:>10}: {_when(claims[name], now)}")
    settings = _settings()
    profile = SoulMachinesProfile(TokenCodec(settings.keyring), settings.sm_policy())
    try:
        verified = profile.verify(token)
    except InvalidTokenError as exc:
        print(f"INVALID ({exc.code}): {exc}")
        hint = _key_hint(settings, header, claims) if exc.code in _KEY_ERRORS else None
        if hint:
            print(hint)
        return EXIT_INVALID
    print(f"VALID: Soul Machines token for session {verified.session_id}")
    return 0


_KEY_ERRORS = frozenset({"bad_signature", "unknown_key", "wrong_issuer"})
_HOW_TO_USE_THE_SERVERS_KEYS = (
    "set JWT_PUBLIC_KEY and JWT_PRIVATE_KEY as the server has them (or run this command "
    "where the server's .env is) and inspect again"
)


def _key_hint(settings: Settings, header: dict[str, Any], claims: dict[str, Any]) -> str | None:
    """Why a signature check may have failed here and not on the server: no key is
    configured (so a throw-away one was used), or another key name is."""
    if settings.ephemeral_key:
        return (
            "note: no JWT_PRIVATE_KEY is configured, so this was verified with an ephemeral key "
            "made for this command, not the server's (a server without one signs with its own, "
            f"which nothing else can verify): {_HOW_TO_USE_THE_SERVERS_KEYS}"
        )
    configured = settings.keyring.active.kid
    named = header.get("kid", claims.get("iss"))
    if named != configured and named not in settings.keyring.kids:
        return (
            f"note: the token names key {named!r}; the key configured here is {configured!r}: "
            f"{_HOW_TO_USE_THE_SERVERS_KEYS}"
        )
    return None


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio

    from orchestrator.simulate import SimulationError, interactive_lines, run_simulation

    interactive = args.script is None and sys.stdin.isatty()

    def prompt() -> None:
        print("you> ", end="", flush=True)

    if args.script is not None:
        try:
            with open(args.script, encoding="utf-8") as script:
                lines: list[str] = script.readlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"error: cannot read --script {args.script!r}: {reason}", file=sys.stderr)
            return EXIT_INVALID
        source: Any = lines
    else:
        source = interactive_lines()
    try:
        return asyncio.run(
            run_simulation(
                base_url=args.url,
                token=args.token,
                control_url=args.control_url,
                lines=source,
                out=sys.stdout,
                prompt=prompt if interactive else None,
                settle=args.settle,
            )
        )
    except SimulationError as exc:
        if interactive:
            print(file=sys.stdout)  # end the "you> " prompt's line
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID


def cmd_keygen(_args: argparse.Namespace) -> int:
    print(generate_secret())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Orchestration server and token server for Soul Machines digital people.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (configuration from the environment)")
    serve.add_argument("--host", help="interface to bind (default: HOST, or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: PORT, or 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-Proto/For from --forwarded-allow-ips (behind a proxy)",
    )
    serve.add_argument(
        "--forwarded-allow-ips", default=None, help="addresses of the proxies to trust (not '*')"
    )
    serve.add_argument(
        "--trusted-proxy-hops",
        type=int,
        help="proxies in front that append to X-Forwarded-For (default: TRUSTED_PROXY_HOPS, or 0)",
    )
    serve.add_argument("--graceful-timeout", type=int, default=10, help="seconds to drain")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="mint or inspect Soul Machines tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    mint = token_sub.add_parser("mint", help="print a token for local testing")
    mint.add_argument("--claim", action="append", type=_parse_claim, metavar="NAME=VALUE")
    mint.add_argument("--ttl", type=int, help="lifetime in seconds (at most TOKEN_TTL_SECONDS)")
    mint.add_argument("--control-url", help="sm-control (default: this server's local /ws)")
    mint.add_argument("--json", action="store_true", help="print the /api/jwt response body")
    mint.set_defaults(func=cmd_token_mint)
    inspect = token_sub.add_parser("inspect", help="decode and verify a token ('-' reads stdin)")
    inspect.add_argument("token")
    inspect.set_defaults(func=cmd_token_inspect)

    simulate = sub.add_parser(
        "simulate", help="play the Soul Machines video host against a running server"
    )
    simulate.add_argument(
        "--url", default="http://127.0.0.1:8080", help="server base URL (token from /api/jwt)"
    )
    simulate.add_argument("--token", help="use this token instead of fetching one")
    simulate.add_argument("--control-url", help="connect here instead of the token's sm-control")
    simulate.add_argument("--script", help="file of lines to say (default: read stdin)")
    simulate.add_argument(
        "--settle", type=float, default=0.3, help="seconds of quiet that end a reply"
    )
    simulate.set_defaults(func=cmd_simulate)

    keygen = sub.add_parser("keygen", help="print a strong random signing key")
    keygen.set_defaults(func=cmd_keygen)

    add_archive_commands(sub, _settings)
    add_test_command(sub, _settings)
    add_replay_command(sub, _settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
