"""LoRA adapter folders: mlx-lm's (adapters.safetensors) and PEFT's (adapter_model.safetensors), read into one
form: for each linear module of the base, A (in x r), B (r x out) and the scale, as mlx-lm's LoRALinear uses them.

PEFT stores `lora_A.weight` (r x in) and `lora_B.weight` (out x r) under `base_model.model.<module>`, and scales by
lora_alpha / r (lora_alpha / sqrt(r) with use_rslora); mlx-lm stores `<module>.lora_a` / `.lora_b` and a `scale`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import mlx.core as mx
import mlx.nn as nn

from mlx_manager.engine.discovery import NotLoadableError, read_json
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.types import AdapterRef

MLX_WEIGHTS = "adapters.safetensors"
PEFT_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterConfig:
    format: Literal["mlx", "peft"]
    base_ref: str | None  # the base model as the config names it (a path or a repo id)
    scale: float | None  # mlx-lm: one scale for every module; PEFT: computed per module from r and alpha
    alpha: float | None = None
    rslora: bool = False


@dataclass(frozen=True)
class LoRAWeights:
    """One module's adapter: y += scale * (x @ a) @ b."""

    a: mx.array
    b: mx.array
    scale: float


def read_config(folder: Path) -> AdapterConfig:
    """The adapter's format and base, or NotLoadableError saying why it cannot be served."""
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise NotLoadableError("no adapter_config.json")
    config = read_json(path)
    if (folder / PEFT_WEIGHTS).is_file() and "peft_type" in config:
        return _peft_config(config)
    if (folder / MLX_WEIGHTS).is_file():
        return _mlx_config(config)
    raise NotLoadableError(f"no {MLX_WEIGHTS} (mlx-lm) or {PEFT_WEIGHTS} with a peft_type (PEFT)")


def _mlx_config(config: dict[str, Any]) -> AdapterConfig:
    kind = config.get("fine_tune_type", "lora")
    if kind != "lora":
        raise NotLoadableError(f"fine_tune_type {kind!r} is not served as an adapter (only 'lora')")
    params = config.get("lora_parameters")
    scale = params.get("scale") if isinstance(params, dict) else None
    if not isinstance(scale, int | float):
        raise NotLoadableError("lora_parameters.scale is missing")
    base = config.get("model")
    return AdapterConfig("mlx", base if isinstance(base, str) else None, float(scale))


def _peft_config(config: dict[str, Any]) -> AdapterConfig:
    if str(config.get("peft_type")).upper() != "LORA":
        raise NotLoadableError(f"peft_type {config.get('peft_type')!r} is not LoRA")
    # Each of these changes what the weights mean; refused rather than served wrong.
    for key, fine in (("use_dora", False), ("fan_in_fan_out", False), ("bias", "none")):
        if config.get(key, fine) not in (fine, None):
            raise NotLoadableError(f"PEFT {key}={config[key]!r} is not supported")
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save"):
        if config.get(key):
            raise NotLoadableError(f"PEFT {key} is not supported")
    alpha = config.get("lora_alpha")
    if not isinstance(alpha, int | float):
        raise NotLoadableError("lora_alpha is missing")
    base = config.get("base_model_name_or_path")
    return AdapterConfig(
        "peft", base if isinstance(base, str) else None, None, float(alpha), bool(config.get("use_rslora"))
    )


def _dims(module: nn.Module) -> tuple[int, int]:
    """Input and output features of a (quantized) linear layer."""
    out_dims, in_dims = module.weight.shape
    bits = getattr(module, "bits", None)
    return (in_dims * 32 // bits if bits else in_dims), out_dims


def read_weights(ref: AdapterRef, modules: dict[str, nn.Module]) -> dict[str, LoRAWeights]:
    """The adapter's weights by module path, checked against the base's linear layers (`modules`); a
    mismatch (a module the base lacks, other shapes) is a 400 naming the adapter."""
    folder = Path(ref.path)
    try:
        config = read_config(folder)
    except (NotLoadableError, OSError) as exc:  # changed or removed since it was found
        raise InvalidRequestError(f"The adapter '{ref.id}' cannot be served: {exc}", param="model") from exc
    weights = folder / (MLX_WEIGHTS if config.format == "mlx" else PEFT_WEIGHTS)
    try:
        raw = mx.load(str(weights))
    except Exception as exc:  # a truncated or foreign file: MLX raises several kinds
        raise _mismatch(ref, f"{weights.name} cannot be read ({exc})") from exc
    assert isinstance(raw, dict)
    pairs = _mlx_pairs(raw) if config.format == "mlx" else _peft_pairs(raw)
    out: dict[str, LoRAWeights] = {}
    for path, (a, b) in sorted(pairs.items()):
        module = modules.get(path)
        if module is None:
            raise _mismatch(ref, f"the base has no linear layer '{path}'")
        in_dims, out_dims = _dims(module)
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != in_dims or b.shape[1] != out_dims or a.shape[1] != b.shape[0]:
            raise _mismatch(
                ref, f"'{path}' is {in_dims} -> {out_dims} in the base, the adapter has {a.shape} and {b.shape}"
            )
        rank = a.shape[1]
        if config.scale is not None:
            scale = config.scale
        else:
            assert config.alpha is not None
            scale = config.alpha / (math.sqrt(rank) if config.rslora else rank)
        # Contiguous copies: PEFT's transposes would otherwise keep strided views of the file's arrays.
        out[path] = LoRAWeights(mx.contiguous(a), mx.contiguous(b), scale)
    if not out:
        raise _mismatch(ref, "it holds no LoRA weights")
    mx.eval([(w.a, w.b) for w in out.values()])
    return out


def _mlx_pairs(raw: dict[str, mx.array]) -> dict[str, tuple[mx.array, mx.array]]:
    pairs: dict[str, dict[str, mx.array]] = {}
    for key, value in raw.items():
        path, _, leaf = key.rpartition(".")
        if leaf not in ("lora_a", "lora_b"):
            raise InvalidRequestError(f"'{key}' is not a LoRA weight (DoRA and full fine-tunes are not served).")
        pairs.setdefault(path, {})[leaf] = value
    return {p: _pair(p, w.get("lora_a"), w.get("lora_b")) for p, w in pairs.items()}


def _peft_pairs(raw: dict[str, mx.array]) -> dict[str, tuple[mx.array, mx.array]]:
    pairs: dict[str, dict[str, mx.array]] = {}
    for key, value in raw.items():
        name = key.removeprefix(_PEFT_PREFIX)
        for leaf in ("lora_A", "lora_B"):
            suffix = f".{leaf}.weight"
            if name.endswith(suffix):
                pairs.setdefault(name.removesuffix(suffix), {})[leaf] = value.T  # PEFT keeps torch's (out, in)
                break
        else:
            raise InvalidRequestError(f"'{key}' is not a LoRA weight of a linear layer (PEFT).")
    return {p: _pair(p, w.get("lora_A"), w.get("lora_B")) for p, w in pairs.items()}


def _pair(path: str, a: mx.array | None, b: mx.array | None) -> tuple[mx.array, mx.array]:
    if a is None or b is None:
        raise InvalidRequestError(f"The adapter has only one of the two LoRA matrices of '{path}'.")
    return a, b


def _mismatch(ref: AdapterRef, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"The adapter '{ref.name}' ({ref.path}) does not fit the base model '{ref.base}': {why}.", param="model"
    )
