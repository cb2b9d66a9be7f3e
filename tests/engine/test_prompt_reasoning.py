"""A prompt that allows no reasoning starts the reply past any reasoning block, whatever the template does."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlx_lm.tokenizer_utils import load as load_tokenizer

from mlx_manager.engine.families.base import THINK
from mlx_manager.engine.prompt import render_chat
from mlx_manager.engine.structured import reasoning_opened
from mlx_manager.engine.types import ChatPrompt

ASK = [{"role": "user", "content": "Weather in Oslo?"}]


@pytest.mark.parametrize("model", ["tiny-deepseek-r1", "tiny-qwen3", "tiny-glm4"])
def test_no_reasoning_leaves_no_block_open_and_costs_a_few_tokens(tiny_models: dict[str, Path], model: str) -> None:
    tokenizer = load_tokenizer(tiny_models[model])
    ids, text = render_chat(tokenizer, ChatPrompt(messages=ASK), THINK)
    off_ids, off = render_chat(tokenizer, ChatPrompt(messages=ASK, allow_reasoning=False), THINK)
    assert not reasoning_opened(off, THINK) and off.rstrip().endswith("</think>")
    assert len(ids) < len(off_ids) <= len(ids) + 12  # GLM also writes /nothink into the user turn
    if model == "tiny-deepseek-r1":  # its template always opens the block: closed empty after it
        assert reasoning_opened(text, THINK) and off == text + "</think>\n\n"


def test_families_without_reasoning_tags_render_unchanged(tiny_models: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(tiny_models["tiny-llama"])
    assert render_chat(tokenizer, ChatPrompt(messages=ASK, allow_reasoning=False), None) == render_chat(
        tokenizer, ChatPrompt(messages=ASK), None
    )
