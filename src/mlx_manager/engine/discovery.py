"""Find MLX-loadable models in the Hugging Face cache and in model folders."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlx_manager.config import default
from mlx_manager.engine.audio.detect import audio_task, tts_type
from mlx_manager.engine.embeddings.detect import ENCODER_TYPES, embedding_spec
from mlx_manager.engine.families import detect_family
from mlx_manager.engine.generation_defaults import read_generation_config
from mlx_manager.engine.types import ModelInfo, ModelTask, SamplingDefaults
from mlx_manager.engine.vision.detect import hears, is_vision_model

log = logging.getLogger(__name__)

_warned: set[tuple[str, str]] = set()
_CONTEXT_KEYS = ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length")


class NotLoadableError(ValueError):
    pass


def hf_cache_dir() -> Path:
    """The hub cache, honouring HF_HUB_CACHE and HF_HOME as huggingface_hub does."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"


def read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise NotLoadableError(f"{path.name} is not a JSON object")
    return data


def _mlx_lm_supports(config: dict[str, Any]) -> bool:
    from mlx_lm.utils import MODEL_REMAPPING

    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return False
    module = MODEL_REMAPPING.get(model_type, model_type)
    return importlib.util.find_spec(f"mlx_lm.models.{module}") is not None


def special_tokens(folder: Path) -> set[str]:
    """Special token strings, from tokenizer_config.json or else tokenizer.json."""
    tokens: set[str] = set()
    cfg_path = folder / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = read_json(cfg_path)
        for entry in (cfg.get("added_tokens_decoder") or {}).values():
            if isinstance(entry, dict) and isinstance(entry.get("content"), str):
                tokens.add(entry["content"])
    if not tokens and (folder / "tokenizer.json").is_file():
        for entry in read_json(folder / "tokenizer.json").get("added_tokens") or []:
            tokens.add(entry.get("content", ""))
    return tokens


