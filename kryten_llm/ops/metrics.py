"""A small Prometheus registry: counters, gauges and histograms rendered as text format 0.0.4.

The service needs a dozen metrics and one exposition format; ``prometheus_client`` would bring a
process-global registry and threads for that. Here a :class:`Registry` belongs to one service,
every metric declares its label names up front, and :meth:`Registry.render` writes the text
format (``# HELP``, ``# TYPE``, escaped label values, ``_bucket``/``_sum``/``_count`` for
histograms). Label values must come from bounded sets (event kinds, reasons, provider names):
never a user name or a message.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, TypeVar

LabelValues = tuple[str, ...]

# Latency buckets in seconds, from a cached local answer to a slow cloud model.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metric:
    """Common parts: name, help text, label names, rendering of one sample line."""

    kind: ClassVar[str] = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)

    def _key(self, values: Sequence[str]) -> LabelValues:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(values)}")
        return tuple(str(v) for v in values)

    def _sample(
        self, suffix: str, values: LabelValues, value: float, extra: tuple[str, str] | None = None
    ) -> str:
        pairs = [f'{k}="{_escape(v)}"' for k, v in zip(self.labels, values, strict=True)]
        if extra is not None:
            pairs.append(f'{extra[0]}="{_escape(extra[1])}"')
        labels = "{" + ",".join(pairs) + "}" if pairs else ""
        return f"{self.name}{suffix}{labels} {_number(value)}"

    def samples(self) -> Iterable[str]:  # pragma: no cover - overridden
        return ()

    def render(self) -> list[str]:
        # Text format 0.0.4 names a counter's family with its ``_total`` suffix.
        family = self.name + ("_total" if self.kind == "counter" else "")
        return [f"# HELP {family} {self.help}", f"# TYPE {family} {self.kind}", *self.samples()]


class Counter(Metric):
    """A value that only goes up (per label combination)."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[LabelValues, float] = {}
        if not self.labels:
            self.values[()] = 0.0

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter cannot go down")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        for values, value in sorted(self.values.items()):
            yield self._sample("_total", values, value)


class Gauge(Metric):
    """A value read when scraped, from a callback returning ``{label values: value}``."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        read: Callable[[], dict[LabelValues, float]],
        labels: Sequence[str] = (),
    ) -> None:
        super().__init__(name, help_text, labels)
        self._read = read

    def samples(self) -> Iterable[str]:
        suffix = "_total" if self.kind == "counter" else ""
        for values, value in sorted(self._read().items()):
            yield self._sample(suffix, self._key(values), value)


class ReadCounter(Gauge):
    """A counter read from a callback when scraped (values that only go up)."""

    kind = "counter"


class Histogram(Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[LabelValues, list[float]] = {}  # per bucket counts, sum, count

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0.0] * (len(self.buckets) + 2)
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            series[index] += 1
        series[-2] += value
        series[-1] += 1

    def count(self, *labels: str) -> int:
        series = self._series.get(self._key(labels))
        return int(series[-1]) if series else 0

    def samples(self) -> Iterable[str]:
        for values, series in sorted(self._series.items()):
            running = 0.0
            for bound, hits in zip(self.buckets, series, strict=False):
                running += hits
                yield self._sample("_bucket", values, running, ("le", repr(float(bound))))
            yield self._sample("_bucket", values, series[-1], ("le", "+Inf"))
            yield self._sample("_sum", values, series[-2])
            yield self._sample("_count", values, series[-1])


_M = TypeVar("_M", bound=Metric)


class Registry:
    """The metrics of one service, in registration order."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._metrics: list[Metric] = []

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(self._prefix + name, help_text, labels))

    def gauge(
        self,
        name: str,
        help_text: str,
        read: Callable[[], dict[LabelValues, float]],
        labels: Sequence[str] = (),
    ) -> Gauge:
        return self._add(Gauge(self._prefix + name, help_text, read, labels))

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(self._prefix + name, help_text, labels, buckets))

    def counter_from(
        self,
        name: str,
        help_text: str,
        read: Callable[[], dict[LabelValues, float]],
        labels: Sequence[str] = (),
    ) -> Gauge:
        """A counter whose values live elsewhere (the service's :class:`Stats`), read on scrape."""
        return self._add(ReadCounter(self._prefix + name, help_text, read, labels))

    def _add(self, metric: _M) -> _M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """The whole registry in the Prometheus text format."""
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.render()
        return "\n".join(lines) + "\n"
