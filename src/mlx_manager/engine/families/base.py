"""What the engine needs to know about a model family: how a turn ends, how tool calls and reasoning look."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THINK = ("<think>", "</think>")


@dataclass(frozen=True)
class Family:
    name: str
    # config.json model_type values that belong to this family.
    model_types: tuple[str, ...]
    # Tokens that end an assistant turn, besides the tokenizer's EOS and generation_config's ids.
    end_of_turn_tokens: tuple[str, ...] = ()
    # Special tokens whose presence identifies the family when model_type is shared (any one suffices).
    marker_tokens: tuple[str, ...] = ()
    # Output parser format for tool calls (engine/parsers), None when the family has no tool-call convention.
    tool_format: str | None = None
    # Reasoning delimiters in the output, None when the family does not reason in tags.
    reasoning: tuple[str, str] | None = None

    def matches(self, config: dict[str, Any], vocab: set[str]) -> bool:
        if config.get("model_type") not in self.model_types:
            return False
        return not self.marker_tokens or any(t in vocab for t in self.marker_tokens)
