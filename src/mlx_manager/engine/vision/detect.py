"""Is a model folder a vision-language model that mlx-vlm can run? Read from files only, nothing loaded."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path
from typing import Any


def _mlx_vlm_supports(config: dict[str, Any]) -> bool:
    try:  # deferred: mlx-vlm imports transformers, which only vision checkpoints need
        from mlx_vlm.utils import get_model_type
    except ImportError:
        return False
    model_type = get_model_type(config)
    return bool(model_type) and importlib.util.find_spec(f"mlx_vlm.models.{model_type}") is not None


def _weight_names(folder: Path) -> list[str]:
    """Tensor names from the safetensors index, or else from each file's header (no tensor data is read)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
        return list(weight_map)
    names: list[str] = []
    for path in folder.glob("*.safetensors"):
        if not path.is_file():  # a dangling link of a partial download: discovery says so itself
            continue
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            names.extend(json.loads(f.read(size)))
    return names


def is_vision_model(folder: Path, config: dict[str, Any]) -> bool:
    """A `vision_config`, a model type mlx-vlm knows, and vision weights. Text-only conversions of a VLM
    (mlx-lm drops the vision tower but keeps the config) stay text models."""
    if not isinstance(config.get("vision_config"), dict) or not _mlx_vlm_supports(config):
        return False
    return any("vision" in name or "visual" in name for name in _weight_names(folder))


def hears(folder: Path, config: dict[str, Any]) -> bool:
    """A vision model whose config has an `audio_config` and whose weights hold its audio tower."""
    if not isinstance(config.get("audio_config"), dict):
        return False
    return any(name.startswith(("audio_tower.", "model.audio_tower.")) for name in _weight_names(folder))
