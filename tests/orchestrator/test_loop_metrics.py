"""orchestrator.loop_metrics: the hot path's counters and histograms scrape as
prometheus_client's own would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.loop_metrics import LoopMetrics

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
VALUES = (0.0, 0.005, 0.0050001, 0.01, 0.3, 1, 10, 10.5, 99.0)


def samples(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample but the ``_created`` timestamps, labels order-free."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_counters_and_histograms_scrape_like_prometheus_clients_own() -> None:
    """Same samples, bucket for bucket ("le": a value on a bound counts in that bucket)."""
    reference, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("frames", "Frames", registry=reference)
    histogram = Histogram("latency_seconds", "Latency", buckets=BOUNDS, registry=reference)
    staged = Histogram("stage_seconds", "Stages", ["stage"], buckets=BOUNDS, registry=reference)
    loop = LoopMetrics()
    ours.register(loop)
    loop_counter = loop.counter("frames", "Frames")
    loop_histogram = loop.histogram("latency_seconds", "Latency", BOUNDS)
    loop_staged = loop.histogram_family(
        "stage_seconds", "Stages", BOUNDS, label="stage", max_values=8
    )
    for value in VALUES:
        counter.inc()
        loop_counter.inc()
        histogram.observe(value)
        loop_histogram.observe(value)
        for stage in ("handler_done", "first_frame"):
            staged.labels(stage).observe(value / 2)
            loop_staged.labels(stage).observe(value / 2)
    assert samples(ours) == samples(reference)


def test_a_family_past_its_label_bound_counts_the_rest_as_other() -> None:
    """Handlers name stages: the series stay bounded whatever names they invent."""
    loop = LoopMetrics()
    family = loop.histogram_family("stage_seconds", "Stages", BOUNDS, label="stage", max_values=3)
    for index in range(10):
        family.labels(f"stage{index}").observe(0.001)
    assert sorted(family.children) == ["other", "stage0", "stage1", "stage2"]
    assert family.children["other"].counts[0] == 7
    assert family.labels("stage1") is family.children["stage1"]


@pytest.mark.parametrize("amount", [1.0, 2.5])
def test_a_counter_adds_what_it_is_given(amount: float) -> None:
    """``inc`` as on a prometheus_client Counter (default 1)."""
    counter = LoopMetrics().counter("frames", "Frames")
    counter.inc(amount)
    counter.inc()
    assert counter.value == amount + 1
