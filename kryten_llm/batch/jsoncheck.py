"""``--expect-json``: an answer counts only if it is valid JSON (matching a schema, if given).

Used by the runner after every completion. A model that wraps its JSON in a Markdown code
fence is forgiven (the fence is removed); anything else that does not parse, or does not match
the JSON Schema, is a rejection with a short reason, which the runner sends back as a
corrective nudge before trying again. Schema validation uses the optional ``jsonschema``
package (the ``schema`` extra), imported only when a schema is given.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from kryten_llm.errors import ConfigError

_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
_REASON_LIMIT = 200


def strip_fence(text: str) -> str:
    """``text`` without one surrounding Markdown code fence (```json ... ```), if it has one."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


class JsonExpectation:
    """Checks answers for JSON validity and, optionally, a JSON Schema.

    Args:
        schema_path: a JSON Schema file, or None to require only valid JSON.

    Raises:
        ConfigError: the schema file is unreadable, not JSON, not a valid schema, or
            ``jsonschema`` is not installed.
    """

    def __init__(self, schema_path: Path | None = None) -> None:
        self.schema_path = schema_path
        self.schema: Any = None
        self._validator: Any = None
        if schema_path is None:
            return
        where = str(schema_path)
        try:
            self.schema = json.loads(schema_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                [(where, f"cannot read ({exc.strerror})", "check the path")]
            ) from None
        except ValueError as exc:
            raise ConfigError([(where, f"not valid JSON: {exc}", "fix the schema file")]) from None
        try:
            jsonschema: Any = importlib.import_module("jsonschema")
        except ImportError:
            raise ConfigError(
                [
                    (
                        "schema",
                        "validating against a schema needs jsonschema, which is not installed",
                        "pip install 'kryten-llm[schema]'",
                    )
                ]
            ) from None
        cls = jsonschema.validators.validator_for(self.schema)
        try:
            cls.check_schema(self.schema)
        except jsonschema.exceptions.SchemaError as exc:
            raise ConfigError(
                [(where, f"not a valid JSON Schema: {exc.message}", "fix the schema")]
            ) from None
        self._validator = cls(self.schema)

    def check(self, text: str) -> str | None:
        """Why ``text`` is not acceptable, or None when it is."""
        body = strip_fence(text).strip()
        try:
            value = json.loads(body)
        except ValueError as exc:
            return f"not valid JSON ({exc})"[:_REASON_LIMIT]
        return self.check_value(value)

    def check_value(self, value: Any) -> str | None:
        """Why a decoded value does not match the schema, or None when it does."""
        if self._validator is None:
            return None
        error = next(iter(self._validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"not valid against the schema at {where}: {error.message}"[:_REASON_LIMIT]

    def normalise(self, text: str) -> str:
        """The accepted answer as stored: the JSON text without a code fence."""
        return strip_fence(text).strip()

    def nudge(self, reason: str) -> str:
        """The corrective message sent after a rejected answer."""
        extra = (
            f" It must match this JSON Schema: {json.dumps(self.schema)}"
            if self.schema is not None
            else ""
        )
        return (
            f"Your previous answer could not be used: it is {reason}. Answer again with only "
            f"valid JSON, no explanation and no code fence.{extra}"
        )
