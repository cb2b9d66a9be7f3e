"""What the engine needs to know about a model family: its end-of-turn tokens, for now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    # config.json model_type values that belong to this family.
    model_types: tuple[str, ...]
    # Tokens that end an assistant turn, besides the tokenizer's EOS and generation_config's ids.
    end_of_turn_tokens: tuple[str, ...] = ()
    # Special tokens whose presence in the vocabulary identifies the family (checked when model_type is shared).
    marker_tokens: tuple[str, ...] = ()

    def matches(self, config: dict[str, Any], vocab: set[str]) -> bool:
        if config.get("model_type") not in self.model_types:
            return False
        return not self.marker_tokens or any(t in vocab for t in self.marker_tokens)
