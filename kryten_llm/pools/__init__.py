"""Fallback pools: what the live bot says when no provider answers, filled by ``explore``.

Both the bot (:mod:`kryten_llm.pipeline.fallback`, which only reads pools) and the explorer
(:mod:`kryten_llm.explore`, which adds to them) use this package, so it sits low in the
layering: it imports only :mod:`kryten_llm.errors`, :mod:`kryten_llm.files` and the standard
library. :mod:`.pool` holds the pool file and its rotation, :mod:`.text` what makes two
lines the same line.
"""

from __future__ import annotations

from kryten_llm.pools.pool import (
    DEFAULT_POOL_DIR,
    FallbackPool,
    personality_pool_name,
    pool_file_name,
)
from kryten_llm.pools.text import normalize, slug

__all__ = [
    "DEFAULT_POOL_DIR",
    "FallbackPool",
    "normalize",
    "personality_pool_name",
    "pool_file_name",
    "slug",
]