def context_length(config: dict[str, Any]) -> int | None:
    for source in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def inspect_model(folder: Path, model_id: str, source: str) -> ModelInfo:
    """Describe a model folder, or raise NotLoadableError saying why MLX cannot load it."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise NotLoadableError("no config.json")
    config = read_json(config_path)
    task = audio_task(config, f"{model_id} {folder.name}")
    if task is not None:
        return _inspect_audio(folder, model_id, source, config, task)
    try:
        spec = embedding_spec(folder, config)
    except ValueError as exc:
        raise NotLoadableError(str(exc)) from exc
    encoder = config.get("model_type") in ENCODER_TYPES  # run by engine/embeddings, not mlx-lm
    vision = not encoder and spec.task == "generate" and is_vision_model(folder, config)  # run by mlx-vlm
    if not encoder and not vision and not _mlx_lm_supports(config):
        raise NotLoadableError(f"model_type {config.get('model_type')!r} is not supported by mlx-lm or mlx-vlm")
    weights = [p for p in folder.glob("*.safetensors")]
    if not weights:
        raise NotLoadableError("no .safetensors weights")
    missing = [p.name for p in weights if not p.exists()]  # dangling symlinks of a partial download
    if missing:
        raise NotLoadableError(f"weight files missing: {', '.join(missing)}")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        raise NotLoadableError("no tokenizer files")
    quant = config.get("quantization") or config.get("quantization_config") or {}
    family = str(config["model_type"]) if encoder else detect_family(config, special_tokens(folder)).name
    return ModelInfo(
        id=model_id,
        path=str(folder),
        family=family,
        model_type=str(config.get("model_type")),
        size_bytes=sum(p.stat().st_size for p in weights),
        context_length=spec.max_length if spec.task != "generate" else context_length(config),
        quantization_bits=quant.get("bits") if isinstance(quant, dict) else None,
        source="hf-cache" if source == "hf-cache" else "folder",
        created=int(config_path.stat().st_mtime),
        task=spec.task,
        vision=vision,
        audio=vision and hears(folder, config),
        kv_bytes_per_token=kv_bytes_per_token(config) if spec.task == "generate" else 0,
        generation_defaults=read_generation_config(folder) if spec.task == "generate" else SamplingDefaults(),
    )


def _inspect_audio(folder: Path, model_id: str, source: str, config: dict[str, Any], task: ModelTask) -> ModelInfo:
    """A speech model (engine/audio): Whisper (transcribe) or a TTS model (speak), its weights and tokenizer."""
    weights = [p for p in folder.glob("*.safetensors")] or [p for p in folder.glob("weights.npz")]
    if not weights or not all(p.exists() for p in weights):
        raise NotLoadableError("no weights (*.safetensors or weights.npz)")
    kind = "whisper" if task == "transcribe" else str(tts_type(config, f"{model_id} {folder.name}"))
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
        raise NotLoadableError(f"no {kind} tokenizer files (tokenizer.json or vocab.json)")
    quant = config.get("quantization") or {}
    return ModelInfo(
        id=model_id,
        path=str(folder),
        family=kind,
        model_type=kind,
        size_bytes=sum(p.stat().st_size for p in weights),
        context_length=None,
        quantization_bits=quant.get("bits") if isinstance(quant, dict) else None,
        source="hf-cache" if source == "hf-cache" else "folder",
        created=int((folder / "config.json").stat().st_mtime),
        task=task,
    )


_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def kv_shape(config: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """Layers, KV heads, head dimension and bytes per element of the KV cache, from the text config's shape."""
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    try:
        layers = int(text["num_hidden_layers"])
        heads = int(text["num_attention_heads"])
        kv_heads = int(text.get("num_key_value_heads") or heads)
        head_dim = int(text.get("head_dim") or int(text["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    width = _DTYPE_BYTES.get(str(text.get("torch_dtype") or config.get("torch_dtype") or "bfloat16"), 2)
    return layers, kv_heads, head_dim, width


def kv_bytes_per_token(
    config: dict[str, Any], bits: int | None = None, group_size: int = default("kv_group_size")
) -> int:
    """Keys and values of every layer for one token (0 when the config does not say). Quantized (`bits`): the
    packed values plus a scale and a bias in the activations' dtype per `group_size` values."""
    shape = kv_shape(config)
    if shape is None:
        return 0
    layers, kv_heads, head_dim, width = shape
    per_head = head_dim * width if bits is None else head_dim * bits // 8 + 2 * width * (head_dim // group_size)
    return layers * 2 * kv_heads * per_head


def _hf_snapshot(repo_dir: Path) -> Path | None:
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if candidate.is_dir():
            return candidate
    if snapshots.is_dir():
        dirs = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        return dirs[-1] if dirs else None
    return None


def _candidates(model_dirs: Iterable[Path], hf_cache: Path | None) -> Iterable[tuple[str, Path, str]]:
    if hf_cache is not None and hf_cache.is_dir():
        for repo_dir in sorted(hf_cache.glob("models--*")):
            snapshot = _hf_snapshot(repo_dir)
            if snapshot is not None:
                yield repo_dir.name.removeprefix("models--").replace("--", "/"), snapshot, "hf-cache"
    for base in model_dirs:
        if not base.is_dir():
            continue
        if (base / "config.json").is_file():  # the folder itself is a model
            yield base.name, base, "folder"
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (folder / "config.json").is_file():
                yield folder.name, folder, "folder"


def discover_models(model_dirs: Iterable[Path], hf_cache: Path | None) -> dict[str, ModelInfo]:
    """All loadable models by id; broken folders are skipped with a warning. First id found wins."""
    found: dict[str, ModelInfo] = {}
    for model_id, folder, source in _candidates(model_dirs, hf_cache):
        if model_id in found:
            continue
        try:
            found[model_id] = inspect_model(folder, model_id, source)
        except (NotLoadableError, OSError, ValueError) as exc:
            # Rescans are frequent: say it once per folder and reason. The HF cache holds non-MLX repos too.
            if (str(folder), str(exc)) not in _warned:
                _warned.add((str(folder), str(exc)))
                level = logging.WARNING if source == "folder" else logging.INFO
                log.log(level, "Skipping %s (%s): %s", model_id, folder, exc)
    return found
