"""Shared by the API tests."""

from __future__ import annotations

# One tiny model per family, each with its family's real chat template and special tokens.
FAMILY_MODELS = [
    "tiny-llama",
    "tiny-qwen3",
    "tiny-mistral",
    "tiny-gemma3",
    "tiny-glm4",
    "tiny-deepseek-r1",
    "tiny-phi4",
    "tiny-gpt-oss",
    "tiny-qwen2.5",
]
