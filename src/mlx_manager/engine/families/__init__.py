"""Model families, chosen from config.json and the tokenizer's special tokens, never the model's name."""

from __future__ import annotations

from typing import Any

from mlx_manager.engine.families.base import Family
from mlx_manager.engine.families.deepseek import DEEPSEEK_R1
from mlx_manager.engine.families.gemma import GEMMA
from mlx_manager.engine.families.glm import GLM4
from mlx_manager.engine.families.gpt_oss import GPT_OSS
from mlx_manager.engine.families.llama import LLAMA3
from mlx_manager.engine.families.mistral import MISTRAL
from mlx_manager.engine.families.phi import PHI4
from mlx_manager.engine.families.qwen import CHATML, QWEN3, QWEN25

DEFAULT = Family(name="default", model_types=())

# Order matters: the first family whose model_type and markers match wins, so the most specific come first.
FAMILIES: tuple[Family, ...] = (DEEPSEEK_R1, LLAMA3, MISTRAL, QWEN3, QWEN25, CHATML, GEMMA, GLM4, PHI4, GPT_OSS)


def detect_family(config: dict[str, Any], vocab: set[str]) -> Family:
    # A vision-language model (e.g. LLaVA) is also known by its language model's type.
    text_config = config.get("text_config")
    text_type = text_config.get("model_type") if isinstance(text_config, dict) else None
    candidates = [config, {**config, "model_type": text_type}] if text_type else [config]
    for candidate in candidates:
        for family in FAMILIES:
            if family.matches(candidate, vocab):
                return family
    return DEFAULT


__all__ = ["DEFAULT", "FAMILIES", "Family", "detect_family"]
