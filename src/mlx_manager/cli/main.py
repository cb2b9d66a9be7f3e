"""The `mlx-manager` command line."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mlx_manager import __version__, blas, file_modes, paths
from mlx_manager.cli import process
from mlx_manager.cli.distributed import app as distributed_app
from mlx_manager.config import Settings, load_settings
from mlx_manager.observability.logs import setup_logging

app = typer.Typer(help="Serve and manage MLX language models.", no_args_is_help=True, add_completion=False)
app.add_typer(distributed_app, name="distributed")
console = Console()
err = Console(stderr=True)

Host = Annotated[str | None, typer.Option(help="Address to bind. [default: 127.0.0.1]")]
Port = Annotated[int | None, typer.Option(help="Port to listen on. [default: 8080]")]
ModelDirs = Annotated[
    list[Path] | None, typer.Option("--model-dir", help="Folder of model folders (repeatable).", show_default=False)
]
ApiKey = Annotated[str | None, typer.Option(help="Require this key as 'Authorization: Bearer KEY'.")]
MaxModels = Annotated[int | None, typer.Option(help="Most models kept loaded at once.")]
Preload = Annotated[list[str] | None, typer.Option("--preload", help="Model to load and pin at start (repeatable).")]
LogLevel = Annotated[str | None, typer.Option(help="debug, info, warning or error.")]
AllowRemote = Annotated[
    bool | None,
    typer.Option("--allow-unauthenticated-remote", help="Allow a non-loopback bind without an API key."),
]
OpenBlas = Annotated[bool | None, typer.Option("--openblas/--no-openblas", help="Preload the system OpenBLAS.")]
CpuDtype = Annotated[
    str | None,
    typer.Option(
        "--cpu-dtype",
        help="On MLX's CPU backend: auto (run quantized/half checkpoints in float32 when they fit), float32"
        " (always) or keep (as stored). [default: auto]",
    ),
]
CpuKernels = Annotated[
    str | None,
    typer.Option(
        "--cpu-kernels",
        help="On MLX's CPU backend: numpy (attention and SwiGLU through NumPy on every core, lazy decode steps) or mlx"
        " (MLX's own kernels). [default: numpy]",
    ),
]
Generation = Annotated[
    list[str] | None,
    typer.Option(
        "--generation",
        help="Server-wide sampling default, KEY=VALUE (temperature, top_p, top_k, min_p, repetition_penalty;"
        " repeatable). A model's generation_config.json comes first; requests and profiles override both.",
        show_default=False,
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ValueError as exc:
        raise _fail(f"invalid configuration: {exc}") from exc


# The options `serve` and `start` share, declared once: parameter, its CLI type, the Settings field it sets.
_SERVER_OPTIONS: tuple[tuple[str, object, str], ...] = (
    ("host", Host, "host"),
    ("port", Port, "port"),
    ("model_dir", ModelDirs, "model_dirs"),
    ("api_key", ApiKey, "api_key"),
    ("max_models", MaxModels, "max_models"),
    ("preload", Preload, "preload"),
    ("log_level", LogLevel, "log_level"),
    ("allow_unauthenticated_remote", AllowRemote, "allow_unauthenticated_remote"),
    ("openblas", OpenBlas, "use_openblas"),
    ("generation", Generation, "generation"),
    ("cpu_dtype", CpuDtype, "cpu_dtype"),
    ("cpu_kernels", CpuKernels, "cpu_kernels"),
)


def _serve_overrides(options: dict[str, object]) -> dict[str, object]:
    overrides = {field: options[name] for name, _, field in _SERVER_OPTIONS}
    for field in ("model_dirs", "preload"):
        overrides[field] = overrides[field] or None  # an empty repeatable option is unset, not empty
    generation = options["generation"]
    overrides["generation"] = _key_values(generation, "--generation") if isinstance(generation, list) else None
    return overrides


def _server_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the shared server options to `command`, which gets them as `overrides` (Settings fields)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "overrides"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=annotation)
        for name, annotation, _ in _SERVER_OPTIONS
    ]

    @functools.wraps(command)
    def with_options(**kwargs: object) -> None:
        options = {name: kwargs.pop(name) for name, _, _ in _SERVER_OPTIONS}
        command(overrides=_serve_overrides(options), **kwargs)

    signature = inspect.Signature([*shared, *own], return_annotation=None)
    with_options.__signature__ = signature  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return with_options


def _key_values(items: list[str], option: str) -> dict[str, str]:
    pairs = [item.partition("=") for item in items]
    bad = [item for item, (_, eq, value) in zip(items, pairs, strict=True) if not eq or not value]
    if bad:
        raise typer.BadParameter(f"expected KEY=VALUE, got {bad[0]!r}", param_hint=f"'{option}'")
    return {key.strip(): value.strip() for key, _, value in pairs}


def _check_bind(settings: Settings) -> None:
    if not settings.is_loopback and settings.api_key is None and not settings.allow_unauthenticated_remote:
        raise _fail(
            f"refusing to listen on {settings.host} without an API key: anyone on the network could use it.\n"
            "Set one with --api-key / MLX_MANAGER_API_KEY, or pass --allow-unauthenticated-remote."
        )
    if process.port_in_use(settings.host, settings.port):
        raise _fail(
            f"port {settings.port} on {settings.host} is already in use"
            " (another mlx-manager? see `mlx-manager status`).\n"
            "Pick another with --port or MLX_MANAGER_PORT."
        )


@app.command()
@_server_options
def serve(overrides: dict[str, object]) -> None:
    """Run the server in the foreground."""
    settings = _settings(**overrides)
    blas.reexec_with_openblas(settings.use_openblas)
    _check_bind(settings)
    narrowed = file_modes.secure_install()  # before the log file exists: it is created 0600
    log_file = process.log_file() if settings.log_file else None
    setup_logging(settings.log_level, settings.log_json, log_file)
    log = logging.getLogger("mlx_manager")
    log.info("mlx-manager %s on http://%s:%d; BLAS: %s", __version__, settings.host, settings.port, blas.describe())
    for path in narrowed:
        log.warning("%s was readable by other users; it is owner-only now (see README: rotate-secrets)", path)

    import uvicorn

    from mlx_manager.api.app import create_app
    from mlx_manager.api.drain import DrainingServer

    pid = os.getpid()
    process.clear_on_sigterm(pid)
    if process.running() is None:
        args, _ = process.split_api_key(_forward_args(sys.argv, "serve"))
        process.write_run_info(
            process.RunInfo(pid, settings.host, settings.port, time.time(), args, settings.api_key is not None)
        )
    try:
        application = create_app(settings)
        config = uvicorn.Config(
            application,
            host=settings.host,
            port=settings.port,
            log_config=None,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
        )
        DrainingServer(config, application, settings.drain_seconds).run()
    finally:
        process.clear_run_info(pid)


@app.command()
@_server_options
def start(
    overrides: dict[str, object],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for /health.")] = 60.0,
) -> None:
    """Start the server in the background and wait until it answers."""
    existing = process.running()
    if existing is not None:
        console.print(f"already running (pid {existing.pid}) on {existing.base_url}")
        return
    settings = _settings(**overrides)
    _check_bind(settings)
    file_modes.secure_install()  # the console log is created below
    args, key = process.split_api_key(_forward_args(sys.argv, "start"))
    try:
        info = process.start_background(args, settings.host, settings.port, timeout, key)
    except process.StartError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"started (pid {info.pid}) on {info.base_url}; logs: {process.log_file()}")


def _forward_args(argv: list[str], command: str) -> list[str]:
    """Arguments after the sub-command, minus the ones only `start` knows."""
    args = argv[argv.index(command) + 1 :] if command in argv else []
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--timeout":
            skip = True
            continue
        if arg.startswith("--timeout="):
            continue
        out.append(arg)
    return out


@app.command()
def stop(timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 15.0) -> None:
    """Stop the background server (SIGTERM, then SIGKILL after the timeout)."""
    info = process.running()
    if info is None:
        console.print("not running")
        return
    killed = process.stop_process(info.pid, timeout)
    console.print(f"stopped (pid {info.pid}){' with SIGKILL' if killed else ''}")


@app.command()
def restart(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for /health.")] = 60.0,
) -> None:
    """Stop, then start again with the same serve arguments."""
    info = process.running()
    args = info.args if info else []
    settings = _settings(host=info.host if info else None, port=info.port if info and info.port else None)
    key = settings.api_key.get_secret_value() if settings.api_key else None
    if info is not None and info.key_required and key is None:
        raise _fail(
            "the running server requires an API key, which is never stored; pass it again through"
            " MLX_MANAGER_API_KEY (or the config file) to restart it."
        )
    if info is not None:
        process.stop_process(info.pid, 15.0)
    try:
        new = process.start_background(args, settings.host, settings.port, timeout, key)
    except process.StartError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"restarted (pid {new.pid}) on {new.base_url}")


@app.command()
def status() -> None:
    """Show pid, uptime, address, health and loaded models. Exit code 3 when not running."""
    info = process.running()
    if info is None:
        console.print("mlx-manager: [yellow]not running[/yellow]")
        raise typer.Exit(3)
    uptime = time.time() - info.started_at if info.started_at else 0
    health = process.health(info.base_url)
    console.print(f"mlx-manager: [green]running[/green] (pid {info.pid})")
    console.print(f"  address: {info.base_url}")
    console.print(f"  uptime:  {uptime:.0f}s")
    console.print(f"  health:  {'ok' if health else 'not answering'}")
    if health:
        settings = _settings()
        key = settings.api_key.get_secret_value() if settings.api_key else None
        loaded = process.loaded_models(info, key)
        console.print(f"  loaded:  {', '.join(loaded) if loaded else '(none)'}")


@app.command()
def models(model_dir: ModelDirs = None) -> None:
    """List local models MLX can load, with size and family."""
    from mlx_manager.engine.discovery import discover_models, hf_cache_dir

    settings = _settings(model_dirs=model_dir or None)
    found = discover_models(settings.all_model_dirs(), hf_cache_dir() if settings.scan_hf_cache else None)
    table = Table("id", "family", "size", "bits", "context", "source")
    for m in sorted(found.values(), key=lambda m: m.id):
        table.add_row(
            m.id,
            m.family,
            f"{m.size_bytes / 1e6:.1f} MB",
            str(m.quantization_bits or "-"),
            str(m.context_length or "-"),
            m.source,
        )
    console.print(table)


@app.command("import")
def import_cmd(
    gguf: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A llama-architecture .gguf file.")],
    name: Annotated[str | None, typer.Option(help="Model name (folder name in the models dir).")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing model of that name.")] = False,
    dtype: Annotated[
        str | None,
        typer.Option(
            metavar="[float32|float16|bfloat16]",
            help="Dequantize and cast every weight to this float type (float32 is fastest on CPU). "
            "Without it, quantized weights stay quantized.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Import a GGUF file (Q4_0, Q4_1, Q8_0, F16, F32) as an MLX model."""
    from mlx_manager.manager.gguf_import import FLOAT_DTYPES, GGUFImportError, import_gguf

    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise typer.BadParameter(f"{dtype!r} is not one of {', '.join(FLOAT_DTYPES)}.", param_hint="'--dtype'")
    try:
        folder = import_gguf(gguf, paths.models_dir(), name, overwrite=force, dtype=dtype)
    except FileExistsError as exc:
        raise _fail(f"a model named '{name or gguf.stem}' already exists; pass --force to replace it.") from exc
    except GGUFImportError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"imported as [bold]{folder.name}[/bold] ({folder})")


