"""Unfused LoRA on a pooled base: several adapters live at once on one copy of the base's weights, and each row of
a batch runs with its own adapter (or none).

The base's linear layers an adapter touches are wrapped once by MultiLoRALinear, which adds, for each adapter in
the batch, scale * (x @ A) @ B to that adapter's rows only (as mlx-lm's LoRALinear computes it). RowModel sits
between mlx-lm's BatchGenerator and the model: before each model call it reads the calling batch's row order
(its `uids`) and sets which rows belong to which adapter; with no adapter row in the call, it is the model.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten

from mlx_manager.engine.adapters.formats import LoRAWeights
from mlx_manager.engine.types import AdapterRef


class AdapterRows:
    """The adapters of the model call in progress, each with its row mask ([rows, 1, 1]; None: every row)."""

    def __init__(self) -> None:
        self.active: list[tuple[str, mx.array | None]] = []


class _Held:
    """A wrapper's adapters, kept off the module tree so the base's parameter names and counts do not change."""

    def __init__(self) -> None:
        self.loras: dict[str, LoRAWeights] = {}


class MultiLoRALinear(nn.Module):
    def __init__(self, base: nn.Module, rows: AdapterRows) -> None:
        super().__init__()
        self.base = base
        self._rows = rows
        self._held = _Held()

    def __call__(self, x: mx.array) -> mx.array:
        y: mx.array = self.base(x)
        for name, mask in self._rows.active:
            w = self._held.loras.get(name)
            if w is None:
                continue
            z = ((x @ w.a) @ w.b * w.scale).astype(x.dtype)
            # Other rows get exactly zero added: the base's and other adapters' outputs stay as they were.
            y = y + (z if mask is None else z * mask.astype(x.dtype))
        return y


@dataclass
class LiveAdapter:
    ref: AdapterRef
    modules: int
    memory_bytes: int  # the adapter's own arrays, as held (measured from the loaded arrays)
    loaded_at: float = field(default_factory=time.time)
    active: int = 0  # requests running on it


class AdapterSet:
    """The adapters attached to one loaded model. Changed on the event loop; read by the model thread."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.rows = AdapterRows()
        self.live: dict[str, LiveAdapter] = {}
        self._wrappers: dict[str, MultiLoRALinear] = {}

    @property
    def memory_bytes(self) -> int:
        return sum(a.memory_bytes for a in self.live.values())

    def linear_modules(self) -> dict[str, nn.Module]:
        """The base's linear layers by path (a wrapped one by its base), which adapters may target."""
        found: dict[str, nn.Module] = {}
        for path, module in self.model.named_modules():
            if isinstance(module, MultiLoRALinear):
                found[path] = module.base
            elif isinstance(module, nn.Linear | nn.QuantizedLinear) and not path.endswith(".base"):
                found[path] = module
        return found

    def install(self, ref: AdapterRef, weights: dict[str, LoRAWeights]) -> LiveAdapter:
        """Attach loaded weights: wrap the layers not wrapped yet (once per model), then add the adapter to each."""
        missing = [p for p in weights if p not in self._wrappers]
        if missing:
            modules = dict(self.model.named_modules())
            new = {p: MultiLoRALinear(modules[p], self.rows) for p in missing}
            self.model.update_modules(tree_unflatten(list(new.items())))
            self._wrappers.update(new)
        for path, w in weights.items():
            self._wrappers[path]._held.loras[ref.id] = w
        size = sum(w.a.nbytes + w.b.nbytes for w in weights.values())
        live = self.live[ref.id] = LiveAdapter(ref, len(weights), size)
        return live

    def remove(self, adapter_id: str) -> None:
        """Detach an adapter; its layers stay wrapped (a wrapper with no adapter in the batch is the base layer)."""
        self.live.pop(adapter_id, None)
        for wrapper in self._wrappers.values():
            wrapper._held.loras.pop(adapter_id, None)


class RowModel:
    """What the BatchGenerator calls instead of the model; see the module docstring."""

    def __init__(
        self, model: nn.Module, adapters: Callable[[], AdapterSet | None], adapter_of: Callable[[int], str | None]
    ):
        self._model = model
        self._adapters = adapters
        self._adapter_of = adapter_of

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_model", "_adapters", "_adapter_of"):  # copy / pickle probes
            raise AttributeError(name)
        return getattr(self._model, name)

    def __call__(self, inputs: mx.array, cache: Any = None, **kwargs: Any) -> mx.array:
        adapters = self._adapters()
        if adapters is None or not adapters.live:
            return self._model(inputs, cache=cache, **kwargs)
        # mlx-lm's prompt and generation batches call `self.model(...)`; their `uids` are the rows, in order.
        caller = sys._getframe(1).f_locals.get("self")
        uids = getattr(caller, "uids", None)
        if not isinstance(uids, list) or len(uids) != inputs.shape[0]:
            raise RuntimeError("cannot tell which batch rows use which adapter (mlx-lm's batch layout changed)")
        names = [self._adapter_of(uid) for uid in uids]
        used = sorted({n for n in names if n is not None and n in adapters.live})
        if not used:
            return self._model(inputs, cache=cache, **kwargs)
        rows = adapters.rows
        rows.active = [(n, _mask(names, n)) for n in used]
        try:
            return self._model(inputs, cache=cache, **kwargs)
        finally:
            rows.active = []


def _mask(names: list[str | None], name: str) -> mx.array | None:
    if all(n == name for n in names):
        return None
    return mx.array([1.0 if n == name else 0.0 for n in names], dtype=mx.float32).reshape(-1, 1, 1)
