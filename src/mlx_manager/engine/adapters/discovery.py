"""Find LoRA adapters (beside the models, in a folder of their own, in the HF cache) and tie each to its base by
its config, as models named `BASE@ADAPTER`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from mlx_manager.engine.adapters.formats import MLX_WEIGHTS, PEFT_WEIGHTS, AdapterConfig, read_config
from mlx_manager.engine.discovery import NotLoadableError, _hf_snapshot
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.types import AdapterRef, ModelInfo

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()


def _folders(model_dirs: Iterable[Path], hf_cache: Path | None) -> Iterable[tuple[str, Path]]:
    if hf_cache is not None and hf_cache.is_dir():
        for repo_dir in sorted(hf_cache.glob("models--*")):
            snapshot = _hf_snapshot(repo_dir)
            if snapshot is not None and (snapshot / "adapter_config.json").is_file():
                yield repo_dir.name.removeprefix("models--").replace("--", "/"), snapshot
    for base in model_dirs:
        if not base.is_dir():
            continue
        if (base / "adapter_config.json").is_file():  # the folder itself is an adapter
            yield base.name, base
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (folder / "adapter_config.json").is_file():
                yield folder.name, folder


def base_of(ref: str | None, models: dict[str, ModelInfo]) -> str | None:
    """The model id an adapter config's base names: the id itself, the folder it points to, or the same last
    path component (a repo id's name)."""
    if not ref:
        return None
    plain = {k: v for k, v in models.items() if v.adapter is None}
    if ref in plain:
        return ref
    target = Path(ref).expanduser()
    if target.is_absolute():
        resolved = target.resolve()
        for model_id, info in plain.items():
            if Path(info.path).resolve() == resolved:
                return model_id
    tail = ref.rstrip("/").rsplit("/", 1)[-1]
    return next((model_id for model_id in plain if model_id.rsplit("/", 1)[-1] == tail), None)


def adapter_info(base: ModelInfo, name: str, folder: Path, config: AdapterConfig) -> ModelInfo:
    """The adapter as a model: the base's description under `BASE@NAME`, sized by its own weights."""
    if base.task != "generate" or base.vision:
        raise InvalidRequestError(
            f"'{base.id}' cannot take LoRA adapters: only text-generation models served by mlx-lm can.", param="model"
        )
    ref = AdapterRef(base=base.id, name=name, path=str(folder), format=config.format)
    weights = folder / (MLX_WEIGHTS if config.format == "mlx" else PEFT_WEIGHTS)
    stat = weights.stat()
    return replace(base, id=ref.id, size_bytes=stat.st_size, created=int(stat.st_mtime), adapter=ref)


def discover_adapters(
    model_dirs: Iterable[Path], hf_cache: Path | None, models: dict[str, ModelInfo]
) -> dict[str, ModelInfo]:
    """Every adapter whose config names a base among `models`, by `BASE@NAME`; others are skipped with a note."""
    found: dict[str, ModelInfo] = {}
    for name, folder in _folders(model_dirs, hf_cache):
        try:
            config = read_config(folder)
            base = base_of(config.base_ref, models)
            if base is None:
                raise NotLoadableError(f"its base {config.base_ref!r} is not a model found here")
            info = adapter_info(models[base], name, folder, config)
            found.setdefault(info.id, info)
        except (NotLoadableError, InvalidRequestError, OSError, ValueError) as exc:
            reason = exc.message if isinstance(exc, InvalidRequestError) else str(exc)
            if (str(folder), reason) not in _warned:
                _warned.add((str(folder), reason))
                log.info("Skipping adapter %s (%s): %s", name, folder, reason)
    return found
