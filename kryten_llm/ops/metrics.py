"""The metrics of one service on ``prometheus_client``, and their text for ``GET /metrics``.

Each :class:`Registry` owns its own :class:`~prometheus_client.CollectorRegistry`: several
services (or tests) in one process never share a metric, and nothing is put on the library's
global ``REGISTRY``. Nothing here starts a thread or an HTTP server; the aiohttp server in
:mod:`kryten_llm.ops.web` serves :meth:`Registry.render`.

Two kinds of metric:

- live ones this process updates as things happen (:meth:`Registry.counter`,
  :meth:`Registry.histogram`): ``prometheus_client``'s own ``Counter`` and ``Histogram``;
- read ones whose values live elsewhere (the service's
  :class:`~kryten_llm.pipeline.stats.Stats`, the queue, the circuit breakers) and are read
  when scraped (:meth:`Registry.gauge`, :meth:`Registry.counter_from`): a small collector
  calls back for ``{label values: value}``.

Label values must come from bounded sets (event kinds, reasons, provider names): never a user
name or a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "LabelValues", "Read", "Registry"]

LabelValues = tuple[str, ...]
Read = Callable[[], dict[LabelValues, float]]

# Latency buckets in seconds, from a cached local answer to a slow cloud model.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _ReadOnScrape(Collector):
    """One metric family whose samples come from a callback at each scrape."""

    def __init__(
        self, name: str, help_text: str, read: Read, labels: Sequence[str], *, counter: bool
    ) -> None:
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)
        self._read = read
        self._counter = counter

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        kind = CounterMetricFamily if self._counter else GaugeMetricFamily
        return kind(self.name, self.help, labels=self.labels)

    def describe(self) -> Iterator[Metric]:
        # Lets the registry refuse a second metric of the same name without calling back.
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, value in sorted(self._read().items()):
            if len(values) != len(self.labels):
                raise ValueError(f"{self.name} takes labels {self.labels}, got {values}")
            family.add_metric([str(v) for v in values], float(value))
        yield family


class _WithoutCreated(Collector):
    """A registry's metrics without the ``_created`` timestamps of counters and histograms.

    ``prometheus_client`` adds them to every counter and histogram, and the text format 0.0.4
    shows each as one more gauge family (``kryten_llm_replies_created``...). Prometheus reads
    nothing from them and ``generate_latest`` cannot leave them out per registry (only a
    process-wide switch can), so they are dropped here.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            created = metric.name + "_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


class Registry:
    """The metrics of one service.

    Args:
        prefix: put before every metric name (``kryten_llm_``).
    """

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self.collectors = CollectorRegistry()
        self._exposed = _WithoutCreated(self.collectors)

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        """A counter this process increments; exported as ``<prefix><name>_total``."""
        return Counter(self._prefix + name, help_text, labels, registry=self.collectors)

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """Observations counted into cumulative buckets, with their sum and count."""
        return Histogram(
            self._prefix + name, help_text, labels, registry=self.collectors, buckets=buckets
        )

    def gauge(self, name: str, help_text: str, read: Read, labels: Sequence[str] = ()) -> None:
        """A gauge whose values ``read()`` returns when scraped."""
        self._read(name, help_text, read, labels, counter=False)

    def counter_from(
        self, name: str, help_text: str, read: Read, labels: Sequence[str] = ()
    ) -> None:
        """A counter whose values live elsewhere (the service's :class:`Stats`), read on scrape."""
        self._read(name, help_text, read, labels, counter=True)

    def _read(
        self, name: str, help_text: str, read: Read, labels: Sequence[str], *, counter: bool
    ) -> None:
        collector = _ReadOnScrape(self._prefix + name, help_text, read, labels, counter=counter)
        self.collectors.register(collector)

    def render(self) -> str:
        """The whole registry in the Prometheus text format 0.0.4."""
        return generate_latest(self._exposed).decode()
