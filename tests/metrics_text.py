"""Reading ``/metrics`` in tests: one sample's value, its labels matched exactly."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.live_server import LiveServer


def sample(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with exactly ``labels`` in ``text`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def scraped(base_url: str, name: str, **labels: str) -> float:
    """``sample`` in the ``/metrics`` of the server at ``base_url``."""
    return sample(httpx.get(base_url + "/metrics", timeout=10).text, name, **labels)


def control_refused(server: LiveServer, reason: str) -> float:
    """``orchestrator_tokens_refused_total{where="control"}``: handshakes the app refused."""
    return scraped(
        server.base_url, "orchestrator_tokens_refused_total", where="control", reason=reason
    )


def stack_refused(server: LiveServer, reason: str) -> float:
    """``orchestrator_http_requests_refused_total``: heads the HTTP stack refused."""
    return scraped(server.base_url, "orchestrator_http_requests_refused_total", reason=reason)
