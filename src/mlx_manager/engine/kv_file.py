"""One cached prefix as a safetensors file: the layers' cache state, the tokens it holds, a digest of the data.

Written without MLX (numpy views of evaluated arrays), so a background thread can write what the model thread
computed. A file is written beside its final name and renamed after an fsync; a torn or altered file fails the
size or digest check on reading and is never loaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import ArraysCache, KVCache, RotatingKVCache

from mlx_manager.engine.quantized_kv import QuantizedKV

FORMAT = "mlx-manager-kv/1"
# The cache classes a file may name: anything else in a file is refused, never instantiated.
LAYER_CLASSES: dict[str, Any] = {
    "KVCache": KVCache,
    "RotatingKVCache": RotatingKVCache,
    "ArraysCache": ArraysCache,
    "QuantizedKV": QuantizedKV,  # kv_bits: packed values, scales and biases (engine/quantized_kv)
}
_MAX_HEADER = 64 << 20
_DTYPES: dict[Any, tuple[str, Any]] = {
    mx.float32: ("F32", np.float32),
    mx.float16: ("F16", np.float16),
    mx.bfloat16: ("BF16", np.uint16),  # numpy has no bfloat16: written and read as its bits
    mx.int32: ("I32", np.int32),
    mx.uint32: ("U32", np.uint32),
    mx.int64: ("I64", np.int64),
    mx.uint8: ("U8", np.uint8),
    mx.bool_: ("BOOL", np.bool_),
}
_NUMPY = {name: np_type for name, np_type in _DTYPES.values()}


class UnreadableFile(ValueError):
    """A file that is torn, altered, of another format or of another model."""


@dataclass
class Encoded:
    """A cache ready to be written off the model thread: array bytes as numpy views, the rest as JSON."""

    tokens: tuple[int, ...]
    layers: list[dict[str, Any]]
    arrays: list[tuple[str, list[int], np.ndarray]]  # (safetensors dtype, shape, data)
    trimmable: bool

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, _, a in self.arrays)

    def file_size(self) -> int:
        """About the size of the written file (the header holds the tokens in base64 and the layer layout)."""
        return self.nbytes + 1024 + 6 * len(self.tokens) + 100 * len(self.arrays) + len(json.dumps(self.layers))


@dataclass
class Header:
    tokens: tuple[int, ...]
    trimmable: bool
    size: int  # the file's size


def encode(tokens: tuple[int, ...], cache: list[Any], trimmable: bool) -> Encoded:
    """On the model thread: describe each layer's state, arrays replaced by their index in `arrays`."""
    arrays: list[tuple[str, list[int], np.ndarray]] = []

    def walk(item: Any) -> Any:
        if isinstance(item, mx.array):
            name, _ = _DTYPES[item.dtype]
            raw = item.view(mx.uint16) if item.dtype == mx.bfloat16 else item
            mx.eval(raw)
            arrays.append((name, list(item.shape), np.ascontiguousarray(np.asarray(raw))))
            return {"t": len(arrays) - 1}
        if isinstance(item, (list, tuple)):
            return [walk(x) for x in item]
        if item is None or isinstance(item, (bool, int, float)):
            return item
        raise TypeError(f"cannot store a cache state holding {type(item).__name__}")

    layers = []
    for layer in cache:
        kind = type(layer).__name__
        if kind not in LAYER_CLASSES:
            raise TypeError(f"cannot store a {kind} layer cache")
        layers.append({"class": kind, "state": walk(layer.state)})
    return Encoded(tokens, layers, arrays, trimmable)


