"""orchestrator.server.collector: the collector settings a serving process runs with."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orchestrator import asgi
from orchestrator.server import collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_serving_freezes_start_up_objects_and_spaces_out_collections() -> None:
    """What exists after start-up leaves the collector's walks; young collections are rarer."""
    gc.unfreeze()
    collector.tune_for_serving()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (
        collector.YOUNG_THRESHOLD,
        collector.MIDDLE_THRESHOLD,
        collector.OLD_THRESHOLD,
    )
    assert collector.YOUNG_THRESHOLD > 700  # CPython's default


@pytest.mark.usefixtures("restored_collector")
def test_the_server_entry_point_tunes_the_collector_after_building_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``configured_app`` (what ``orchestrator serve`` runs) builds the app, then tunes."""
    monkeypatch.setenv("JWT_PUBLIC_KEY", "test")
    monkeypatch.setenv("JWT_PRIVATE_KEY", "k" * 40)
    monkeypatch.setenv("ARCHIVE_URL", "none")
    gc.unfreeze()
    app = asgi.configured_app()
    assert app is not None
    assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD
    assert gc.get_freeze_count() > 0
