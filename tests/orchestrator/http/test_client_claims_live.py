"""Client-chosen custom claims against a real ``orchestrator serve`` (issue 23): what
an anonymous ``POST /auth/authorize`` may put into a token, the ``client_claims``
mark every verifier reads, and the API key that lets the backend choose any."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import random_secret
from tests.live_server import LiveServer
from tokens import Keyring, SigningKey, SoulMachinesPolicy, SoulMachinesProfile, TokenCodec

pytestmark = pytest.mark.server

KEY_NAME = "claims-key"


@contextmanager
def serve(**env: str) -> Iterator[tuple[httpx.Client, str, SoulMachinesProfile]]:
    """A development server; yields a client, its API key and a verifier of its tokens
    made apart from it (as another instance would verify them)."""
    secret, api_key = random_secret(), random_secret()
    values = {
        "JWT_PUBLIC_KEY": KEY_NAME,
        "JWT_PRIVATE_KEY": secret,
        "ORCHESTRATOR_API_KEY": api_key,
        **env,
    }
    verifier = SoulMachinesProfile(
        TokenCodec(Keyring(SigningKey.from_text(KEY_NAME, secret))),
        SoulMachinesPolicy(session_server="dh.soulmachines.cloud"),
    )
    with LiveServer(values) as live, httpx.Client(base_url=live.base_url) as client:
        yield client, api_key, verifier


def authorize(client: httpx.Client, claims: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/auth/authorize", json={"claims": claims}, headers=headers)


def test_an_anonymous_clients_claims_are_marked_in_the_token_and_the_session() -> None:
    """Development allows any claim, and the token names the client's in
    ``client_claims``; the backend's (its API key) are not marked; a bearer
    credential that is not the key is refused, not ignored."""
    with serve() as (client, api_key, verifier):
        anonymous = authorize(client, {"role": "admin", "name": "Ada"})
        assert anonymous.status_code == 200, anonymous.text
        claims = verifier.verify(anonymous.json()["jwt"]).custom
        assert claims == {"role": "admin", "name": "Ada", "client_claims": ["name", "role"]}
        session_id = anonymous.json()["session_id"]
        session = client.get(
            f"/sessions/{session_id}", headers={"Authorization": f"Bearer {api_key}"}
        ).json()
        assert session["claims"]["client_claims"] == ["name", "role"]

        trusted = authorize(client, {"role": "admin"}, key=api_key)
        assert trusted.status_code == 200, trusted.text
        assert verifier.verify(trusted.json()["jwt"]).custom == {"role": "admin"}

        forged = authorize(client, {"role": "admin"}, key=random_secret())
        assert (forged.status_code, forged.json()["error"]) == (401, "unauthorized")
        # Nobody sets the mark: it is reserved.
        marked = authorize(client, {"client_claims": []}, key=api_key)
        assert (marked.status_code, marked.json()["error"]) == (422, "reserved_claim")


def test_client_claims_none_makes_custom_claims_need_the_api_key() -> None:
    """The switch (production's default): an anonymous POST may still get a token, but
    not one with custom claims."""
    with serve(CLIENT_CLAIMS="none") as (client, api_key, verifier):
        refused = authorize(client, {"name": "Ada"})
        assert (refused.status_code, refused.json()["error"]) == (422, "claim_not_allowed")
        assert "API key" in refused.json()["detail"]
        assert authorize(client, {}).status_code == 200
        assert client.post("/auth/authorize").status_code == 200
        trusted = authorize(client, {"name": "Ada"}, key=api_key)
        assert verifier.verify(trusted.json()["jwt"]).custom == {"name": "Ada"}


def test_an_allow_list_bounds_each_claim_a_client_may_choose() -> None:
    with serve(CLIENT_CLAIMS="name:16,lang") as (client, api_key, verifier):
        allowed = authorize(client, {"name": "Ada", "lang": "en"})
        assert allowed.status_code == 200, allowed.text
        assert verifier.verify(allowed.json()["jwt"]).custom["client_claims"] == ["lang", "name"]
        for claims in ({"role": "admin"}, {"name": "A" * 20}):
            refused = authorize(client, claims)
            assert (refused.status_code, refused.json()["error"]) == (422, "claim_not_allowed")
        assert authorize(client, {"role": "admin"}, key=api_key).status_code == 200
