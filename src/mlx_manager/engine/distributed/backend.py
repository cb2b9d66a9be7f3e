"""Distributed models as a Backend (engine/backend.py) in front of the local engine: a configured id runs on its
ranks (supervisor.py), every other id on the engine. Requests run one at a time, n=1, without the prefix cache."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from mlx_lm.tokenizer_utils import TokenizerWrapper
from mlx_lm.utils import load_tokenizer

from mlx_manager.config import default
from mlx_manager.engine.backend import ONE, Backend, Capabilities, Run
from mlx_manager.engine.detokenizer import IncrementalDetokenizer
from mlx_manager.engine.discovery import inspect_model
from mlx_manager.engine.distributed.supervisor import DistributedSpec, RankGroup, read_hostfile
from mlx_manager.engine.errors import ContextLengthError, InvalidRequestError, ModelLoadError, ModelUnavailableError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.prompt import tokenize
from mlx_manager.engine.types import ChatPrompt, FinishReason, GenerationChunk, ModelInfo, Prompt, SamplingParams

DEFAULT_MAX_TOKENS: int = default("default_max_tokens")


def read_config(path: str | Path) -> list[DistributedSpec]:
    """A JSON list of {"id", "path", "hostfile", "strategy": "tensor"|"pipeline", "backend": "ring"|"jaccl"}."""
    specs = []
    for item in json.loads(Path(path).read_text()):
        strategy, backend = item.get("strategy", "tensor"), item.get("backend", "ring")
        if strategy not in ("tensor", "pipeline") or backend not in ("ring", "jaccl"):
            raise ValueError(f"{path}: '{item['id']}': strategy is tensor|pipeline and backend ring|jaccl")
        specs.append(
            DistributedSpec(
                id=item["id"],
                path=str(Path(item["path"]).expanduser()),
                hosts=read_hostfile(item["hostfile"]),
                strategy=strategy,
                backend=backend,
                step_timeout_seconds=float(item.get("step_timeout_seconds", 30.0)),
            )
        )
    return specs


class DistributedModels:
    def __init__(self, engine: Backend, specs: list[DistributedSpec]) -> None:
        self.engine = engine
        self.specs = {s.id: s for s in specs}
        self.groups: dict[str, RankGroup] = {}
        self.stats: dict[str, dict[str, int]] = {s.id: {"served": 0, "cancelled": 0, "failed": 0} for s in specs}
        self._tokenizers: dict[str, TokenizerWrapper] = {}
        self._locks = {s.id: asyncio.Lock() for s in specs}
        self._context = {i: info.context_length for i, info in self.infos().items()}

    def infos(self) -> dict[str, ModelInfo]:
        """What /v1/models and the other lists show for each distributed model: its folder's, under its own id."""
        return {s.id: inspect_model(Path(s.path), s.id, "folder") for s in self.specs.values()}

    async def group(self, model_id: str) -> RankGroup:
        """The model's ranks, started on first use; one that failed stays failed until `restart`."""
        async with self._locks[model_id]:
            group = self.groups.get(model_id)
            if group is None:
                group = RankGroup(self.specs[model_id])
                try:
                    await asyncio.to_thread(group.start)
                except ModelLoadError as exc:  # a 503 a routing rule can fall back from, saying which rank and why
                    raise ModelUnavailableError(exc.message) from exc
                self.groups[model_id] = group
                spec = self.specs[model_id]
                self._tokenizers[model_id] = await asyncio.to_thread(_tokenizer, Path(spec.path))
        return group

    async def restart(self, model_id: str) -> RankGroup:
        async with self._locks[model_id]:
            old = self.groups.pop(model_id, None)
        if old is not None:
            await asyncio.to_thread(old.stop)
        return await self.group(model_id)

    async def stop(self) -> None:
        for group in list(self.groups.values()):
            await asyncio.to_thread(group.stop)
        self.groups.clear()

    def status(self) -> list[dict[str, Any]]:
        out = []
        for model_id, spec in self.specs.items():
            group = self.groups.get(model_id)
            out.append(
                {
                    "id": model_id,
                    "strategy": spec.strategy,
                    "backend": spec.backend,
                    "hosts": [asdict(h) for h in spec.hosts],
                    "state": "stopped" if group is None else "ready" if group.available else "unavailable",
                    "error": group.error if group is not None else None,
                    "ranks": group.ranks if group is not None else [],
                    "pids": [p.pid for p in group.procs] if group is not None else [],
                    **self.stats[model_id],
                }
            )
        return out

    async def capabilities(self, model_id: str) -> Capabilities:
        if model_id not in self.specs:
            return await self.engine.capabilities(model_id)
        return Capabilities()

    async def count_tokens(self, model_id: str, prompt: Prompt) -> int:
        if model_id not in self.specs:
            return await self.engine.count_tokens(model_id, prompt)
        await self.group(model_id)
        tokenizer = self._tokenizers[model_id]
        return len(tokenize(tokenizer, prompt, len(tokenizer.vocab))[0])

    async def generate(self, model_id: str, prompt: Prompt, params: SamplingParams, run: Run = ONE) -> Generation:
        if model_id not in self.specs:
            return await self.engine.generate(model_id, prompt, params, run)
        if run.n != 1:
            raise InvalidRequestError("A distributed model generates one sequence per request (n=1).", param="n")
        if params.logprobs or params.response_format is not None:
            raise InvalidRequestError("A distributed model serves neither logprobs nor structured output.")
        group = await self.group(model_id)
        if not group.available:
            raise group.unavailable()
        tokenizer = self._tokenizers[model_id]
        ids, _ = tokenize(tokenizer, prompt, len(tokenizer.vocab))
        if not ids:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        param = "messages" if isinstance(prompt, ChatPrompt) else "prompt"
        context = min(n for n in (self._context[model_id], params.max_context, 1 << 30) if n)
        if len(ids) >= context or (params.max_tokens and len(ids) + params.max_tokens > context):
            raise ContextLengthError(len(ids), params.max_tokens or 0, context, param)
        observer = getattr(getattr(self.engine, "config", None), "observer", None)  # the engine's metrics
        gen = Generation(len(ids), 1, model_id, observer)
        payload = {
            "tokens": ids,
            "max_tokens": min(params.max_tokens or DEFAULT_MAX_TOKENS, context - len(ids)),
            "temperature": 1.0 if params.temperature is None else params.temperature,
            "top_p": params.top_p or 0.0,
            "top_k": params.top_k or 0,
            "seed": params.seed,
            "eos": [] if params.ignore_eos else sorted(tokenizer.eos_token_ids),
        }
        stream = _Stream(self, model_id, group, gen, tokenizer, ids, params.stop)
        stream.rid = group.submit(payload, stream.on_message, stream.on_error)
        return gen


