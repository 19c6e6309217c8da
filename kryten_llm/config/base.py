"""The base every config section shares, and the environment prefix of every override."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "KRYTEN_LLM_"


def checked_patterns(patterns: list[str]) -> list[str]:
    """``patterns`` unchanged if every one is a valid regex; else a ValueError naming it."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from exc
    return patterns


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are re-checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
