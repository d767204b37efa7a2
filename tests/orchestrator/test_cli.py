"""The ``orchestrator`` command: keygen, token mint / inspect, and exit codes."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.cli import EXIT_CONFIG, EXIT_INVALID, EXIT_UNAVAILABLE, main
from tests.conftest import random_secret
from tests.live_server import (
    CONFIG_VARIABLES,
    REPO_ROOT,
    LiveServer,
    free_port,
    server_environment,
)
from tests.uvicorn_thread import ThreadedServer
from tokens import Keyring, SigningKey, SoulMachinesPolicy, SoulMachinesProfile, TokenCodec
from tokens.keyring import MIN_KEY_BYTES


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A clean environment (no stray config, no .env) with a known signing key."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    value = random_secret()
    monkeypatch.setenv("JWT_PUBLIC_KEY", "cli-key")
    monkeypatch.setenv("JWT_PRIVATE_KEY", value)
    return value


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def use_a_new_key(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The configured signing key becomes a fresh secret named ``name``."""
    monkeypatch.setenv("JWT_PUBLIC_KEY", name)
    monkeypatch.setenv("JWT_PRIVATE_KEY", random_secret())


def test_keygen_prints_a_strong_key(capsys: pytest.CaptureFixture[str]) -> None:
    """keygen prints one key of at least 32 bytes, different each time."""
    code, first, _ = run(capsys, "keygen")
    _, second, _ = run(capsys, "keygen")
    assert code == 0
    key = first.strip()
    assert len(key.encode()) >= MIN_KEY_BYTES
    assert "\n" not in key
    assert key != second.strip()
    SigningKey.from_text("generated", key)


@pytest.mark.usefixtures("secret")
def test_minted_token_inspects_as_valid(capsys: pytest.CaptureFixture[str]) -> None:
    """A token from ``token mint`` is VALID for ``token inspect`` under the same key (exit 0)."""
    code, out, err = run(capsys, "token", "mint", "--claim", "user=ada", "--claim", "n=3")
    assert code == 0
    assert err == ""
    token = out.strip()
    code, out, _ = run(capsys, "token", "inspect", token)
    assert code == 0
    assert "VALID: Soul Machines token for session" in out
    assert '"user": "ada"' in out
    assert '"n": 3' in out
    assert re.search(r"expires: \S+ \(in \d+ min", out)


@pytest.mark.usefixtures("secret")
def test_inspect_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``token inspect -`` reads the token from standard input."""
    _, out, _ = run(capsys, "token", "mint")
    monkeypatch.setattr(sys, "stdin", io.StringIO(out))
    code, out, _ = run(capsys, "token", "inspect", "-")
    assert code == 0
    assert "VALID" in out


@pytest.mark.usefixtures("secret")
def test_mint_json_prints_the_api_jwt_body(capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` prints the same shape as GET /api/jwt."""
    code, out, _ = run(capsys, "token", "mint", "--json", "--ttl", "120")
    assert code == 0
    body = json.loads(out)
    assert set(body) == {"url", "jwt", "expires_at", "session_id"}
    assert body["url"] == "wss://dh.soulmachines.cloud"


@pytest.mark.usefixtures("secret")
def test_mint_refuses_reserved_claims(capsys: pytest.CaptureFixture[str]) -> None:
    """A ``sm-`` claim on the command line is refused with the reason and exit 1."""
    code, out, err = run(capsys, "token", "mint", "--claim", "sm-control=wss://x/ws")
    assert code == EXIT_INVALID
    assert out == ""
    assert "reserved" in err


