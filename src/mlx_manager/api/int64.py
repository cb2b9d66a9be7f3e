"""Integer fields of the model-serving APIs are signed 64-bit, as OpenAI's and Anthropic's own schemas have them:
the types live in mlx_manager/int64.py, shared with the manager's routes and the tables."""

from __future__ import annotations

from mlx_manager.int64 import INT64_MAX, INT64_MIN, Count, Int64
from mlx_manager.int64 import PositiveInt as Positive

__all__ = ["INT64_MAX", "INT64_MIN", "Count", "Int64", "Positive"]
