"""docs/webhook.md is true: its JSON Schemas describe what the handler really
sends and accepts, and its Python and Node verification recipes accept the
package's signatures and refuse forged, stale and replayed ones."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.handlers.signing import sign
from orchestrator.handlers.webhook import WebhookHandler
from orchestrator.handlers.webhook_messages import BadReply, parse_reply
from tests.conftest import random_secret
from tests.orchestrator.handlers.test_webhook import RecordingConversation
from tests.orchestrator.handlers.test_webhook_messages import make_request
from tests.orchestrator.handlers.webhook_receiver import WebhookReceiver

PAGE = (Path(__file__).resolve().parents[3] / "docs" / "webhook.md").read_text()
TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def block(marker: str, language: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```{language}\n(.*?)```", PAGE, re.S)
    assert found is not None, f"docs/webhook.md lost its {marker} block"
    return found.group(1)


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(block(f"schema: {name}", "json"))
    return loaded


def problems(value: Any, rules: dict[str, Any], where: str = "$") -> list[str]:
    """What ``value`` breaks of ``rules`` (the JSON Schema keywords the page uses)."""
    found: list[str] = []
    kinds = rules.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(TYPES[kind](value) for kind in kinds):
            return [f"{where}: not {kinds}"]
    if "const" in rules and value != rules["const"]:
        found.append(f"{where}: not {rules['const']!r}")
    if "enum" in rules and value not in rules["enum"]:
        found.append(f"{where}: not one of {rules['enum']}")
    if isinstance(value, str):
        if len(value) < rules.get("minLength", 0) or len(value) > rules.get("maxLength", 1e9):
            found.append(f"{where}: length {len(value)}")
        if "pattern" in rules and not re.search(rules["pattern"], value):
            found.append(f"{where}: does not match {rules['pattern']}")
    if isinstance(value, int | float) and value < rules.get("minimum", float("-inf")):
        found.append(f"{where}: below {rules['minimum']}")
    if isinstance(value, list):
        if len(value) > rules.get("maxItems", 1e9):
            found.append(f"{where}: more than {rules['maxItems']} items")
        for index, item in enumerate(value):
            found += problems(item, rules.get("items", {}), f"{where}[{index}]")
    if isinstance(value, dict):
        properties = rules.get("properties", {})
        found += [
            f"{where}: missing {name}" for name in rules.get("required", ()) if name not in value
        ]
        if rules.get("additionalProperties") is False:
            found += [f"{where}: unexpected {name}" for name in value if name not in properties]
        for name, member in value.items():
            if name in properties:
                found += problems(member, properties[name], f"{where}.{name}")
    return found


def test_the_schema_checker_catches_what_the_schemas_forbid() -> None:
    """The hand-rolled checker (no jsonschema dependency) does refuse."""
    turn = schema("turn")
    assert problems({"type": "turn"}, turn)  # missing fields
    assert problems([], turn) == ["$: not ['object']"]
    assert problems({"text": 5}, schema("reply")) == ["$.text: not ['string', 'null']"]
    assert problems({"cards": [{"id": "a b", "component": "x"}]}, schema("reply"))


@pytest.mark.anyio
async def test_what_the_handler_sends_matches_the_documented_schemas() -> None:
    """A real turn and the three events, as a backend receives them."""
    secret = random_secret()
    with WebhookReceiver(secret) as backend:
        handler = WebhookHandler(url=backend.turn_url, secret=secret)
        conversation = RecordingConversation()
        session = conversation.session
        session.add_turn("dp", "Hi Ann!")
        session.add_turn("user", "hello")
        try:
            await handler.handle(make_request(session=session), conversation)
            await handler.on_start(session)
            await handler.on_idle(session, 30.0)
            await handler.on_end(session, "disconnected")
        finally:
            await handler.aclose()
    received = backend.received
    assert [r.event for r in received] == [
        "turn", "session.started", "session.idle", "session.ended"
    ]  # fmt: skip
    assert problems(received[0].payload, schema("turn")) == []
    for event in received[1:]:
        assert problems(event.payload, schema("event")) == []
    last_line = received[0].payload["transcript"][-1]
    assert (last_line["role"], last_line["text"]) == ("user", "hello")


def test_the_documented_examples_match_the_schemas_and_the_reply_parses() -> None:
    examples = re.findall(r"```json\n(\{\n  \"(?:type|text)\".*?)```", PAGE, re.S)
    turn_example, reply_example = (json.loads(text) for text in examples)
    assert problems(turn_example, schema("turn")) == []
    assert problems(reply_example, schema("reply")) == []
    answer = parse_reply(json.dumps(reply_example).encode())
    assert answer is not None and answer.reply is not None
    assert answer.speak == ("By the way, we close at noon on Saturdays.",)


@pytest.mark.parametrize(
    "reply",
    [{"txt": "x"}, {"text": 1}, {"fallback": "no"}, {"speak": [""]}, {"speak": ["a"] * 11},
     {"cards": [{"id": "a", "component": ""}]}, {"cards": [{"component": "x"}]},
     {"variables": []}],
)  # fmt: skip
def test_the_reply_schema_and_the_handler_refuse_the_same_replies(reply: dict[str, Any]) -> None:
    assert problems(reply, schema("reply"))
    with pytest.raises(BadReply):
        parse_reply(json.dumps(reply).encode())


def python_recipe() -> Callable[..., int]:
    namespace: dict[str, Any] = {}
    exec(compile(block("recipe: python", "python"), "docs/webhook.md", "exec"), namespace)  # noqa: S102
    verify: Callable[..., int] = namespace["verify"]
    return verify


def test_the_python_recipe_verifies_the_package_signature_and_refuses_the_rest() -> None:
    verify = python_recipe()
    secret, body = random_secret(), b'{"type":"turn","text":"h\xc3\xa9"}'
    now = int(time.time())
    header = sign(secret, body)
    assert verify(secret, header, body) in (now, now + 1)
    for bad_header, bad_body, message in [
        (None, body, "malformed"),
        ("v1=abc", body, "malformed"),
        (header, body + b" ", "mismatch"),
        (sign(random_secret(), body), body, "mismatch"),
        (sign(secret, body, timestamp=now - 301), body, "stale"),
        (f"t={'9' * 400},v1=ab", body, "malformed"),  # OverflowError before
        (f"t={'9' * 5000},v1=ab", body, "malformed"),  # over int()'s digit limit
        ("t=\u00b2,v1=ab", body, "malformed"),  # a digit int() refuses
    ]:
        with pytest.raises(ValueError, match=message):
            verify(secret, bad_header, bad_body)
    seen: dict[str, int] = {}
    verify(secret, header, body, seen)
    with pytest.raises(ValueError, match="replayed"):
        verify(secret, header, body, seen)


NODE_DRIVER = """
const { verifySignature } = require("./verify.js");
const body = Buffer.from(process.env.BODY_HEX, "hex");
const secret = process.env.SECRET;
const outcome = (header, raw, seen) => {
  try { verifySignature(secret, header, raw, seen); return "ok"; }
  catch (error) { return error.message; }
};
const seen = new Map();
console.log(JSON.stringify({
  good: outcome(process.env.GOOD, body),
  tampered: outcome(process.env.GOOD, Buffer.concat([body, Buffer.from(" ")])),
  other_secret: outcome(process.env.OTHER, body),
  stale: outcome(process.env.STALE, body),
  missing: outcome(undefined, body),
  huge: outcome(`t=${"9".repeat(400)},v1=ab`, body),
  first: outcome(process.env.GOOD, body, seen),
  replay: outcome(process.env.GOOD, body, seen),
}));
"""


def test_the_node_recipe_verifies_the_package_signature_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("REQUIRE_NODE") == "1":
            pytest.fail("REQUIRE_NODE=1 but node is not on PATH")
        pytest.skip("node is not installed")
    (tmp_path / "verify.js").write_text(block("recipe: node", "js"))
    (tmp_path / "driver.js").write_text(NODE_DRIVER)
    secret, body = random_secret(), '{"type":"turn","text":"hé"}'.encode()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SECRET": secret,
        "BODY_HEX": body.hex(),
        "GOOD": sign(secret, body),
        "OTHER": sign(random_secret(), body),
        "STALE": sign(secret, body, timestamp=int(time.time()) - 301),
    }
    result = subprocess.run(
        [node, "driver.js"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "good": "ok",
        "tampered": "signature mismatch",
        "other_secret": "signature mismatch",
        "stale": "stale timestamp",
        "missing": "malformed signature header",
        "huge": "malformed signature header",
        "first": "ok",
        "replay": "replayed",
    }
