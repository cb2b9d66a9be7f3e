"""Load a model folder with mlx-lm and measure what it costs in memory."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm import load as mlx_load
from mlx_lm.tokenizer_utils import TokenizerWrapper

from mlx_manager.engine.discovery import read_json
from mlx_manager.engine.errors import ModelLoadError
from mlx_manager.engine.families import DEFAULT, Family, detect_family
from mlx_manager.engine.types import ModelInfo

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    info: ModelInfo
    model: nn.Module
    tokenizer: TokenizerWrapper
    stop_token_ids: frozenset[int]
    context_length: int | None
    memory_bytes: int
    vocab_size: int
    family: Family = DEFAULT
    # The grammar factory, built on the first constrained request (wrapping a real vocabulary takes ~1 s).
    constraints: Any = None


def _stop_token_ids(tokenizer: object, end_of_turn: tuple[str, ...]) -> frozenset[int]:
    ids = set(getattr(tokenizer, "eos_token_ids", set()) or set())
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    ids.update(vocab[tok] for tok in end_of_turn if tok in vocab)
    return frozenset(ids)


def load_model(info: ModelInfo) -> LoadedModel:
    """Runs on the model's own thread: MLX streams are thread-local, so load and generate share one."""
    start = time.perf_counter()
    before = mx.get_active_memory()
    try:
        loaded = mlx_load(info.path)
        model, tokenizer = loaded[0], loaded[1]
        mx.eval(model.parameters())
    except Exception as exc:  # mlx-lm raises many kinds; all mean the same to the caller
        raise ModelLoadError(f"Could not load model '{info.id}' from {info.path}: {exc}") from exc
    memory = max(mx.get_active_memory() - before, 0)
    config = read_json(Path(info.path) / "config.json")
    vocab = tokenizer.get_vocab()
    family = detect_family(config, set(tokenizer.all_special_tokens) | set(tokenizer.added_tokens_encoder))
    stop_ids = _stop_token_ids(tokenizer, family.end_of_turn_tokens)
    log.info(
        "Loaded %s (%s family, %.1f MB) in %.2fs; stop tokens %s",
        info.id,
        family.name,
        memory / 1e6,
        time.perf_counter() - start,
        sorted(stop_ids),
    )
    return LoadedModel(
        info=info,
        model=model,
        tokenizer=tokenizer,
        stop_token_ids=stop_ids,
        context_length=info.context_length,
        memory_bytes=memory or info.size_bytes,
        vocab_size=max(len(vocab), int(config.get("vocab_size") or 0)),
        family=family,
    )


def release_memory() -> None:
    gc.collect()
    mx.clear_cache()
