"""The MLX BERT against a plain numpy BERT: every pooling mode, truncation, and the cross-encoder head."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_manager.engine.embeddings.pooling import pool
from tests.engine.embeddings.conftest import load
from tests.engine.embeddings.numpy_bert import NumpyBert

TEXTS = ["What is the capital of France?", "paris", "The old dog and the new cat sleep in the sun."]
DOCUMENTS = ["Paris is the capital of France.", "Berlin is in Germany.", "a cat", "weather rain sun"]


def _pool_np(hidden: np.ndarray, mode: str) -> np.ndarray:
    return {
        "mean_tokens": hidden.mean(0),
        "cls_token": hidden[0],
        "max_tokens": hidden.max(0),
        "mean_sqrt_len_tokens": hidden.sum(0) / np.sqrt(len(hidden)),
    }[mode]


@pytest.mark.parametrize("mode", ["mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens"])
def test_each_pooling_mode_matches_numpy(encoders_dir: Path, mode: str) -> None:
    folder = encoders_dir / f"tiny-bert-{mode}"
    model, ref = load(folder), NumpyBert(folder)
    encoded = model.tokenize(TEXTS)
    vectors = model.embed(encoded)
    for vector, enc in zip(vectors, encoded, strict=True):
        expected = _pool_np(ref.hidden(enc.ids), mode)
        if mode != "max_tokens":  # its modules.json has no Normalize
            expected = expected / np.linalg.norm(expected)
        np.testing.assert_allclose(vector, expected, atol=2e-5)


def test_pooling_ignores_padding() -> None:
    hidden = mx.array(np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32))
    mask = mx.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    h = np.array(hidden)
    np.testing.assert_allclose(np.array(pool(hidden, mask, "mean"))[1], h[1, :2].mean(0), atol=1e-6)
    np.testing.assert_allclose(np.array(pool(hidden, mask, "max"))[1], h[1, :2].max(0), atol=1e-6)
    np.testing.assert_allclose(np.array(pool(hidden, mask, "lasttoken")), h[[0, 1], [3, 1]], atol=1e-6)


def test_inputs_longer_than_max_seq_length_are_truncated_with_cls_and_sep_kept(encoders_dir: Path) -> None:
    model = load(encoders_dir / "tiny-bert-short")
    (enc,) = model.tokenize(["the dog and the cat and the bird and the fish"])
    assert len(enc.ids) == 8 and model.tokenizer.id_to_token(enc.ids[-1]) == "[SEP]"


def test_cross_encoder_scores_match_numpy(encoders_dir: Path) -> None:
    folder = encoders_dir / "tiny-cross-encoder"
    model, ref = load(folder), NumpyBert(folder)
    pairs = model.tokenize_pairs("capital of France", DOCUMENTS)
    assert pairs[0].types is not None and set(pairs[0].types) == {0, 1}  # segment ids reach the model
    scores = model.score(pairs)
    expected = [1 / (1 + np.exp(-ref.logits(p.ids, p.types or [])[0])) for p in pairs]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert len(set(np.round(scores, 4))) == len(DOCUMENTS)  # the random head really tells them apart
    single = np.concatenate([model.score([p]) for p in pairs])
    np.testing.assert_allclose(scores, single, atol=1e-6)


def test_a_quantized_encoder_loads_and_stays_close(encoders_dir: Path, tmp_path: Path) -> None:
    source = encoders_dir / "tiny-bert-mean_tokens"
    folder = tmp_path / "tiny-bert-8bit"
    shutil.copytree(source, folder)
    model = load(source)
    full = model.embed(model.tokenize(TEXTS))
    bert = model.forward
    assert isinstance(bert, nn.Module)
    nn.quantize(bert, group_size=64, bits=8)
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(bert.parameters())))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "quantization": {"group_size": 64, "bits": 8}}))
    quantized = load(folder)
    vectors = quantized.embed(quantized.tokenize(TEXTS))
    assert (vectors * full).sum(1).min() > 0.99
