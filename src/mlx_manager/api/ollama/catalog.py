"""Ollama's model management on this server's models: tags, show, ps, pull (Hugging Face repo ids through the
downloader, as Ollama's progress objects), delete, and copy (an alias: a profile of the source). No MLX here."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from mlx_manager.api.errors import APIError
from mlx_manager.api.manager.deps import write_then
from mlx_manager.api.manager.schemas import ProfileCreate
from mlx_manager.api.ollama.schemas import Details, Progress, RunningModel, Show, TagModel
from mlx_manager.api.ollama.serving import OllamaServing
from mlx_manager.db.models import Profile
from mlx_manager.engine.errors import ModelNotFoundError
from mlx_manager.engine.types import ModelInfo
from mlx_manager.manager import profiles as profile_rows
from mlx_manager.manager.downloads import DownloadManager
from mlx_manager.manager.downloads_state import TERMINAL
from mlx_manager.manager.profiles import ProfileDefaults
from mlx_manager.manager.services import Manager

# What /api/ps says of a model no timer unloads (pinned, or no idle TTL): Ollama's "forever" is as far off.
FOREVER = timedelta(days=365 * 100)


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _digest(info: ModelInfo) -> str:
    return hashlib.sha256(f"{info.path}\0{info.size_bytes}\0{info.created}".encode()).hexdigest()


def _config(info: ModelInfo) -> dict[str, Any]:
    try:
        data = json.loads((Path(info.path) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def parameter_count(info: ModelInfo, config: dict[str, Any]) -> int:
    """Estimated from the weights' bytes and their width (Ollama shows it as "1.7B")."""
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "")
    bits = info.quantization_bits or (32 if dtype == "float32" else 16)
    return int(info.size_bytes * 8 / bits)


def _size(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}" if unit == "B" else f"{n / scale:.0f}{unit}"
    return str(n)


def details(info: ModelInfo, parent: str = "") -> Details:
    config = _config(info)
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float16")
    level = (
        f"Q{info.quantization_bits}"
        if info.quantization_bits
        else {"float32": "F32", "bfloat16": "BF16"}.get(dtype, "F16")
    )
    return Details(
        parent_model=parent,
        family=info.family,
        families=[info.family],
        parameter_size=_size(parameter_count(info, config)),
        quantization_level=level,
    )


def _tag(name: str, info: ModelInfo, parent: str = "") -> TagModel:
    modified = _iso(datetime.fromtimestamp(info.created, UTC))
    return TagModel(
        name=name,
        model=name,
        modified_at=modified,
        size=info.size_bytes,
        digest=_digest(info),
        details=details(info, parent),
    )


async def tags(serving: OllamaServing, profiles: list[ProfileDefaults]) -> list[TagModel]:
    """Every model, then the profiles (aliases made by /api/copy among them) with their model's details."""
    models = {m.id: m for m in await serving.engine.list_models()}

    def build() -> list[TagModel]:  # reads each model's config.json
        out = [_tag(mid, info) for mid, info in sorted(models.items())]
        return out + [_tag(p.name, models[p.model], p.model) for p in profiles if p.model in models]

    return await asyncio.to_thread(build)


async def resolve(serving: OllamaServing, requested: str) -> tuple[str, ModelInfo, ProfileDefaults | None]:
    """The name as the client means it, its model's info, and the profile it names (if it does); 404 otherwise."""
    name = await serving.name(requested)
    profile = serving.starter.profiles.get(name) if serving.starter.profiles is not None else None
    try:
        info = await serving.engine.resolve(profile.model if profile else name)
    except ModelNotFoundError as exc:
        raise APIError(404, f"model '{requested}' not found") from exc
    return name, info, profile


def chat_template(info: ModelInfo) -> str:
    folder = Path(info.path)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return ""
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else ""


def capabilities(info: ModelInfo, template: str) -> list[str]:
    if info.task in ("transcribe", "speak"):
        return []  # Ollama has no name for speech to text or text to speech
    if info.task != "generate":
        return ["embedding"]
    caps = ["completion"]
    if "tools" in template:
        caps.append("tools")
    if any(mark in template for mark in ("enable_thinking", "<think>", "reasoning_content", "thinking")):
        caps.append("thinking")
    if info.vision:
        caps.append("vision")
    return caps


async def show(serving: OllamaServing, requested: str) -> Show:
    name, info, profile = await resolve(serving, requested)
    template = await asyncio.to_thread(chat_template, info)
    defaults = (
        {k: v for k, (v, _src) in serving.engine.sampling_defaults(info).items()} if info.task == "generate" else {}
    )
    if profile is not None:
        defaults |= {k: getattr(profile, k) for k in ("temperature", "top_p") if getattr(profile, k) is not None}
        if profile.max_tokens is not None:
            defaults["num_predict"] = profile.max_tokens
        if profile.context_length is not None:
            defaults["num_ctx"] = profile.context_length
    parameters = "\n".join(f"{k:<30} {v}" for k, v in defaults.items())
    modelfile = [f"# Modelfile of {name}, generated by MLX Manager", f"FROM {info.path}"]
    modelfile += [f"PARAMETER {k} {v}" for k, v in defaults.items()]
    if profile is not None and profile.system_prompt:
        modelfile.append(f'SYSTEM """{profile.system_prompt}"""')
    config = await asyncio.to_thread(_config, info)
    model_info: dict[str, Any] = {
        "general.architecture": info.model_type,
        "general.basename": info.id,
        "general.parameter_count": parameter_count(info, config),
    }
    if info.context_length:
        model_info[f"{info.model_type}.context_length"] = info.context_length
    return Show(
        modelfile="\n".join(modelfile) + "\n",
        parameters=parameters,
        template=template,
        details=await asyncio.to_thread(details, info, profile.model if profile else ""),
        model_info=model_info,
        capabilities=capabilities(info, template),
        modified_at=_iso(datetime.fromtimestamp(info.created, UTC)),
    )


