"""Run quantized and half-precision checkpoints in float32 on MLX's CPU backend.

There MLX's quantized and bf16/fp16 kernels are several times slower than float32 matmuls on BLAS, so a model
that still fits once expanded is converted at load. On Metal or CUDA the weights stay as stored.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.utils import dequantize_model

from mlx_manager.engine.discovery import kv_bytes_per_token, read_json
from mlx_manager.engine.types import FLOAT_KV, KVSetting, ModelInfo

log = logging.getLogger(__name__)

CpuDtype = Literal["auto", "keep", "float32"]

_FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
_OTHER_BYTES = {"U8": 1, "I8": 1, "BOOL": 1, "U16": 2, "I16": 2, "U32": 4, "I32": 4, "U64": 8, "I64": 8}
_HALF_NAMES = {"F16": "float16", "BF16": "bfloat16"}


@dataclass(frozen=True)
class WeightPlan:
    """How a model's weights will sit in memory: as stored, or converted to float32 at load."""

    weight_bytes: int
    kv_bytes_per_token: int
    # None: load as stored; "float32": dequantize / cast every weight at load.
    dtype: Literal["float32"] | None = None
    # What the checkpoint holds when it is converted ("4-bit", "bfloat16"), for the log and the admin list.
    converted_from: str | None = None
    # How the KV cache is kept (engine/kv_quant); kv_bytes_per_token is its size.
    kv: KVSetting = FLOAT_KV

    @classmethod
    def as_stored(cls, info: ModelInfo) -> WeightPlan:
        return cls(weight_bytes=info.size_bytes, kv_bytes_per_token=info.kv_bytes_per_token)


def on_cpu() -> bool:
    """MLX computes on the CPU: no Metal or CUDA GPU (the default device is the GPU whenever there is one)."""
    return bool(mx.default_device().type == mx.DeviceType.cpu)


def plan_weights(info: ModelInfo, policy: CpuDtype, fits: Callable[[WeightPlan], bool]) -> WeightPlan:
    """`auto` converts when `fits` says the float32 model fits the pool now; `float32` always converts on CPU."""
    stored = WeightPlan.as_stored(info)
    # Only mlx-lm text models are converted; encoders and vision models load through other code.
    if policy == "keep" or info.task != "generate" or info.vision or not on_cpu():
        return stored
    expanded = float32_plan(info)
    if expanded is None or policy == "float32" or fits(expanded):
        return expanded or stored
    log.info(
        "Keeping %s %s on CPU: in float32 it would need %.0f MB, more than the pool has room for",
        info.id,
        expanded.converted_from,
        expanded.weight_bytes / 1e6,
    )
    return stored


def float32_plan(info: ModelInfo) -> WeightPlan | None:
    """The plan for running `info` in float32, from its safetensors headers; None when it already is float32."""
    folder = Path(info.path)
    tensors: dict[str, tuple[str, list[int]]] = {}
    try:
        config = read_json(folder / "config.json")
        for path in sorted(folder.glob("*.safetensors")):
            tensors.update(_safetensors_header(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # The load itself then reports what is wrong with the folder.
        log.warning("Cannot read the config or weight headers of %s (%s); loading it as stored", info.id, exc)
        return None
    quant = config.get("quantization") or config.get("quantization_config")
    quant = quant if isinstance(quant, dict) else {}
    total, quantized = 0, False
    half: dict[str, int] = {}  # half-precision elements per dtype
    for name, (dtype, shape) in tensors.items():
        count = math.prod(shape)
        module = name.rsplit(".", 1)[0]
        if name.endswith((".scales", ".biases")) and f"{module}.weight" in tensors:
            continue  # folded into the dequantized weight
        if dtype == "U32" and f"{module}.scales" in tensors:
            quantized = True
            total += count * 32 // _bits(quant, module) * 4
        elif dtype in _FLOAT_BYTES:
            total += count * 4
            if dtype in _HALF_NAMES:
                half[dtype] = half.get(dtype, 0) + count
        else:
            total += count * _OTHER_BYTES.get(dtype, 4)
    if not quantized and not half:
        return None
    source = f"{_bits(quant, '')}-bit" if quantized else _HALF_NAMES[max(half, key=lambda k: half[k])]
    return WeightPlan(total, kv_bytes_per_token(float32_config(config)), "float32", source)


def _bits(quant: dict[str, Any], module: str) -> int:
    # mlx-lm writes per-module overrides (e.g. an 8-bit embedding in a 4-bit model) under the module's path.
    own = quant.get(module)
    return int((own if isinstance(own, dict) else quant).get("bits") or 4)


def float32_config(config: dict[str, Any]) -> dict[str, Any]:
    # The KV cache takes the activations' dtype, which is float32 once the weights are.
    text = config.get("text_config")
    nested = {"text_config": {**text, "torch_dtype": "float32"}} if isinstance(text, dict) else {}
    return {**config, "torch_dtype": "float32", **nested}


def _safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Tensor names to dtype and shape; reads the JSON header only, never the data."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > 100 << 20:
            raise ValueError(f"{path.name}: implausible header size {size}")
        header = json.loads(f.read(size))
    return {k: (str(v["dtype"]), [int(n) for n in v["shape"]]) for k, v in header.items() if k != "__metadata__"}


def to_float32(model: nn.Module) -> None:
    """Replace quantized layers by float ones and cast every float parameter to float32 (lazily: the caller
    evaluates, so the quantized arrays are freed as their float copies are computed)."""
    # Scales and biases first, so the dequantized weights are computed exactly in float32.
    model.set_dtype(mx.float32)
    dequantize_model(model)


def weight_format(model: nn.Module) -> tuple[str, bool]:
    """The dtype most float parameters have (what the model computes in) and whether any layer is quantized."""
    counts: dict[str, int] = {}
    quantized = False
    params: list[tuple[str, mx.array]] = tree_flatten(model.parameters())  # type: ignore[assignment]
    for name, array in params:
        quantized = quantized or name.endswith(".scales")
        if mx.issubdtype(array.dtype, mx.floating):
            key = str(array.dtype).removeprefix("mlx.core.")
            counts[key] = counts.get(key, 0) + array.size
    return max(counts, key=lambda k: counts[k], default="float32"), quantized
