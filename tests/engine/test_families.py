"""Families come from config.json and the special tokens, never from the model's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_manager.engine.discovery import read_json, special_tokens
from mlx_manager.engine.families import detect_family


@pytest.mark.parametrize(
    ("model", "family", "tool_format", "reasoning"),
    [
        ("tiny-llama", "llama3", "llama3_json", False),
        ("tiny-qwen3", "qwen3", "hermes", True),
        ("tiny-mistral", "mistral", "mistral", False),
        ("tiny-gemma3", "gemma", "gemma", False),
    ],
)
def test_tiny_models_get_their_family(
    tiny_models: dict[str, Path], model: str, family: str, tool_format: str, reasoning: bool
) -> None:
    folder = tiny_models[model]
    detected = detect_family(read_json(folder / "config.json"), special_tokens(folder))
    assert (detected.name, detected.tool_format, detected.reasoning is not None) == (family, tool_format, reasoning)


@pytest.mark.parametrize(
    ("model_type", "tokens", "family"),
    [
        ("qwen2", {"<|im_end|>", "<tool_call>"}, "qwen2.5"),
        ("qwen2", {"<｜end▁of▁sentence｜>", "<think>"}, "deepseek-r1"),
        ("llama", {"<|im_end|>"}, "chatml"),
        ("glm4_moe", {"<|user|>"}, "glm4"),
        ("phi3", {"<|end|>", "<|tool_call|>"}, "phi4"),
        ("gpt_oss", {"<|return|>"}, "gpt-oss"),
        ("deepseek_v3", {"<｜end▁of▁sentence｜>"}, "deepseek-r1"),
        ("starcoder2", set(), "default"),
    ],
)
def test_detection_uses_model_type_and_markers(model_type: str, tokens: set[str], family: str) -> None:
    assert detect_family({"model_type": model_type}, tokens).name == family