@app.command()
def setup() -> None:
    """Fetch and import the embedded default model (SmolLM2-135M-Instruct) if it is missing."""
    from mlx_manager.manager.embedded import ensure_default_model

    try:
        folder = ensure_default_model(paths.models_dir(), paths.cache_dir())
    except Exception as exc:
        raise _fail(f"could not set up the default model: {exc}") from exc
    console.print(f"default model ready: [bold]{folder.name}[/bold] ({folder})")


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="Model name as the server knows it.")],
    url: Annotated[str | None, typer.Option(help="Server base URL. [default: this server's address]")] = None,
    api_key: ApiKey = None,
    concurrency: Annotated[str, typer.Option(help="Comma-separated concurrency levels.")] = "1,2,4,8,16,32",
    prompt_tokens: Annotated[int, typer.Option(help="Prompt length of the random workload.")] = 128,
    output_tokens: Annotated[int, typer.Option(help="Completion tokens per request.")] = 64,
    requests: Annotated[int, typer.Option(help="Minimum requests per level (at least 2x concurrency).")] = 8,
    workload: Annotated[str, typer.Option(help="random, shared-prefix or all.")] = "random",
    prefix_tokens: Annotated[int, typer.Option(help="Shared prefix length of the shared-prefix workload.")] = 2000,
    tokenizer: Annotated[Path | None, typer.Option(help="Local tokenizer folder for exact prompt lengths.")] = None,
    ignore_eos: Annotated[bool, typer.Option(help="Send ignore_eos (vLLM extension) for fixed output length.")] = False,
    label: Annotated[str, typer.Option(help="Name of this server in the table.")] = "server",
    out: Annotated[Path, typer.Option(help="Folder for the JSON and PNG results.")] = Path("bench-results"),
) -> None:
    """Benchmark any OpenAI-compatible server: TTFT, ITL, latency percentiles, output tok/s over a sweep."""
    from mlx_manager.bench.client import Target
    from mlx_manager.bench.report import table, write_json, write_plot
    from mlx_manager.bench.sweep import run_sweep
    from mlx_manager.bench.workloads import PromptMaker

    if url is None:
        settings = _settings()
        url = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    maker = PromptMaker(tokenizer)
    pool = max(levels) * 2
    workloads = []
    if workload in ("random", "all"):
        workloads.append(maker.random(pool, prompt_tokens, output_tokens))
    if workload in ("shared-prefix", "all"):
        workloads.append(maker.shared_prefix(pool, prefix_tokens, 32, output_tokens))
    if not workloads:
        raise _fail(f"unknown workload {workload!r}; use random, shared-prefix or all")
    target = Target(url.rstrip("/"), model, api_key, ignore_eos)
    rows = run_sweep(target, label, workloads, levels, requests)
    Console(width=max(console.width, 170)).print(table(rows, f"{label}: {model} at {url}"))
    meta = {"url": url, "model": model, "prompt_tokens": prompt_tokens, "output_tokens": output_tokens}
    write_json(rows, out / "bench.json", meta)
    plotted = write_plot(rows, out / "bench.png")
    console.print(f"wrote {out / 'bench.json'}" + (f" and {out / 'bench.png'}" if plotted else ""))


