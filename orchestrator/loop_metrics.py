"""Counters and histograms for the conversation's hot path, without locks.

``prometheus_client`` guards every value with a lock (a process may update it
from several threads) and finds a histogram's bucket with a Python loop; a
turn updates nine such values. These are touched only from the event loop's
thread, so a plain number each is enough: ``LoopMetrics`` holds them and hands
them to the registry at scrape time in the same exposition format (without
the ``_created`` series).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class LoopCounter:
    """A counter updated only from the event loop's thread."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LoopHistogram:
    """A histogram updated only from the event loop's thread (``le`` buckets)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # The first bucket whose bound is >= value: Prometheus buckets are "le".
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(_float_text, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


class LoopHistogramFamily:
    """``LoopHistogram``s by one label's value; past ``max_values`` distinct values,
    the rest are counted under ``overflow`` (series cannot grow without bound)."""

    __slots__ = ("bounds", "children", "max_values", "overflow")

    def __init__(self, bounds: Sequence[float], *, max_values: int, overflow: str) -> None:
        self.bounds = tuple(bounds)
        self.children: dict[str, LoopHistogram] = {}
        self.max_values = max_values
        self.overflow = overflow

    def labels(self, value: str) -> LoopHistogram:
        child = self.children.get(value)
        if child is None:
            if len(self.children) >= self.max_values:
                value = self.overflow
                child = self.children.get(value)
            if child is None:
                child = self.children[value] = LoopHistogram(self.bounds)
        return child


class LoopMetrics(Collector):
    """The registry's view of the loop-thread counters and histograms."""

    def __init__(self) -> None:
        self._counters: list[tuple[str, str, LoopCounter]] = []
        self._histograms: list[tuple[str, str, LoopHistogram]] = []
        self._families: list[tuple[str, str, str, LoopHistogramFamily]] = []

    def counter(self, name: str, documentation: str) -> LoopCounter:
        counter = LoopCounter()
        self._counters.append((name, documentation, counter))
        return counter

    def histogram(self, name: str, documentation: str, bounds: Sequence[float]) -> LoopHistogram:
        histogram = LoopHistogram(bounds)
        self._histograms.append((name, documentation, histogram))
        return histogram

    def histogram_family(
        self,
        name: str,
        documentation: str,
        bounds: Sequence[float],
        *,
        label: str,
        max_values: int,
        overflow: str = "other",
    ) -> LoopHistogramFamily:
        family = LoopHistogramFamily(bounds, max_values=max_values, overflow=overflow)
        self._families.append((name, documentation, label, family))
        return family

    def collect(self) -> Iterator[Metric]:
        for name, documentation, counter in self._counters:
            yield CounterMetricFamily(name, documentation, value=counter.value)
        for name, documentation, histogram in self._histograms:
            metric = HistogramMetricFamily(name, documentation)
            metric.add_metric([], histogram.cumulative(), sum_value=histogram.sum)
            yield metric
        for name, documentation, label, family in self._families:
            metric = HistogramMetricFamily(name, documentation, labels=[label])
            for value, histogram in list(family.children.items()):
                metric.add_metric([value], histogram.cumulative(), sum_value=histogram.sum)
            yield metric


def _float_text(bound: float) -> str:
    # As prometheus_client writes bucket bounds (0.005, 1.0, 10.0).
    return repr(float(bound))
