"""The key cached KV is filed under: the model's identity, a cheap fingerprint of its weights, how it runs.

A changed model (other weights, config, dtype, cache layout, mlx-lm version) gets another key, so it never
reuses stale blocks. The weights are fingerprinted from each safetensors file's name, size, modification time
and its first and last 64 KiB (the header names every tensor; the tail is weight data), not hashed in full.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import mlx_lm

from mlx_manager.engine.cache_support import CacheSupport
from mlx_manager.engine.kv_file import FORMAT
from mlx_manager.engine.types import FLOAT_KV, KVSetting

_SAMPLE = 64 << 10


def weights_fingerprint(folder: Path) -> list[list[Any]]:
    out: list[list[Any]] = []
    for path in sorted(folder.glob("*.safetensors")):
        stat = path.stat()
        digest = hashlib.blake2b(digest_size=16)
        with path.open("rb") as f:
            digest.update(f.read(_SAMPLE))
            f.seek(max(stat.st_size - _SAMPLE, 0))
            digest.update(f.read(_SAMPLE))
        out.append([path.name, stat.st_size, stat.st_mtime_ns, digest.hexdigest()])
    return out


def model_identity(
    path: str,
    dtype: str,
    quantization_bits: int | None,
    support: CacheSupport,
    block_size: int,
    kv: KVSetting = FLOAT_KV,
) -> dict[str, Any]:
    """What must be equal for a stored cache to be valid; None when the weights cannot be fingerprinted."""
    folder = Path(path)
    config = (folder / "config.json").read_bytes()
    return {
        "format": FORMAT,
        "mlx_lm": mlx_lm.__version__,
        "config": hashlib.blake2b(config, digest_size=16).hexdigest(),
        "weights": weights_fingerprint(folder),
        "dtype": dtype,
        "quantization_bits": quantization_bits,
        "layers": support.layers,
        "windows": list(support.windows),
        "block_size": block_size,
        # Float and quantized KV (and two quantizations) are different caches: they never share files.
        "kv_bits": kv.bits,
        "kv_group_size": kv.group_size if kv.quantized else None,
    }


def model_key(identity: dict[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(identity, sort_keys=True).encode(), digest_size=16).hexdigest()
