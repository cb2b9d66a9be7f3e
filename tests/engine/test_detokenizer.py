"""Streamed text pieces join to exactly what the tokenizer decodes, spaces and multi-byte characters included."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from mlx_manager.engine.detokenizer import IncrementalDetokenizer

TEXTS = [" there was a king", "héllo wörld — ünïcode ✓ 日本語", "\n\nline one\nline two  spaced", ' 12345 {"a": 1}']


@pytest.mark.parametrize("family", ["tiny-llama", "tiny-gemma3", "tiny-mistral", "tiny-qwen3"])
@pytest.mark.parametrize("text", TEXTS)
def test_pieces_join_to_the_full_decode(tiny_models: dict[str, Path], family: str, text: str) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_models[family])
    prompt = tok.encode("Once upon a time", add_special_tokens=False)
    generated = tok.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tok, prompt)
    pieces = [detok.add(t) for t in generated]
    joined = "".join(pieces) + detok.flush()
    assert joined == tok.decode(generated, skip_special_tokens=False)
    assert all("\ufffd" not in p for p in pieces)


def test_first_token_keeps_its_leading_space(tiny_models: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_models["tiny-llama"])
    detok = IncrementalDetokenizer(tok, tok.encode("Once upon a time", add_special_tokens=False))
    first = tok.encode(" there", add_special_tokens=False)
    assert "".join(detok.add(t) for t in first) + detok.flush() == " there"
