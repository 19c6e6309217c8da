"""``--estimate-cost``: what a batch will cost and how long it will take, before it starts.

A dry pass over the input (streamed, nothing is sent): tokens are estimated at about four
characters each, the answer's tokens are bounded by ``max_tokens``, and prices come from each
provider's ``price_input_per_million`` / ``price_output_per_million``. Time is bounded below by
the rate limit and estimated from the concurrency and an assumed per-request latency (the
scripted provider's configured latency, else :data:`ASSUMED_LATENCY_SECONDS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kryten_llm.batch.targets import Target
from kryten_llm.config import ProviderConfig

CHARS_PER_TOKEN = 4
ASSUMED_LATENCY_SECONDS = 2.0
_OVERHEAD_TOKENS = 8  # role markers and message framing per request


def tokens_of(text: str) -> int:
    """A rough token count: about four characters per token."""
    return -(-len(text) // CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class TargetEstimate:
    """The estimate for one model."""

    label: str
    requests: int
    input_tokens: int
    max_output_tokens: int
    min_cost_usd: float
    max_cost_usd: float
    priced: bool


@dataclass(frozen=True, slots=True)
class Estimate:
    """The whole batch's estimate."""

    rows: int
    targets: tuple[TargetEstimate, ...]
    seconds: float
    min_seconds_by_rate: float | None
    latency_assumed: float

    def lines(self) -> list[str]:
        """Human-readable lines for the confirmation prompt."""
        out = [f"estimate for {self.rows} rows:"]
        for t in self.targets:
            cost = (
                f"${t.min_cost_usd:.4f} .. ${t.max_cost_usd:.4f}"
                if t.priced
                else "no price configured"
            )
            out.append(
                f"  {t.label}: {t.requests} requests, ~{t.input_tokens} input tokens, "
                f"at most {t.max_output_tokens} output tokens, cost {cost}"
            )
        total_min = sum(t.min_cost_usd for t in self.targets)
        total_max = sum(t.max_cost_usd for t in self.targets)
        out.append(f"  total cost: ${total_min:.4f} .. ${total_max:.4f}")
        from kryten_llm.batch.progress import duration

        rate_note = (
            f", at least {duration(self.min_seconds_by_rate)} by the rate limit"
            if self.min_seconds_by_rate is not None
            else ""
        )
        out.append(
            f"  time: about {duration(self.seconds)} (assuming {self.latency_assumed:g} s per "
            f"request{rate_note})"
        )
        return out


def estimate(
    prompts: Iterable[str],
    *,
    system: str | None,
    targets: Sequence[Target],
    providers: Mapping[str, ProviderConfig],
    rows_per_request: int,
    concurrency: int,
    rate_limit: float | None,
    rate_window: float,
    max_tokens: int | None,
) -> Estimate:
    """Estimate tokens, cost and time from the rendered prompts (streamed once).

    Args:
        prompts: the user prompts, one per row.
        system: the system prompt sent with every request.
        targets: the models asked.
        providers: provider configs by key (for prices, max_tokens and latency).
        rows_per_request: packing factor.
        concurrency: requests in flight at once.
        rate_limit: requests per ``rate_window`` (None: unlimited).
        rate_window: seconds.
        max_tokens: the run's answer cap (None: each provider's).
    """
    rows = 0
    prompt_tokens = 0
    for prompt in prompts:
        rows += 1
        prompt_tokens += tokens_of(prompt) + _OVERHEAD_TOKENS
    requests = -(-rows // rows_per_request) if rows else 0
    system_tokens = tokens_of(system or "") * requests
    results = []
    latencies = []
    for target in targets:
        config = providers[target.chain[0]]
        cap = max_tokens or config.max_tokens
        output = rows * cap
        input_tokens = prompt_tokens + system_tokens
        low = input_tokens * config.price_input_per_million / 1_000_000
        high = low + output * config.price_output_per_million / 1_000_000
        priced = bool(config.price_input_per_million or config.price_output_per_million)
        results.append(
            TargetEstimate(target.label, requests, input_tokens, output, low, high, priced)
        )
        latencies.append(
            config.latency_ms / 1000 if config.type == "scripted" else ASSUMED_LATENCY_SECONDS
        )
    latency = max(latencies, default=ASSUMED_LATENCY_SECONDS)
    total_requests = requests * len(targets)
    by_concurrency = total_requests * latency / concurrency
    by_rate = None
    if rate_limit:
        by_rate = max(total_requests - 1, 0) * rate_window / rate_limit
    seconds = max(by_concurrency, by_rate or 0.0)
    return Estimate(rows, tuple(results), seconds, by_rate, latency)


def as_dict(value: Estimate) -> dict[str, Any]:
    """The estimate as plain data (for ``--json`` style output and the API)."""
    return {
        "rows": value.rows,
        "seconds": round(value.seconds, 1),
        "min_seconds_by_rate": value.min_seconds_by_rate,
        "targets": [
            {
                "model": t.label,
                "requests": t.requests,
                "input_tokens": t.input_tokens,
                "max_output_tokens": t.max_output_tokens,
                "min_cost_usd": round(t.min_cost_usd, 6),
                "max_cost_usd": round(t.max_cost_usd, 6),
            }
            for t in value.targets
        ],
    }
