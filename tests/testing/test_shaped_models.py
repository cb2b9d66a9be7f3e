"""Models with a chosen (e.g. 0.5B) shape: same tokenizer and templates as the tiny ones, requested dimensions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest
from mlx_lm import stream_generate

from mlx_manager.testing import tiny_models
from mlx_manager.testing.tiny_models import SHAPES, write_shaped_model
from tests.testing.helpers import folder_of as _folder
from tests.testing.helpers import load_model as _load
from tests.testing.helpers import read_json as _json
from tests.testing.test_tiny_models import BASE_FAMILIES, SYSTEM_AND_USER

# A small shape that differs from the tiny one in every dimension, so the tests stay fast.
SMALL_SHAPE = {
    "hidden_size": 192,
    "num_layers": 4,
    "num_heads": 6,
    "num_kv_heads": 2,
    "intermediate_size": 512,
    "vocab_size": 1088,
    "context_length": 1024,
}


@pytest.mark.parametrize("family", BASE_FAMILIES)
def test_shaped_model_has_the_requested_dims_and_generates_up_to_max_tokens(
    tiny_dir: Path, tmp_path: Path, family: str
) -> None:
    folder = write_shaped_model(tmp_path, family, f"shaped-{family}", **SMALL_SHAPE)
    assert folder == tmp_path / f"shaped-{family}"
    config = _json(folder / "config.json")
    assert config["hidden_size"] == 192
    assert config["num_hidden_layers"] == 4
    assert config["num_attention_heads"] == 6
    assert config["num_key_value_heads"] == 2
    assert config["head_dim"] == 32
    assert config["intermediate_size"] == 512
    assert config["vocab_size"] == 1088
    assert config["max_position_embeddings"] == 1024
    assert config["torch_dtype"] == "float32"
    assert "quantization" not in config
    if "layer_types" in config:
        assert len(config["layer_types"]) == 4
    tiny = _folder(tiny_dir, family)
    for name in ("tokenizer.json", "special_tokens_map.json", "generation_config.json"):
        assert (folder / name).read_bytes() == (tiny / name).read_bytes(), name
    assert (
        _json(folder / "tokenizer_config.json")["chat_template"]
        == _json(tiny / "tokenizer_config.json")["chat_template"]
    )
    weights = mx.load(str(folder / "model.safetensors"))
    assert isinstance(weights, dict)
    assert {w.dtype for w in weights.values()} == {mx.float32}

    model, tokenizer = _load(folder)
    prompt = tokenizer.apply_chat_template(SYSTEM_AND_USER, add_generation_prompt=True)
    logits = model(mx.array([prompt]))
    assert logits.shape == (1, len(prompt), 1088)
    assert mx.all(mx.isfinite(logits)).item()
    responses = list(stream_generate(model, tokenizer, prompt, max_tokens=32))
    assert len(responses) == 32
    assert responses[-1].finish_reason == "length"
    # Padding ids above the tokenizer and special ids are suppressed, as in the tiny models.
    special = set(tokenizer.all_special_ids) | set(tokenizer.eos_token_ids)
    assert not special & {r.token for r in responses}
    assert max(r.token for r in responses) < len(tokenizer.vocab)


def test_shaped_model_is_kept_when_complete_and_rewritten_when_the_dims_change(tmp_path: Path) -> None:
    folder = write_shaped_model(tmp_path, "llama", "m", **SMALL_SHAPE)
    weights = folder / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert write_shaped_model(tmp_path, "llama", "m", **SMALL_SHAPE) == folder
    assert weights.stat().st_mtime_ns == written
    deeper = {**SMALL_SHAPE, "num_layers": 5}
    assert write_shaped_model(tmp_path, "llama", "m", **deeper) == folder
    assert _json(folder / "config.json")["num_hidden_layers"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_shaped_model_vocab_defaults_to_the_tiny_one(tmp_path: Path) -> None:
    small = {k: v for k, v in SMALL_SHAPE.items() if k not in ("vocab_size", "context_length")}
    folder = write_shaped_model(tmp_path, "qwen3", "q", **small)
    config = _json(folder / "config.json")
    assert config["vocab_size"] == 1024
    assert config["max_position_embeddings"] == 4096
    assert config["max_window_layers"] == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_heads": 5}, "num_heads"),
        ({"num_kv_heads": 4}, "num_kv_heads"),
        ({"vocab_size": 512}, "vocab_size 512 is smaller"),
        ({"num_layers": 0}, "positive"),
    ],
)
def test_shaped_model_rejects_impossible_dims(tmp_path: Path, change: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_shaped_model(tmp_path, "llama", "bad", **{**SMALL_SHAPE, **change})
    assert not any(tmp_path.iterdir())


def test_shaped_model_rejects_unknown_and_quantized_families(tmp_path: Path) -> None:
    for family in ("gpt2", "llama-4bit"):
        with pytest.raises(ValueError, match="unknown model family"):
            write_shaped_model(tmp_path, family, "x", **SMALL_SHAPE)


def test_command_line_shape_writes_a_llama_with_the_named_dims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real 0.5B build takes seconds and 1.4 GB, so only the arguments are checked here.
    calls: list[tuple[Any, ...]] = []

    def fake(out_dir: Path, family: str, name: str, **dims: Any) -> Path:
        calls.append((out_dir, family, name, dims))
        return out_dir / name

    monkeypatch.setattr(tiny_models, "write_shaped_model", fake)
    assert tiny_models.main([str(tmp_path), "--shape", "qwen2.5-0.5b"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "shaped-llama-0.5b")
    dims = {
        "hidden_size": 896,
        "num_layers": 24,
        "num_heads": 14,
        "num_kv_heads": 2,
        "intermediate_size": 4864,
        "force": False,
    }
    assert calls == [(tmp_path, "llama", "shaped-llama-0.5b", dims)]
    assert SHAPES["qwen2.5-0.5b"].tag == "0.5b"
