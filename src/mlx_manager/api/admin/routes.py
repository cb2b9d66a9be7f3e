"""Admin routes: see what is loaded, load and unload models."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import psutil
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from mlx_manager.api.admin import distributed
from mlx_manager.api.admin.schemas import (
    AdapterIn,
    AdapterOut,
    DiskCacheOut,
    LoadedModelOut,
    LoadedModels,
    LocalModelOut,
    PrefixCacheOut,
)
from mlx_manager.api.deps import EngineDep
from mlx_manager.api.errors import APIError
from mlx_manager.api.model_cards import is_loaded, sampling_defaults
from mlx_manager.engine.adapters.lora import LiveAdapter
from mlx_manager.engine.adapters.service import Adapters
from mlx_manager.engine.disk_cache import DiskCache
from mlx_manager.engine.errors import KVSettingConflict
from mlx_manager.engine.kv_quant import kv_setting
from mlx_manager.engine.loader import LoadedModel, memory_stats
from mlx_manager.engine.pool import PoolEntry
from mlx_manager.engine.types import KVSetting

router = APIRouter(prefix="/admin", tags=["admin"])
# GET /admin/models alone: it also takes the status token (see mlx_manager.status_token).
status_router = APIRouter(prefix="/admin", tags=["admin"])


def _out(entry: PoolEntry) -> LoadedModelOut:
    stats = entry.scheduler.stats if entry.scheduler else None
    text = entry.loaded if isinstance(entry.loaded, LoadedModel) else None
    # While loading, the planned KV setting; once loaded, the one it runs (float if it cannot quantize).
    kv = text.kv if text else entry.plan.kv
    spec = getattr(entry.scheduler, "spec", None)  # the vision scheduler does not speculate
    turns = getattr(entry.loaded, "turns", None)  # audio models: one request runs, the others wait their turn
    return LoadedModelOut(
        id=entry.info.id,
        path=entry.info.path,
        family=entry.info.family,
        memory_bytes=entry.memory_bytes,
        pinned=entry.pinned,
        active_requests=entry.active,
        loaded_at=entry.loaded_at,
        load_seconds=entry.load_seconds,
        idle_seconds=time.monotonic() - entry.last_used if entry.active == 0 else 0.0,
        state="loaded" if entry.loaded else "loading",
        requests_done=stats.requests_done if stats else 0,
        requests_cancelled=stats.requests_cancelled if stats else 0,
        # Live, so a dashboard's rate moves while a long reply is generated (the vision scheduler counts at the end).
        tokens_generated=getattr(entry.scheduler, "tokens_generated_live", stats.tokens_generated) if stats else 0,
        running=stats.running if stats else int(turns.busy) if turns else 0,
        waiting=stats.waiting if stats else turns.waiting if turns else 0,
        # While loading (and for embedding models), only what the plan says.
        dtype=text.dtype if text else entry.plan.dtype,
        quantization_bits=text.quantization_bits if text else None,
        converted_from=entry.plan.converted_from,
        kv_bits=kv.bits,
        kv_group_size=kv.group_size if kv.quantized else None,
        kv_bytes_per_token=entry.plan.kv_bytes_per_token,
        adapters=[_adapter_out(a) for a in Adapters.live_on(entry)],
        speculative=spec.config.mode if spec is not None and spec.enabled else "off",
        draft_tokens=spec.stats.drafted if spec is not None else 0,
        accepted_draft_tokens=spec.stats.accepted if spec is not None else 0,
        draft_acceptance_rate=spec.stats.acceptance_rate if spec is not None else 0.0,
    )


def _shared_fields(source: object, reply: type[BaseModel] | type[LocalModelOut]) -> dict[str, Any]:
    """The attributes of an engine dataclass that the reply model has too (same name, same meaning)."""
    names = reply.model_fields if issubclass(reply, BaseModel) else {f.name for f in dataclasses.fields(reply)}
    return {k: v for k, v in vars(source).items() if k in names}


def _adapter_out(live: LiveAdapter) -> AdapterOut:
    fields = _shared_fields(live.ref, AdapterOut) | _shared_fields(live, AdapterOut)
    return AdapterOut(id=live.ref.id, **fields, active_requests=live.active)


@status_router.get("/models")
async def loaded_models(engine: EngineDep, request: Request) -> LoadedModels:
    cfg = engine.pool.config
    return LoadedModels(
        data=[_out(e) for e in engine.pool.entries()] + distributed.loaded_rows(request.app.state.distributed),
        memory_budget_bytes=cfg.memory_budget_bytes,
        max_models=cfg.max_models,
        loads=engine.pool.loads,
    )


@router.get("/memory")
async def memory() -> dict[str, int]:
    """Process and MLX memory, to tell a leak from caches filling up."""
    return {"rss_bytes": psutil.Process().memory_info().rss, **memory_stats()}


@router.get("/models/local")
async def local_models(engine: EngineDep) -> list[LocalModelOut]:
    return [
        LocalModelOut(
            **_shared_fields(m, LocalModelOut),
            loaded=is_loaded(engine, m.id),
            sampling_defaults=sampling_defaults(engine, m) if m.task == "generate" else {},
        )
        for m in await engine.list_models()
    ]


@router.get("/models/{model_id:path}/cache")
async def prefix_cache(model_id: str, engine: EngineDep) -> PrefixCacheOut:
    """Prefix-cache reuse for a loaded model, with the last lookups: reused tokens and where prompts diverged."""
    entry = engine.pool.get(model_id)
    if entry is None or entry.scheduler is None:
        raise APIError(404, f"The model '{model_id}' is not loaded.", param="model", code="model_not_loaded")
    cache = entry.scheduler.cache
    stats = cache.stats
    tiers = entry.scheduler.tiers
    return PrefixCacheOut(
        entries=len(cache),
        bytes=cache.bytes,
        max_bytes=cache.max_bytes,
        block_size=cache.block_size,
        **_shared_fields(stats, PrefixCacheOut),  # lookups, hits, tokens, evictions, recent: copied by validation
        reuse=tiers.support.reuse,
        reuse_reason=tiers.support.reason,
        layers=tiers.support.layers,
        tokens_reused_by_tier=dict(stats.tokens_by_tier),
        prompt_tokens_computed=entry.scheduler.stats.prompt_tokens_computed,
        disk=_disk_out(tiers.disk) if tiers.disk is not None else None,
    )


def _disk_out(disk: DiskCache) -> DiskCacheOut:
    return DiskCacheOut(
        folder=str(disk.folder),
        entries=len(disk),
        bytes=disk.nbytes,
        folder_bytes=disk.store.bytes,
        max_bytes=disk.store.max_bytes,
        **vars(disk.stats),
    )


@router.post("/models/{model_id:path}/load")
async def load_model(
    model_id: str,
    engine: EngineDep,
    request: Request,
    pin: bool = False,
    kv_bits: int | None = Query(
        None,
        description="4 or 8: quantize this model's KV cache while it stays loaded (0: float); default: the"
        " server's kv_bits.",
    ),
    kv_group_size: int | None = Query(None, description="32, 64 or 128: values per KV quantization group."),
) -> LoadedModelOut:
    """Load a model (or find it loaded). With kv_bits / kv_group_size it runs that KV setting until unloaded; a
    model already loaded with another one is a 409."""
    if model_id in request.app.state.distributed.specs:  # its ranks start instead
        return await distributed.load(request.app.state.distributed, model_id)
    kv: KVSetting | None = None
    if kv_bits is not None or kv_group_size is not None:
        default = engine.pool.config.kv
        try:
            kv = kv_setting(kv_bits if kv_bits is not None else default.bits, kv_group_size or default.group_size)
        except ValueError as exc:
            raise APIError(400, str(exc), param="kv_bits" if kv_bits is not None else "kv_group_size") from exc
    try:
        return _out(await engine.load(model_id, pin=pin, kv=kv))
    except KVSettingConflict as exc:
        raise APIError(409, exc.message, param="kv_bits", code="kv_setting_conflict") from exc


@router.post("/models/{model_id:path}/adapters")
async def add_adapter(model_id: str, body: AdapterIn, engine: EngineDep) -> AdapterOut:
    """Serve the LoRA adapter at `path` on the base model `model_id` as BASE@NAME, attached now (the base is loaded
    if it is not). It stays listed until the server stops; unloading the base unloads it, a request reloads it."""
    info = await engine.add_adapter(model_id, body.path, body.name)
    entry = engine.pool.get(model_id)
    live = next((a for a in Adapters.live_on(entry) if a.ref.id == info.id), None) if entry else None
    if live is None:  # the base was unloaded again in between
        raise APIError(409, f"'{model_id}' was unloaded while the adapter was attached; retry.", param="model")
    return _adapter_out(live)


@router.post("/models/{model_id:path}/unload")
async def unload_model(model_id: str, engine: EngineDep, request: Request) -> dict[str, str]:
    """Unload a model (and every adapter on it), or take one adapter (BASE@NAME) off its base."""
    if model_id in request.app.state.distributed.specs:  # its ranks stop
        return await distributed.unload(request.app.state.distributed, model_id)
    info = engine.pool.get(model_id)
    base = model_id.rsplit("@", 1)[0] if info is None and "@" in model_id else None
    entry = engine.pool.get(base) if base else None
    if entry is not None and Adapters.detach(entry, model_id):
        return {"id": model_id, "status": "unloaded"}
    if not await engine.pool.unload(model_id):
        raise APIError(404, f"The model '{model_id}' is not loaded.", param="model", code="model_not_loaded")
    return {"id": model_id, "status": "unloaded"}
