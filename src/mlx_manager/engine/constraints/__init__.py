"""Grammar-constrained decoding (JSON object, JSON Schema, forced tool calls) with llguidance.

A ConstraintFactory is built once per loaded model; `factory.processor(spec)` gives a per-sequence mlx-lm
logits processor that masks disallowed tokens during generation, inside continuous batching, on any backend
(the mask is applied with `mx.where`, no Metal kernel).
"""

from mlx_manager.engine.constraints.factory import ConstraintFactory, Grammar
from mlx_manager.engine.constraints.processor import GrammarProcessor
from mlx_manager.engine.constraints.specs import (
    ConstraintError,
    ConstraintSpec,
    FramedSpec,
    JsonObjectSpec,
    JsonOptions,
    JsonSchemaSpec,
    LarkSpec,
    Preamble,
    ToolCallSpec,
    ToolFunction,
)

__all__ = [
    "ConstraintError",
    "ConstraintFactory",
    "ConstraintSpec",
    "FramedSpec",
    "Grammar",
    "GrammarProcessor",
    "JsonObjectSpec",
    "JsonOptions",
    "JsonSchemaSpec",
    "LarkSpec",
    "Preamble",
    "ToolCallSpec",
    "ToolFunction",
]