@app.command("rotate-secrets")
def rotate_secrets(
    credentials: Annotated[
        bool, typer.Option("--credentials/--no-credentials", help="New credential key; stored credentials move to it.")
    ] = True,
    sessions: Annotated[
        bool, typer.Option("--sessions/--no-sessions", help="New session (JWT) secret: every session ends.")
    ] = True,
) -> None:
    """Replace the secrets at rest. Stop the server first: it holds the current ones in memory."""
    from mlx_manager.db.session import open_database
    from mlx_manager.manager import credential_keys
    from mlx_manager.manager.settings_store import rotate_server_secret

    running = process.running()
    if running is not None:
        raise _fail(f"the server is running (pid {running.pid}); stop it first (`mlx-manager stop`).")
    file_modes.secure_install()
    db = open_database(paths.database_file())
    try:
        if credentials:
            done = credential_keys.rotate(db, paths.credential_key_file())
            console.print(f"credential key replaced ({paths.credential_key_file()}); {done.resealed} re-encrypted")
            if done.unreadable:
                err.print(f"[yellow]could not open (left as they were):[/yellow] {', '.join(done.unreadable)}")
        if sessions:
            rotate_server_secret(db)
            console.print("session secret replaced: everyone signs in again")
    finally:
        db.dispose()


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


def run() -> None:
    app()