def _tokenizer(path: Path) -> TokenizerWrapper:
    eos = json.loads((path / "config.json").read_text()).get("eos_token_id")
    tokenizer: TokenizerWrapper = load_tokenizer(path, eos_token_ids=eos)
    return tokenizer


class _Stream:
    """Rank 0's tokens for one request as engine chunks (on the supervisor's reader thread); a cancelled
    generation tells rank 0, which stops every rank at the next step."""

    def __init__(
        self,
        models: DistributedModels,
        model_id: str,
        group: RankGroup,
        gen: Generation,
        tokenizer: TokenizerWrapper,
        ids: list[int],
        stop: tuple[str, ...],
    ) -> None:
        self.models, self.model_id, self.group, self.gen = models, model_id, group, gen
        self.detok = IncrementalDetokenizer(tokenizer, ids)
        self.eos = set(tokenizer.eos_token_ids)
        self.stop, self.text, self.sent = stop, "", 0
        self.rid = ""
        self.stopped: str | None = None  # the stop string that ended it

    def on_message(self, msg: dict[str, Any]) -> None:
        stats = self.models.stats[self.model_id]
        if "done" in msg:
            done = cast(FinishReason, msg["done"])
            reason: FinishReason = "stop" if self.stopped is not None else done
            if reason == "cancelled":
                stats["cancelled"] += 1
                reason = "aborted" if self.gen.aborted else "cancelled"
            else:
                stats["served"] += 1
            rest = "" if self.stopped is not None else self.text[self.sent :] + self.detok.flush()
            self.gen.deliver([GenerationChunk(0, rest, [], finish_reason=reason, stop_sequence=self.stopped)])
            return
        if self.gen.cancelled() or self.stopped is not None:
            self.group.cancel(self.rid)
            return
        token = int(msg["token"])
        if token in self.eos:
            return
        self.gen.usage.completion_tokens += 1
        self.text += self.detok.add(token)
        text = self._visible()
        self.gen.deliver([GenerationChunk(0, text, [token])])

    def _visible(self) -> str:
        """New text up to a stop string (which ends the sequence), holding back what may begin one."""
        for s in self.stop:
            at = self.text.find(s)
            if at >= 0:
                self.stopped, self.text = s, self.text[:at]
                self.group.cancel(self.rid)
                break
        hold = 0 if self.stopped else max((len(s) - 1 for s in self.stop), default=0)
        end = max(len(self.text) - hold, self.sent)
        out, self.sent = self.text[self.sent : end], end
        return out

    def on_error(self, error: BaseException) -> None:
        self.models.stats[self.model_id]["failed"] += 1
        self.gen.deliver([], error)