def running(serving: OllamaServing) -> list[RunningModel]:
    """The loaded models, with what they take and when their idle TTL (or keep_alive) unloads them."""
    pool = serving.engine.pool
    out = []
    for entry in pool.entries():
        if entry.loaded is None:
            continue
        info = entry.info
        left = pool.expires_in(entry)
        expires = datetime.now(UTC) + (FOREVER if left is None else timedelta(seconds=left))
        size = entry.memory_bytes
        out.append(
            RunningModel(
                name=info.id,
                model=info.id,
                size=size,
                size_vram=size,  # unified memory: the weights are where the GPU reads them
                digest=_digest(info),
                details=details(info),
                expires_at=_iso(expires),
                context_length=info.context_length,
            )
        )
    return out


# --- pull --------------------------------------------------------------------------------------------------------


def repo_id(name: str) -> str:
    """A Hugging Face repo id from an Ollama model name: "hf.co/" or "huggingface.co/" prefixes and a ":latest"
    tag are dropped (another tag, a quantization of a GGUF repo, is not something this server pulls)."""
    for prefix in ("https://", "hf.co/", "huggingface.co/"):
        name = name.removeprefix(prefix)
    base, _, tag = name.partition(":")
    if tag and tag != "latest":
        raise APIError(400, f"'{name}': pull takes a Hugging Face repo id (org/name) of an MLX model, without a tag.")
    if base.count("/") != 1:
        raise APIError(
            400, f"'{name}' is not a Hugging Face repo id: pull takes org/name, e.g. mlx-community/Qwen3-0.6B-4bit."
        )
    return base


async def pull(downloads: DownloadManager, name: str) -> AsyncIterator[Progress]:
    """Ollama's progress objects for a download: the manifest, each file as it grows (by digest), then success.
    A download of the repo already running is followed rather than started again."""
    repo = repo_id(name)
    running_job = next((d for d in downloads.list_all() if d["repo_id"] == repo and d["status"] not in TERMINAL), None)
    digests: dict[str, str] = {}
    if running_job is not None:
        download_id = running_job["id"]
    else:
        job = await downloads.create(repo)
        download_id = job.id
        digests = {path: state.remote.etag for path, state in job.files.items()}
    return _progress(downloads, download_id, digests)


async def _progress(downloads: DownloadManager, download_id: str, digests: dict[str, str]) -> AsyncIterator[Progress]:
    yield Progress(status="pulling manifest")
    sent: dict[str, int] = {}
    snap: dict[str, Any] = {}
    async for snap in downloads.watch(download_id):
        for f in snap["files"]:
            if sent.get(f["path"]) == f["downloaded_bytes"]:
                continue
            sent[f["path"]] = f["downloaded_bytes"]
            digest = digests.get(f["path"], f["path"])
            yield Progress(
                status=f"pulling {digest[:12]}",
                digest=f"sha256:{digest}",
                total=f["size"],
                completed=f["downloaded_bytes"],
            )
    if snap.get("status") != "completed":
        raise APIError(
            500,
            f"pull of '{snap.get('repo_id', '')}' {snap.get('status', 'failed')}: {snap.get('error') or 'stopped'}"[
                :2000
            ],
        )
    for status in ("verifying sha256 digest", "writing manifest", "success"):
        yield Progress(status=status)


# --- delete and copy ---------------------------------------------------------------------------------------------


def _profile_row(session: Session, name: str) -> Profile | None:
    return session.exec(select(Profile).where(Profile.name == name)).first()


async def delete(serving: OllamaServing, manager: Manager, downloads: DownloadManager, requested: str) -> None:
    """An alias (profile) is forgotten; a model downloaded into the Hugging Face cache is unloaded and deleted. A
    model in a model folder is the user's own files: a 400 saying so."""
    name, info, profile = await resolve(serving, requested)
    if profile is not None:

        def forget(session: Session) -> None:
            row = _profile_row(session, name)
            if row is not None and row.id is not None:
                profile_rows.delete(session, row.id)

        await write_then(manager, forget, manager.profiles.reload)
        return
    if info.source != "hf-cache":
        raise APIError(
            400,
            f"'{name}' is in a model folder ({info.path}): delete it there; this server deletes only its downloads.",
        )
    await serving.engine.pool.unload(info.id)
    await downloads.delete_local(info.id)
    await serving.engine.rescan_models()


async def copy(serving: OllamaServing, manager: Manager, source: str, destination: str) -> None:
    """The destination becomes an alias of the source: a profile running its model (with its values, when the
    source is a profile itself). A model's own name cannot be taken."""
    _, info, profile = await resolve(serving, source)
    if destination in {m.id for m in await serving.engine.list_models()}:
        raise APIError(400, f"'{destination}' is the name of a model; copy to another name.")
    values: dict[str, Any] = profile.model_dump(exclude={"created"}) if profile is not None else {"model": info.id}
    values["name"] = destination
    try:
        checked = ProfileCreate.model_validate(values).model_dump()
    except ValueError as exc:
        raise APIError(400, f"'{destination}' is not a usable name: letters, digits and _ . : @ - (no '/').") from exc

    def change(session: Session) -> None:
        row = _profile_row(session, destination)
        if row is None:
            profile_rows.create(session, checked)
        else:
            profile_rows.update(session, row.id or 0, checked)

    await write_then(manager, change, manager.profiles.reload)