def write(path: Path, model_key: str, enc: Encoded) -> int:
    """Write `enc` to `path` atomically (temporary file, fsync, rename, fsync of the folder); returns its size."""
    digest = hashlib.blake2b(digest_size=16)
    tensors: dict[str, Any] = {}
    offset = 0
    for i, (dtype, shape, data) in enumerate(enc.arrays):
        digest.update(data.data.cast("B"))
        tensors[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.nbytes]}
        offset += data.nbytes
    tensors["__metadata__"] = {
        "format": FORMAT,
        "model": model_key,
        "tokens": base64.b64encode(np.asarray(enc.tokens, dtype="<u4").tobytes()).decode(),
        "layers": json.dumps(enc.layers),
        "trimmable": "1" if enc.trimmable else "0",
        "digest": digest.hexdigest(),
    }
    header = json.dumps(tensors).encode()
    header += b" " * (-len(header) % 8)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for _, _, data in enc.arrays:
                f.write(data.data.cast("B"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return 8 + len(header) + offset


def read_header(path: Path, model_key: str) -> Header:
    """The tokens a file holds, from its header alone; a file whose size does not add up is refused."""
    tensors, meta, data_start, data_len = _header(path, model_key)
    del tensors
    return Header(_tokens(meta), meta.get("trimmable") == "1", data_start + data_len)


@dataclass
class Raw:
    """A file's checked bytes, read without MLX (any thread); `build` makes its caches on the model thread."""

    tensors: dict[str, Any]
    meta: dict[str, str]
    data: bytearray

    @property
    def size(self) -> int:
        return len(self.data)


def read(path: Path, model_key: str) -> tuple[tuple[int, ...], list[Any]]:
    """The tokens and the layer caches of a file, after checking its size and digest."""
    return build(read_raw(path, model_key))


def read_raw(path: Path, model_key: str) -> Raw:
    """A file's data, after checking its size and digest: the slow part of a read (I/O, hashing), off MLX."""
    tensors, meta, data_start, data_len = _header(path, model_key)
    data = bytearray(data_len)
    with path.open("rb") as f:
        f.seek(data_start)
        if f.readinto(data) != data_len:
            raise UnreadableFile("shorter than its header says")
    if hashlib.blake2b(data, digest_size=16).hexdigest() != meta.get("digest"):
        raise UnreadableFile("data does not match its digest")
    return Raw(tensors, meta, data)


def build(raw: Raw) -> tuple[tuple[int, ...], list[Any]]:
    """The tokens and layer caches of checked data (on the model thread: it makes MLX arrays)."""
    tensors, meta, data = raw.tensors, raw.meta, raw.data
    arrays: list[mx.array] = []
    for i in range(len(tensors)):
        info = tensors[f"t{i}"]
        start, end = info["data_offsets"]
        flat = np.frombuffer(memoryview(data)[start:end], dtype=_NUMPY[info["dtype"]])
        array = mx.array(flat.reshape(info["shape"]))
        arrays.append(array.view(mx.bfloat16) if info["dtype"] == "BF16" else array)

    def build_item(item: Any) -> Any:
        if isinstance(item, dict):
            return arrays[int(item["t"])]
        if isinstance(item, list):
            return [build_item(x) for x in item]
        return item

    cache = []
    for layer in json.loads(meta["layers"]):
        cls = LAYER_CLASSES.get(layer.get("class"))
        if cls is None:
            raise UnreadableFile(f"unknown layer cache {layer.get('class')!r}")
        cache.append(cls.from_state(build_item(layer["state"])))
    mx.eval(arrays)
    return _tokens(meta), cache


def _header(path: Path, model_key: str) -> tuple[dict[str, Any], dict[str, str], int, int]:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise UnreadableFile("no header")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise UnreadableFile("header longer than the file")
        try:
            tensors = json.loads(f.read(n))
        except ValueError as exc:
            raise UnreadableFile(f"header is not JSON: {exc}") from exc
    if not isinstance(tensors, dict) or not isinstance(tensors.get("__metadata__"), dict):
        raise UnreadableFile("no metadata")
    meta = tensors.pop("__metadata__")
    if meta.get("format") != FORMAT or meta.get("model") != model_key:
        raise UnreadableFile("another format or another model")
    try:
        data_len = max((int(t["data_offsets"][1]) for t in tensors.values()), default=0)
        if any(t["dtype"] not in _NUMPY for t in tensors.values()):
            raise UnreadableFile("unknown dtype")
    except (KeyError, TypeError, IndexError) as exc:
        raise UnreadableFile(f"malformed tensor entry: {exc}") from exc
    if 8 + n + data_len != size:
        raise UnreadableFile(f"size {size} does not match its header ({8 + n + data_len}): torn")
    return tensors, meta, 8 + n, data_len


def _tokens(meta: dict[str, str]) -> tuple[int, ...]:
    try:
        raw = base64.b64decode(meta["tokens"], validate=True)
    except (KeyError, ValueError) as exc:
        raise UnreadableFile("no tokens") from exc
    return tuple(int(t) for t in np.frombuffer(raw, dtype="<u4"))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
