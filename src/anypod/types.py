"""Type aliases for JSON-shaped data. Standard library only."""

from __future__ import annotations

from typing import Any, TypeAlias

JSONDict: TypeAlias = dict[str, Any]
"""A decoded JSON object."""

RawJSON: TypeAlias = bytes
"""JSON text kept encoded: inputs and outputs pass through the store without a re-parse."""
