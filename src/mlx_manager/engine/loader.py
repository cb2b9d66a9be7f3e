"""Load a model folder with mlx-lm (mlx-vlm for vision models) and measure what it costs in memory."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm import load as mlx_load
from mlx_lm.tokenizer_utils import TokenizerWrapper

from mlx_manager.engine.cpu_dtype import WeightPlan, to_float32, weight_format
from mlx_manager.engine.discovery import read_json
from mlx_manager.engine.families import DEFAULT, Family, detect_family
from mlx_manager.engine.kv_quant import check
from mlx_manager.engine.load_meter import loading
from mlx_manager.engine.types import FLOAT_KV, KVSetting, ModelInfo

if TYPE_CHECKING:
    from mlx_manager.engine.adapters.lora import AdapterSet
    from mlx_manager.engine.vision.loader import VisionParts

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
    # A vision-language model's mlx-vlm processor and settings (engine/vision), None for text models.
    vision: VisionParts | None = None
    # What the weights compute in, the bits of layers still quantized, and the stored format when converted.
    dtype: str = "float32"
    quantization_bits: int | None = None
    converted_from: str | None = None
    # The longest token in characters: a text longer than context x this (twice over) cannot fit the context.
    max_token_chars: int = 0
    # How its KV cache is kept (kv_bits / kv_group_size, engine/kv_quant): float or quantized.
    kv: KVSetting = FLOAT_KV
    # LoRA adapters attached to these weights (engine/adapters), made with the first one.
    adapters: AdapterSet | None = None


def _stop_token_ids(tokenizer: object, end_of_turn: tuple[str, ...]) -> frozenset[int]:
    ids = set(getattr(tokenizer, "eos_token_ids", set()) or set())
    vocab = tokenizer.get_vocab()  # type: ignore[attr-defined]
    ids.update(vocab[tok] for tok in end_of_turn if tok in vocab)
    return frozenset(ids)


def load_model(info: ModelInfo, plan: WeightPlan | None = None) -> LoadedModel:
    """Runs on the model's own thread: MLX streams are thread-local, so load and generate share one.
    `plan.dtype` "float32" converts the weights at load (engine/cpu_dtype)."""
    if info.vision:
        from mlx_manager.engine.vision.loader import load_vision_model  # deferred: mlx-vlm imports transformers

        return load_vision_model(info)
    convert = plan if plan is not None and plan.dtype == "float32" else None
    with loading(info) as meter:
        # Lazy when converting: the stored arrays are read, converted and freed in one evaluation.
        loaded = mlx_load(info.path, lazy=convert is not None)
        model, tokenizer = loaded[0], loaded[1]
        if convert is not None:
            to_float32(model)
        mx.eval(model.parameters())
    memory = meter.memory()
    kv = check(model, plan.kv, info.id) if plan is not None else FLOAT_KV
    converted_from = convert.converted_from if convert is not None else None
    if convert is not None:
        log.info(
            "Running %s in float32 on CPU (was %s, %.0f MB -> %.0f MB)",
            info.id,
            converted_from,
            info.size_bytes / 1e6,
            memory / 1e6,
        )
    return describe_loaded(info, model, tokenizer, memory, meter.start, converted_from=converted_from, kv=kv)


def describe_loaded(
    info: ModelInfo,
    model: nn.Module,
    tokenizer: TokenizerWrapper,
    memory: int,
    start: float,
    vision: VisionParts | None = None,
    converted_from: str | None = None,
    kv: KVSetting = FLOAT_KV,
) -> LoadedModel:
    """The LoadedModel for a model and tokenizer just loaded: family, stop tokens, vocabulary size."""
    config = read_json(Path(info.path) / "config.json")
    vocab = tokenizer.get_vocab()
    family = detect_family(config, set(tokenizer.all_special_tokens) | set(tokenizer.added_tokens_encoder))
    stop_ids = _stop_token_ids(tokenizer, family.end_of_turn_tokens)
    log.info(
        "Loaded %s (%s family%s, %s KV, %.1f MB) in %.2fs; stop tokens %s",
        info.id,
        family.name,
        ", vision" if vision is not None else "",
        kv.describe(),
        memory / 1e6,
        time.perf_counter() - start,
        sorted(stop_ids),
    )
    # A vision-language model keeps its language model's sizes under text_config.
    text_config = config.get("text_config")
    text_config = text_config if isinstance(text_config, dict) else config
    dtype, quantized = weight_format(model)
    return LoadedModel(
        info=info,
        model=model,
        tokenizer=tokenizer,
        stop_token_ids=stop_ids,
        context_length=info.context_length,
        memory_bytes=memory or info.size_bytes,
        vocab_size=max(len(vocab), int(config.get("vocab_size") or text_config.get("vocab_size") or 0)),
        family=family,
        vision=vision,
        dtype=dtype,
        quantization_bits=info.quantization_bits if quantized else None,
        converted_from=converted_from,
        max_token_chars=max((len(token) for token in vocab), default=0),
        kv=kv,
    )


def release_memory() -> None:
    gc.collect()
    mx.clear_cache()


def memory_stats() -> dict[str, int]:
    """MLX's view: bytes in live arrays, in its buffer cache (freed but kept for reuse), and the peak."""
    return {
        "mlx_active_bytes": int(mx.get_active_memory()),
        "mlx_cache_bytes": int(mx.get_cache_memory()),
        "mlx_peak_bytes": int(mx.get_peak_memory()),
    }
