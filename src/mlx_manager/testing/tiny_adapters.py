"""A random LoRA adapter for a tiny model, written twice: as mlx-lm's trainer saves it (adapter_config.json +
adapters.safetensors) and as PEFT saves the same weights (adapter_config.json + adapter_model.safetensors)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm import load
from mlx_lm.tuner.utils import linear_to_lora_layers


def lora_shapes(base: Path, num_layers: int, rank: int) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """The lora_a and lora_b shapes mlx-lm's own LoRA conversion gives the last `num_layers` layers."""
    model = load(str(base), lazy=True)[0]
    linear_to_lora_layers(model, num_layers, {"rank": rank, "scale": 1.0, "dropout": 0.0})
    params = dict(tree_flatten(model.parameters()))
    paths = sorted({k.rsplit(".", 1)[0] for k in params if k.endswith(".lora_a")})
    return {p: (tuple(params[f"{p}.lora_a"].shape), tuple(params[f"{p}.lora_b"].shape)) for p in paths}


def _write_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def write_tiny_adapter(
    base: Path,
    out_dir: Path,
    name: str,
    *,
    rank: int = 4,
    scale: float = 2.0,
    num_layers: int = 2,
    seed: int = 0,
    b_std: float = 0.5,
) -> dict[str, Path]:
    """Folders `<name>-mlx` and `<name>-peft` under `out_dir`, both tied to `base` by its path, holding the same
    random weights (B is random too: a fresh adapter's zero B would change nothing)."""
    rng = np.random.default_rng(seed)
    mlx_weights: dict[str, mx.array] = {}
    peft_weights: dict[str, mx.array] = {}
    shapes = lora_shapes(base, num_layers, rank)
    for path, (a_shape, b_shape) in shapes.items():
        bound = 1 / math.sqrt(a_shape[0])
        a = rng.uniform(-bound, bound, a_shape).astype(np.float32)
        b = (rng.standard_normal(b_shape) * b_std).astype(np.float32)
        mlx_weights[f"{path}.lora_a"] = mx.array(a)
        mlx_weights[f"{path}.lora_b"] = mx.array(b)
        peft_weights[f"base_model.model.{path}.lora_A.weight"] = mx.array(np.ascontiguousarray(a.T))
        peft_weights[f"base_model.model.{path}.lora_B.weight"] = mx.array(np.ascontiguousarray(b.T))
    mlx_dir = out_dir / f"{name}-mlx"
    peft_dir = out_dir / f"{name}-peft"
    for folder in (mlx_dir, peft_dir):
        folder.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(mlx_dir / "adapters.safetensors"), mlx_weights)
    _write_config(
        mlx_dir,
        {
            "model": str(base),
            "fine_tune_type": "lora",
            "num_layers": num_layers,
            "lora_parameters": {"rank": rank, "scale": scale, "dropout": 0.0},
        },
    )
    mx.save_safetensors(str(peft_dir / "adapter_model.safetensors"), peft_weights)
    _write_config(
        peft_dir,
        {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": str(base),
            "r": rank,
            "lora_alpha": scale * rank,
            "lora_dropout": 0.0,
            "bias": "none",
            "target_modules": sorted({p.rsplit(".", 1)[-1] for p in shapes}),
        },
    )
    return {"mlx": mlx_dir, "peft": peft_dir}
