"""KV-cache quantization per model (kv_bits / kv_group_size): the setting, the caches it makes, its size.

A quantized model's attention layers keep their KV as MLX affine-quantized groups (engine/quantized_kv), which
cuts KV memory by ~2x (8-bit) or ~3.5x (4-bit) against float16, more against float32, and changes the numbers
attention sees: greedy output can differ from float KV after some tokens. Sliding-window and recurrent layers
stay as they are.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import KVCache, make_prompt_cache

from mlx_manager.config import default
from mlx_manager.engine.cpu_dtype import WeightPlan, float32_config
from mlx_manager.engine.discovery import kv_bytes_per_token, kv_shape, read_json
from mlx_manager.engine.quantized_kv import QuantizedKV
from mlx_manager.engine.types import FLOAT_KV, KVSetting, ModelInfo

log = logging.getLogger(__name__)

KV_BITS = (4, 8)
# The group sizes MLX's quantization takes; a group must divide the attention head dimension.
GROUP_SIZES = (32, 64, 128)


def kv_setting(bits: int | None, group_size: int = default("kv_group_size")) -> KVSetting:
    """A validated setting; bits None or 0 is float KV."""
    if not bits:
        return FLOAT_KV
    if bits not in KV_BITS:
        raise ValueError(f"kv_bits must be one of {', '.join(map(str, KV_BITS))} or none, not {bits}")
    if group_size not in GROUP_SIZES:
        raise ValueError(f"kv_group_size must be one of {', '.join(map(str, GROUP_SIZES))}, not {group_size}")
    return KVSetting(bits, group_size)


def fitted(setting: KVSetting, head_dim: int, model_id: str = "") -> KVSetting:
    """The setting a model with this head dimension can use: a smaller group when the asked one does not divide
    it, float when none does (with a warning either way)."""
    if not setting.quantized or head_dim % setting.group_size == 0:
        return setting
    fits = [g for g in GROUP_SIZES if head_dim % g == 0]
    if not fits:
        log.warning("%s: head dimension %d takes no KV quantization group size; keeping float KV", model_id, head_dim)
        return FLOAT_KV
    smaller = [g for g in fits if g < setting.group_size]
    group = max(smaller) if smaller else min(fits)
    log.info(
        "%s: head dimension %d is not a multiple of kv_group_size %d; using %d",
        model_id,
        head_dim,
        setting.group_size,
        group,
    )
    return replace(setting, group_size=group)


def with_kv(info: ModelInfo, plan: WeightPlan, setting: KVSetting) -> WeightPlan:
    """The plan with the KV setting the model will run (only text models quantize theirs) and the KV bytes per
    token it makes: the memory gate projects a full context of those."""
    if not setting.quantized or info.task != "generate" or info.vision:
        return replace(plan, kv=FLOAT_KV)
    try:
        config = read_json(Path(info.path) / "config.json")
    except (OSError, ValueError) as exc:
        log.warning("Cannot read %s's config (%s); planning float KV", info.id, exc)
        return replace(plan, kv=FLOAT_KV)
    if plan.dtype == "float32":  # the KV takes the activations' dtype, float32 once the weights are
        config = float32_config(config)
    shape = kv_shape(config)
    if shape is None:
        return replace(plan, kv=setting)
    setting = fitted(setting, shape[2], info.id)
    return replace(plan, kv=setting, kv_bytes_per_token=kv_bytes_per_token(config, setting.bits, setting.group_size))


def make_cache(model: nn.Module, setting: KVSetting) -> list[Any]:
    """The layer caches of one new sequence: the model's own, its plain attention KV quantized when asked."""
    caches = make_prompt_cache(model)
    if not setting.quantized:
        return caches
    assert setting.bits is not None
    return [QuantizedKV(setting.group_size, setting.bits) if type(c) is KVCache else c for c in caches]


def check(model: nn.Module, setting: KVSetting, model_id: str) -> KVSetting:
    """The setting the model runs: a quantized one only if its attention takes quantized KV in a batch (a
    two-token prefill and a one-token decode step through a batch of one), float otherwise."""
    if not setting.quantized:
        return setting
    try:
        caches = make_cache(model, setting)
        if not any(isinstance(c, QuantizedKV) for c in caches):
            log.warning("%s has no plain attention KV to quantize; keeping float KV", model_id)
            return FLOAT_KV
        batch = [type(c).merge([c]) for c in caches]
        mx.eval(model(mx.array([[0, 1]]), cache=batch))
        mx.eval(model(mx.array([[2]]), cache=batch))
    except Exception as exc:  # any model code path that does not take quantized KV
        log.warning("%s cannot run quantized KV (%s: %s); keeping float KV", model_id, type(exc).__name__, exc)
        return FLOAT_KV
    return setting
