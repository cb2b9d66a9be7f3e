"""The FastAPI application: one engine, the OpenAI and admin routers, health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial

import psutil
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST

from mlx_manager import __version__, paths, status_token
from mlx_manager.api.access import AccessMiddleware
from mlx_manager.api.admin.distributed import router as distributed_router
from mlx_manager.api.admin.routes import router as admin_router
from mlx_manager.api.admin.routes import status_router as admin_status_router
from mlx_manager.api.anthropic.routes import router as anthropic_router
from mlx_manager.api.anthropic.serving import AnthropicServing
from mlx_manager.api.audio_parts import AudioLimits
from mlx_manager.api.batches.dispatch import dispatcher
from mlx_manager.api.batches.routes import router as batches_router
from mlx_manager.api.batches.runner import BatchRunner
from mlx_manager.api.body_limit import BodyLimitMiddleware
from mlx_manager.api.browser_guard import BrowserGuardMiddleware
from mlx_manager.api.drain import DrainMiddleware
from mlx_manager.api.errors import install_error_handlers
from mlx_manager.api.images import ImageLimits
from mlx_manager.api.manager.downloads import router as downloads_router
from mlx_manager.api.manager.hub import router as hub_router
from mlx_manager.api.manager.hub_problems import install_hub_problems
from mlx_manager.api.manager.router import problem_openapi
from mlx_manager.api.manager.router import router as manager_router
from mlx_manager.api.middleware import RequestIdMiddleware
from mlx_manager.api.ollama.routes import root_router as ollama_root_router
from mlx_manager.api.ollama.routes import router as ollama_router
from mlx_manager.api.ollama.serving import OllamaServing
from mlx_manager.api.openai.audio import router as audio_router
from mlx_manager.api.openai.routes import router as openai_router
from mlx_manager.api.openai.serving import OpenAIServing
from mlx_manager.api.openai.speech import router as speech_router
from mlx_manager.api.request.limits import TimeLimits
from mlx_manager.api.request.normalize import Limits
from mlx_manager.api.request.start import Starter
from mlx_manager.api.rerank import router as rerank_router
from mlx_manager.api.responses.routes import router as responses_router
from mlx_manager.api.responses.serving import ResponsesServing
from mlx_manager.api.security import require_admin, require_admin_or_status_token, require_api_key
from mlx_manager.api.security_headers import SecurityHeadersMiddleware
from mlx_manager.api.web import WebUI
from mlx_manager.config import Settings
from mlx_manager.db.session import open_database
from mlx_manager.engine.discovery import hf_cache_dir
from mlx_manager.engine.distributed.backend import DistributedModels, read_config
from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.scheduler import SchedulerConfig
from mlx_manager.engine.speculative import SpeculativeConfig
from mlx_manager.engine.types import KVSetting
from mlx_manager.manager.batch_store import BatchStore
from mlx_manager.manager.downloads import DownloadManager
from mlx_manager.manager.hub import Hub
from mlx_manager.manager.responses_store import ResponseStore
from mlx_manager.manager.services import Manager
from mlx_manager.manager.settings_store import TIME_LIMITS
from mlx_manager.manager.signup import AccountConfig
from mlx_manager.observability.metrics import Metrics
from mlx_manager.observability.tracing import setup_tracing
from mlx_manager.routing.router import Router

log = logging.getLogger(__name__)


def engine_config(settings: Settings) -> EngineConfig:
    budget = settings.memory_budget_bytes or int(psutil.virtual_memory().total * settings.memory_budget_fraction)
    return EngineConfig(
        model_dirs=settings.all_model_dirs(),
        hf_cache=hf_cache_dir() if settings.scan_hf_cache else None,
        pool=PoolConfig(
            max_models=settings.max_models,
            memory_budget_bytes=budget,
            idle_ttl_seconds=settings.idle_ttl_seconds,
            room_wait_seconds=settings.room_wait_seconds,
            reserve_bytes=settings.memory_reserve_bytes,
            cpu_dtype=settings.cpu_dtype,
            kv=KVSetting(settings.kv_bits, settings.kv_group_size),
            scheduler=SchedulerConfig(
                max_num_seqs=settings.max_num_seqs,
                prefill_batch_size=min(SchedulerConfig.prefill_batch_size, settings.max_num_seqs),
                prefill_step_size=settings.prefill_step_size,
                step_prefill_tokens=settings.step_prefill_tokens,
                max_waiting=settings.max_waiting,
                prefix_cache_bytes=settings.prefix_cache_bytes,
                prefix_block_size=settings.prefix_block_size,
                disk_cache_dir=(settings.disk_cache_dir or paths.data_dir() / "kv-cache").expanduser(),
                disk_cache_bytes=settings.disk_cache_bytes,
                speculative=SpeculativeConfig(
                    mode=settings.speculative,
                    max_draft=settings.speculative_max_draft,
                    max_batch=settings.speculative_max_batch,
                    draft_model=settings.speculative_draft_model,
                ),
                vision_feature_cache_bytes=settings.vision_feature_cache_bytes,
            ),
        ),
        default_max_tokens=settings.default_max_tokens,
        generation_defaults=settings.generation.defaults(),
        max_tools=settings.max_tools,
        max_prompt_bytes=settings.max_prompt_bytes,
        max_messages=settings.max_messages,
        cpu_kernels=settings.cpu_kernels == "numpy",
        volatile_prompt_patterns=tuple(settings.volatile_prompt_patterns),
        preload=list(settings.preload),
    )


def time_limits(manager: Manager) -> TimeLimits:
    """The time limits now (live settings)."""
    now = manager.settings.current
    return TimeLimits(
        now.chat_timeout_seconds,
        now.completions_timeout_seconds,
        now.embeddings_timeout_seconds,
        now.queue_timeout_seconds,
    )


health_router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["metrics"])


@metrics_router.get("/metrics", response_class=Response)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; behind the API key when one is set."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


@health_router.get("/health")
async def health(request: Request) -> dict[str, object]:
    engine: Engine = request.app.state.engine
    return {"status": "ok", "version": __version__, "models_loaded": len(engine.pool.entries())}


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()
    db = open_database(paths.database_file())
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    accounts = AccountConfig.from_settings(settings)
    configured_limits = {name: getattr(settings, name) for name in TIME_LIMITS}
    # Saved settings apply from the start.
    manager = Manager(db, engine_config(settings), api_key, accounts=accounts, time_limits=configured_limits)
    engine = Engine(replace(manager.engine_config(), observer=metrics))
    metrics.attach(engine)
    downloads = DownloadManager(
        db,
        Hub(hf_cache_dir()),
        disk_reserve_bytes=settings.download_disk_reserve_bytes,
        on_complete=lambda _repo_id: engine.rescan_models(),  # /v1/models lists it at once
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        await manager.start(engine)
        await downloads.start()  # downloads that were running when the server stopped resume
        app.state.batch_runner.start()  # batches that were running when the server stopped resume
        router.start_health_checks(settings.health_check_seconds)
        app.state.status_token = status_token.write(settings.port)  # for `mlx-manager status` (0600 file)
        try:
            yield
        finally:
            status_token.remove(settings.port, app.state.status_token)
            await router.close()
            await downloads.stop()
            await app.state.batch_runner.stop()
            await distributed.stop()
            await engine.stop()
            await manager.stop()

    app = FastAPI(title="MLX Manager", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.draining = False
    app.state.status_token = None
    app.state.api_key = api_key
    app.state.db = db
    app.state.manager = manager
    app.state.downloads = downloads
    # Distributed models (engine/distributed) answer their own ids; every other id runs on the local engine.
    specs = read_config(settings.distributed_config) if settings.distributed_config else []
    app.state.distributed = distributed = DistributedModels(engine, specs)
    engine.listed.update(distributed.infos())  # /v1/models (and the other lists) show them like local models
    engine.listed_loaded = distributed.is_loaded
    # Rules come from the database; a model no rule names runs on the local engine.
    router = Router(
        distributed,
        manager.routing.table,
        settings.breaker_failures,
        settings.breaker_cooldown_seconds,
        settings.backend_retries,
        engine.check_prompt_size,
    )
    app.state.router = router
    metrics.attach_router(router)
    # Every API starts its generations through the router: profiles, images, then here or elsewhere.
    images = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)
    audio = AudioLimits(settings.max_audio_bytes, settings.max_audio_seconds)
    starter = Starter(router, manager.profiles, images, partial(time_limits, manager), metrics.time_limit, audio)
    limits = Limits(settings.max_n, settings.max_stop_sequences)
    app.state.openai_serving = OpenAIServing(starter, limits)
    app.state.anthropic_serving = AnthropicServing(starter, limits)
    app.state.responses_serving = ResponsesServing(starter, limits, ResponseStore(db))
    app.state.ollama_serving = OllamaServing(starter, limits, engine)
    app.state.batch_store = BatchStore(db, paths.data_dir())
    app.state.batch_runner = BatchRunner(app.state.batch_store, dispatcher(app), lambda: bool(app.state.draining))
    install_error_handlers(app)
    install_hub_problems(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:  # off unless configured: a local server should not answer arbitrary web pages
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    # Outside CORS: DNS rebinding, cross-site form posts and non-JSON bodies stop here (api/browser_guard.py).
    app.add_middleware(
        BrowserGuardMiddleware,
        bind=settings.host,
        allowed_hosts=settings.allowed_hosts,
        cors_origins=settings.cors_origins,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(DrainMiddleware)
    app.add_middleware(AccessMiddleware, metrics=metrics, on_request=manager.audit.record_access)
    app.add_middleware(RequestIdMiddleware)  # outermost: every other layer sees the request id
    guarded = [Depends(require_api_key)]
    app.include_router(openai_router, dependencies=guarded)
    app.include_router(audio_router, dependencies=guarded)
    app.include_router(speech_router, dependencies=guarded)
    app.include_router(anthropic_router, dependencies=guarded)
    app.include_router(responses_router, dependencies=guarded)
    app.include_router(batches_router, dependencies=guarded)
    app.include_router(rerank_router, dependencies=guarded)
    app.include_router(ollama_router)  # its routes name their own guard: pull, delete and copy need an admin
    app.include_router(ollama_root_router)  # GET / is still the web UI for browsers
    app.include_router(admin_status_router, dependencies=[Depends(require_admin_or_status_token)])
    app.include_router(admin_router, dependencies=[Depends(require_admin)])
    app.include_router(distributed_router, dependencies=[Depends(require_admin)])
    app.include_router(health_router)
    app.include_router(metrics_router, dependencies=[Depends(require_admin)])
    app.include_router(manager_router)
    app.include_router(hub_router, dependencies=[Depends(require_admin)])
    app.include_router(downloads_router, dependencies=[Depends(require_admin)])
    problem_openapi(app)
    app.state.tracing = setup_tracing(app)
    app.mount("/", WebUI(), name="web")  # last: the UI gets only the paths no route took
    return app
