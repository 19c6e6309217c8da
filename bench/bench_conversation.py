"""Ingest rate with the conversation on: bench_ingest.py's stream, participation enabled.

The same N distinct non-triggering lines as ``bench_ingest.py`` (the same script runs), with
joining in, follow-ups and the share budget on (base chance 0: no line is joined, so every line
pays for the share window, the follow-up lookup and the cap check, and nothing else changes).
Compare with ``bench_ingest.py`` for the cost of the conversation in the NATS callback.

    python bench/bench_conversation.py [N]
"""

from __future__ import annotations

import asyncio
import sys

from bench_ingest import main

if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 200_000,
            participation={"enabled": True, "base_probability": 0.0},
            followups={"enabled": True},
        )
    )