def test_inspect_of_an_expired_token_says_so(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    """An expired token prints its claims, ``INVALID (expired)`` and how long ago; exit 1."""
    keyring = Keyring(SigningKey.from_text("cli-key", secret))
    policy = SoulMachinesPolicy(session_server="dh.soulmachines.cloud", ttl_seconds=60)
    two_hours_ago = time.time() - 7200
    profile = SoulMachinesProfile(TokenCodec(keyring, clock=lambda: two_hours_ago), policy)
    token = profile.mint(control_url="ws://localhost:8080/ws").jwt
    code, out, _ = run(capsys, "token", "inspect", token)
    assert code == EXIT_INVALID
    assert "INVALID (expired): token expired" in out
    assert "ago" in out
    assert '"sm-session-server": "dh.soulmachines.cloud"' in out


@pytest.mark.usefixtures("secret")
def test_inspect_of_a_tampered_token_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """A token whose payload was swapped prints ``INVALID (bad_signature)``; exit 1."""
    first = run(capsys, "token", "mint")[1].strip().split(".")
    second = run(capsys, "token", "mint")[1].strip().split(".")
    code, out, _ = run(capsys, "token", "inspect", f"{first[0]}.{second[1]}.{first[2]}")
    assert code == EXIT_INVALID
    assert "INVALID (bad_signature)" in out


@pytest.mark.usefixtures("secret")
def test_inspect_of_a_token_from_another_key_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the key changes, an old token prints ``INVALID (unknown_key)``; exit 1."""
    token = run(capsys, "token", "mint")[1].strip()
    use_a_new_key(monkeypatch, "new-key")
    code, out, _ = run(capsys, "token", "inspect", token)
    assert code == EXIT_INVALID
    assert "INVALID (unknown_key)" in out


def test_inspect_without_the_servers_key_says_it_used_an_ephemeral_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no key configured, a server's token fails verification against the throw-away
    key made for this command: the output says so and how to pass the server's key; exit 1."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    # A server without a key signs with its own ephemeral key, under the same name.
    server_token = run(capsys, "token", "mint")[1].strip()
    keyring = Keyring(SigningKey.from_text("prod-key", random_secret()))
    policy = SoulMachinesPolicy(session_server="dh.soulmachines.cloud")
    keyed_token = SoulMachinesProfile(TokenCodec(keyring), policy).mint(
        control_url="wss://orch.example.com/ws"
    )
    for token, code in ((server_token, "bad_signature"), (keyed_token.jwt, "unknown_key")):
        status, out, _ = run(capsys, "token", "inspect", token)
        assert status == EXIT_INVALID
        assert f"INVALID ({code})" in out
        assert "verified with an ephemeral key made for this command" in out
        assert "set JWT_PUBLIC_KEY and JWT_PRIVATE_KEY as the server has them" in out
        assert "or run this command where the server's .env is" in out


def test_inspect_with_another_key_name_says_which_key_it_used(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """A token signed under another key name than the configured one: both names are shown
    with how to pass the right key; the same name with a wrong secret gets no such hint."""
    token = run(capsys, "token", "mint")[1].strip()
    use_a_new_key(monkeypatch, "other-key")
    code, out, _ = run(capsys, "token", "inspect", token)
    assert code == EXIT_INVALID
    assert "INVALID (unknown_key)" in out
    assert "the token names key 'cli-key'; the key configured here is 'other-key'" in out
    assert "set JWT_PUBLIC_KEY and JWT_PRIVATE_KEY as the server has them" in out
    monkeypatch.setenv("JWT_PUBLIC_KEY", "cli-key")
    code, out, _ = run(capsys, "token", "inspect", token)
    assert code == EXIT_INVALID
    assert out.rstrip().endswith("INVALID (bad_signature): signature does not match")


@pytest.mark.usefixtures("secret")
def test_inspect_of_garbage_says_malformed(capsys: pytest.CaptureFixture[str]) -> None:
    """Text that is not a JWT prints ``INVALID (malformed)``; exit 1."""
    code, out, _ = run(capsys, "token", "inspect", "not-a-token")
    assert code == EXIT_INVALID
    assert out.startswith("INVALID (malformed)")


def test_config_error_exits_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An unusable configuration prints ``configuration error: ...`` and exits 2."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JWT_PUBLIC_KEY", "cli-key")
    monkeypatch.setenv("JWT_PRIVATE_KEY", "too-short")
    with pytest.raises(SystemExit) as caught:
        main(["token", "mint"])
    assert caught.value.code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("configuration error: ")
    assert "at least 32 bytes" in err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ORCHESTRATOR_ENV": "production"},
            "configuration error: JWT_PRIVATE_KEY is required in production",
        ),
        (
            {"CONVERSATION_HANDLER": "no_such_module:handle"},
            "configuration error: cannot import 'no_such_module'",
        ),
        ({"REDIS_URL": "foo"}, "configuration error: REDIS_URL must look like redis://"),
        ({"REDIS_URL": "http://cache.example:6379"}, "configuration error: REDIS_URL must"),
        (
            {"REDIS_URL": "redis://:hunter2@cache.example:63x9/0"},
            "configuration error: REDIS_URL is not usable: Port could not be cast",
        ),
        ({"TOKEN_RATE_LIMIT": "lots"}, "configuration error: TOKEN_RATE_LIMIT='lots'"),
        (
            {"CONVERSATION_HANDLER": "tests.orchestrator.handlers_for_tests:sync_handle"},
            "configuration error: CONVERSATION_HANDLER="
            "'tests.orchestrator.handlers_for_tests:sync_handle' is a plain (not async) "
            "function: the server awaits the handler on every turn; declare it "
            "`async def handle(request, conversation)`",
        ),
        (
            {"CONVERSATION_HANDLER": "tests.orchestrator.handlers_for_tests:one_argument"},
            "configuration error: CONVERSATION_HANDLER="
            "'tests.orchestrator.handlers_for_tests:one_argument' must accept two positional "
            "arguments (request, conversation)",
        ),
        (
            {"CONVERSATION_HANDLER": "tests.orchestrator.handlers_for_tests:sync_hook"},
            "configuration error: CONVERSATION_HANDLER="
            "'tests.orchestrator.handlers_for_tests:sync_hook': its on_idle is not async",
        ),
        (
            {"CONVERSATION_HANDLER": "tests.orchestrator.handlers_for_tests:end_without_reason"},
            "configuration error: CONVERSATION_HANDLER="
            "'tests.orchestrator.handlers_for_tests:end_without_reason': its on_end must accept "
            "two positional arguments (session, reason)",
        ),
        (
            {
                "ORCHESTRATOR_ENV": "production",
                "JWT_PUBLIC_KEY": "cli-key",
                "JWT_PRIVATE_KEY": random_secret(),
                "SESSION_SERVER": "ws://dh.soulmachines.cloud",
                "PUBLIC_URL": "https://orch.example.com",
                "CORS_ORIGINS": "https://app.example.com",
            },
            "configuration error: SESSION_SERVER must use wss:// in production",
        ),
    ],
    ids=[
        "production-without-key",
        "unusable-handler",
        "redis-url-without-scheme",
        "redis-url-http",
        "redis-url-bad-port",
        "token-profile-setting",
        "sync-handler",
        "one-argument-handler",
        "sync-hook",
        "hook-without-its-arguments",
        "production-ws-session-server",
    ],
)
def test_serve_with_a_config_error_exits_2_before_listening(
    env: dict[str, str], message: str
) -> None:
    """``orchestrator serve`` with bad configuration exits 2 with the reason, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--port", "0"],
        cwd=REPO_ROOT,
        env=server_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_CONFIG
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "Uvicorn running" not in result.stderr
    assert "hunter2" not in result.stderr


def test_serve_on_a_port_in_use_ends_with_that_error_and_exit_3() -> None:
    """A second server on a busy port: the last line says the port is in use
    (not a line above "Application startup complete"), and the exit status is
    the documented one."""
    with LiveServer({"ARCHIVE_URL": "none"}) as first:
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "serve", "--port", str(first.port)],
            cwd=REPO_ROOT, env=server_environment(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == EXIT_UNAVAILABLE == 3
    last = result.stdout.strip().splitlines()[-1]
    assert last == (
        f"error: cannot listen on 127.0.0.1:{first.port}: the port is already in use (is "
        "another server running there?); stop it or choose another port with --port or PORT"
    )
    assert "Application startup complete" not in result.stdout


def test_serve_with_a_port_out_of_range_is_a_configuration_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--port", "70000"],
        cwd=REPO_ROOT, env=server_environment(), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_CONFIG
    assert result.stderr == "configuration error: --port 70000: use 0 to 65535\n"


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown sub-command is an argparse usage error (exit 2), not a traceback."""
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2
    assert "usage: orchestrator" in capsys.readouterr().err


# --- simulate: each failure is one line on stderr and exit 1, never a traceback ----------


def simulate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code, out, err = run(capsys, "simulate", "--settle", "0.05", *argv)
    assert "Traceback" not in out + err
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def script(tmp_path: Path) -> str:
    path = tmp_path / "lines.txt"
    path.write_text("hello\n")
    return str(path)


def test_simulate_with_no_server_running_says_so(
    capsys: pytest.CaptureFixture[str], script: str
) -> None:
    """Nothing listening at --url: which URL could not be reached and why, exit 1."""
    port = free_port()
    code, out, err = simulate(capsys, "--url", f"http://127.0.0.1:{port}", "--script", script)
    assert code == EXIT_INVALID
    assert out == ""
    line = one_error_line(err)
    assert f"cannot reach http://127.0.0.1:{port}/api/jwt: Connection refused" in line
    assert "orchestrator serve" in line


def test_simulate_with_a_missing_script_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """--script naming no file: the file and the reason, exit 1, before any connection."""
    code, out, err = simulate(capsys, "--script", "/no/such/script.txt")
    assert code == EXIT_INVALID
    assert out == ""
    assert one_error_line(err) == (
        "error: cannot read --script '/no/such/script.txt': No such file or directory"
    )


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://127.0.0.1", "http://"])
def test_simulate_with_a_bad_url_says_so(
    capsys: pytest.CaptureFixture[str], script: str, url: str
) -> None:
    """--url that is not an http(s) URL with a host is refused with the value, exit 1."""
    code, out, err = simulate(capsys, "--url", url, "--script", script)
    assert code == EXIT_INVALID
    assert out == ""
    assert one_error_line(err) == (
        f"error: --url must be an http(s):// URL with a host, such as "
        f"http://127.0.0.1:8080, not {url!r}"
    )


def _answering(status: int, body: str, media_type: str) -> Starlette:
    async def api_jwt(_request: Request) -> Response:
        return Response(body, status_code=status, media_type=media_type)

    return Starlette(routes=[Route("/api/jwt", api_jwt)])


@pytest.mark.parametrize(
    ("status", "body", "media_type", "expected"),
    [
        (
            503,
            '{"error": "unavailable", "detail": "try later"}',
            "application/json",
            '/api/jwt answered HTTP 503: {"error": "unavailable", "detail": "try later"}',
        ),
        (404, "Not Found", "text/plain", "/api/jwt answered HTTP 404: Not Found"),
        (
            200,
            "<html>\n<body>a web page</body>\n</html>",
            "text/html",
            '/api/jwt answered no token (expected JSON with a "jwt"): is',
        ),
    ],
    ids=["error-json", "not-found", "not-a-token"],
)
def test_simulate_with_a_server_answering_an_error_says_so(
    capsys: pytest.CaptureFixture[str],
    script: str,
    status: int,
    body: str,
    media_type: str,
    expected: str,
) -> None:
    """A server whose /api/jwt answers an error (or no token): its status and reason, exit 1."""
    with ThreadedServer(_answering(status, body, media_type)) as server:
        code, out, err = simulate(capsys, "--url", server.base_url, "--script", script)
    assert code == EXIT_INVALID
    assert out == ""
    line = one_error_line(err)
    assert f"error: GET {server.base_url}{expected}" in line


@pytest.mark.parametrize(
    ("control_url", "expected"),
    [
        (
            "ws://127.0.0.1:{port}/ws",
            "cannot connect to ws://127.0.0.1:{port}/ws: Connection refused",
        ),
        ("http://127.0.0.1:{port}/ws", "bad control URL 'http://127.0.0.1:{port}/ws'"),
    ],
    ids=["refused", "not-ws"],
)
def test_simulate_with_an_unreachable_control_url_says_so(
    capsys: pytest.CaptureFixture[str], script: str, control_url: str, expected: str
) -> None:
    """A control URL that refuses connections, or is not ws(s)://: one line, exit 1."""
    port = free_port()
    code, out, err = simulate(
        capsys,
        "--token",
        "x.y.z",
        "--control-url",
        control_url.format(port=port),
        "--script",
        script,
    )
    assert code == EXIT_INVALID
    assert out == ""
    assert one_error_line(err).startswith(f"error: {expected.format(port=port)}")


def test_simulate_reaching_a_web_server_that_is_not_a_control_socket_says_so(
    capsys: pytest.CaptureFixture[str], script: str
) -> None:
    """A control URL served by plain HTTP (no WebSocket): refused with its status, exit 1."""
    with ThreadedServer(_answering(200, "hello", "text/plain")) as server:
        control_url = f"ws://127.0.0.1:{server.port}/api/jwt"
        code, out, err = simulate(
            capsys, "--token", "x.y.z", "--control-url", control_url, "--script", script
        )
    assert code == EXIT_INVALID
    assert out == ""
    assert one_error_line(err).startswith(f"error: the control socket at {control_url} refused")
