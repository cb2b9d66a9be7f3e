"""Tiny random-weight models loaded once for the constrained-decoding tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.constraints.helpers import TinyLM, load_tiny


@pytest.fixture(scope="session")
def qwen(tiny_models: dict[str, Path]) -> TinyLM:
    """tiny-qwen3: 986 tokenizer ids, 1024 logits, `<tool_call>` as an added token."""
    return load_tiny(tiny_models["tiny-qwen3"])


@pytest.fixture(scope="session")
def llama(tiny_models: dict[str, Path]) -> TinyLM:
    return load_tiny(tiny_models["tiny-llama"])


@pytest.fixture(scope="session")
def gpt_oss(tiny_models: dict[str, Path]) -> TinyLM:
    """tiny-gpt-oss: harmony's channel tokens are special tokens."""
    return load_tiny(tiny_models["tiny-gpt-oss"])
