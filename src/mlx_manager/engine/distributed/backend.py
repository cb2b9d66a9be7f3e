"""Distributed models as a Backend (engine/backend.py) in front of the local engine: a configured id runs on its
ranks (supervisor.py), every other id on the engine. A request is prepared as the engine prepares one (sampling
defaults, grammar, output parser: the same code), rank 0 samples it, and its tokens become chunks through the
engine's Sequence. Requests take turns, one at a time (lower `priority` first), n=1, without the prefix cache."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.tokenizer_utils import TokenizerWrapper
from mlx_lm.utils import load_tokenizer

from mlx_manager.config import default
from mlx_manager.engine.backend import ONE, Backend, Capabilities, Run
from mlx_manager.engine.discovery import inspect_model
from mlx_manager.engine.distributed.supervisor import DistributedSpec, RankGroup, read_hostfile
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.errors import ContextLengthError, InvalidRequestError, ModelLoadError, ModelUnavailableError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.generation_defaults import fill
from mlx_manager.engine.loader import LoadedModel, describe_loaded
from mlx_manager.engine.output import output_parser_factory, reasoning_budget_factory
from mlx_manager.engine.prompt import tokenize
from mlx_manager.engine.sequence import Sequence
from mlx_manager.engine.structured import fit_forced_call, request_constraint
from mlx_manager.engine.types import ChatPrompt, FinishReason, ModelInfo, Prompt, SamplingDefaults, SamplingParams

DEFAULT_MAX_TOKENS: int = default("default_max_tokens")
# What rank 0 rebuilds the request's SamplingParams from (engine/sampling.py runs there).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty")
_NO_LOGPROBS = mx.zeros((1,))
# What a distributed model does not serve (docs/scaling.md), listed on its /v1/models card.
LIMITS = [
    "one request at a time: the others wait (lower priority first, then arrival) within the queue time limit",
    "n=1",
    "no logprobs",
    "no prefix cache",
]


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
                python=item.get("python"),
                env=tuple((str(k), str(v)) for k, v in item.get("env", {}).items()),
                ring_port=int(item.get("ring_port", 32323)),
            )
        )
    return specs


@dataclass(order=True)
class _Turn:
    """A prepared request waiting for the ranks: lower priority first, then arrival."""

    priority: int
    order: int
    stream: _Stream = field(compare=False)
    payload: dict[str, Any] = field(compare=False)


class DistributedModels:
    def __init__(self, engine: Backend, specs: list[DistributedSpec]) -> None:
        self.engine = engine
        self.specs = {s.id: s for s in specs}
        self.groups: dict[str, RankGroup] = {}
        self.stats: dict[str, dict[str, int]] = {s.id: {"served": 0, "cancelled": 0, "failed": 0} for s in specs}
        self.tokens = {s.id: 0 for s in specs}  # generated, for the admin list
        self.models: dict[str, LoadedModel] = {}  # tokenizer, family, stop tokens: the weights are on the ranks
        self._locks = {s.id: asyncio.Lock() for s in specs}
        self._context = {i: info.context_length for i, info in self.infos().items()}
        self._waiting: dict[str, list[_Turn]] = {s.id: [] for s in specs}
        self._running: dict[str, _Stream | None] = {s.id: None for s in specs}
        self._order = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None

    def card(self, model_id: str) -> dict[str, Any] | None:
        """What /v1/models says of a distributed model: its split, its ranks, and what it does not serve."""
        spec = self.specs.get(model_id)
        if spec is None:
            return None
        return {
            "strategy": spec.strategy,
            "backend": spec.backend,
            "ranks": len(spec.hosts),
            "hosts": [h.ssh for h in spec.hosts],
            "concurrent_requests": 1,
            "limits": LIMITS,
        }

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
                info = inspect_model(Path(self.specs[model_id].path), model_id, "folder")
                self.models[model_id] = await asyncio.to_thread(_describe, info)
        return group

    async def restart(self, model_id: str) -> RankGroup:
        async with self._locks[model_id]:
            old = self.groups.pop(model_id, None)
        if old is not None:
            await asyncio.to_thread(old.stop)
        return await self.group(model_id)

    async def unload(self, model_id: str) -> bool:
        """Stop the model's ranks; False while a request runs or waits on them."""
        async with self._locks[model_id]:
            if self._running[model_id] is not None or self._waiting[model_id]:
                return False
            group = self.groups.pop(model_id, None)
        if group is not None:
            await asyncio.to_thread(group.stop)
        return True

    def is_loaded(self, model_id: str) -> bool:
        group = self.groups.get(model_id)
        return group is not None and group.available

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
                    "running": int(self._running[model_id] is not None),
                    "waiting": len(self._waiting[model_id]),
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
        lm = self.models[model_id]
        return len(tokenize(lm.tokenizer, prompt, lm.vocab_size, lm.family.reasoning)[0])

    async def generate(self, model_id: str, prompt: Prompt, params: SamplingParams, run: Run = ONE) -> Generation:
        if model_id not in self.specs:
            return await self.engine.generate(model_id, prompt, params, run)
        if run.n != 1:
            raise InvalidRequestError("A distributed model generates one sequence per request (n=1).", param="n")
        if params.logprobs or params.top_logprobs:
            raise InvalidRequestError("A distributed model does not return logprobs.", param="logprobs")
        group = await self.group(model_id)
        if not group.available:
            raise group.unavailable()
        lm = self.models[model_id]
        context = min(n for n in (self._context[model_id], params.max_context, 1 << 30) if n)
        ids, rendered = await asyncio.to_thread(
            tokenize, lm.tokenizer, prompt, lm.vocab_size, lm.family.reasoning, (context, lm.max_token_chars)
        )
        if not ids:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        param = "messages" if isinstance(prompt, ChatPrompt) else "prompt"
        if len(ids) >= context or (params.max_tokens and len(ids) + params.max_tokens > context):
            raise ContextLengthError(len(ids), params.max_tokens or 0, context, param)
        max_tokens = min(params.max_tokens or DEFAULT_MAX_TOKENS, context - len(ids))
        params = self._sampling(lm, params)
        # The grammar, parser and reasoning budget exactly as the engine makes them for a local model.
        constraint = request_constraint(lm.family, prompt, params, rendered)
        constraint = fit_forced_call(constraint, max_tokens, lambda t: len(lm.tokenizer.encode(t)))
        grammar = await Engine._grammar(lm, constraint, params)
        in_grammar = constraint is not None and constraint.spec.preamble is not None
        budget_tokens = None if in_grammar else params.max_reasoning_tokens
        budget = reasoning_budget_factory(lm, prompt, rendered, budget_tokens, params.strict_reasoning_budget)
        observer = getattr(getattr(self.engine, "config", None), "observer", None)  # the engine's metrics
        gen = Generation(len(ids), 1, model_id, observer)
        seq = Sequence(
            gen,
            0,
            ids,
            params,
            max_tokens,
            run.priority,
            make_parser=output_parser_factory(lm.family, prompt, rendered, constraint),
        )
        payload = {
            "tokens": ids,
            "max_tokens": max_tokens,
            "sampling": {k: getattr(params, k) for k in (*SAMPLING_FIELDS, "repetition_penalty")}
            | {"logit_bias": list(params.logit_bias.items())},
            "eos": [] if params.ignore_eos else sorted(lm.stop_token_ids),
            "budget": list(cast(partial[Any], budget).args) if budget is not None else None,
            "grammar": (
                {
                    "source": grammar.source,
                    "key": grammar.key,
                    "vocab_size": lm.vocab_size,
                    "eos": sorted(lm.stop_token_ids),
                }
                if grammar is not None
                else None
            ),
        }
        stream = _Stream(self, model_id, seq, lm)
        self._loop = asyncio.get_running_loop()
        heapq.heappush(self._waiting[model_id], _Turn(run.priority, next(self._order), stream, payload))
        self._dispatch(model_id)
        return gen

    def _sampling(self, lm: LoadedModel, params: SamplingParams) -> SamplingParams:
        """What the request left out, from the same layers as a local model's (engine/generation_defaults.py)."""
        if isinstance(self.engine, Engine):
            params = self.engine.sampling_for(lm.info, params)
        else:
            params = fill(params, lm.info.generation_defaults, SamplingDefaults())
        if params.top_k is not None and params.top_k >= lm.vocab_size:  # keeping every token is no filter at all
            params = replace(params, top_k=0)
        bad = [t for t in params.logit_bias if t < 0 or t >= lm.vocab_size]
        if bad:
            raise InvalidRequestError(f"logit_bias has token ids out of range: {bad[:5]}", param="logit_bias")
        return params

    def _dispatch(self, model_id: str) -> None:
        """On the loop: when the ranks are free, send them the next request that is still wanted."""
        waiting = self._waiting[model_id]
        while self._running[model_id] is None and waiting:
            turn = heapq.heappop(waiting)
            stream = turn.stream
            if stream.gen.cancelled():  # left, or timed out, while it waited
                stream.seq.start(stream.lm.tokenizer)
                stream.finish("aborted" if stream.gen.aborted else "cancelled")
                continue
            group = self.groups.get(model_id)
            if group is None or not group.available:
                stream.gen.deliver([], group.unavailable() if group is not None else ModelUnavailableError(model_id))
                continue
            stream.seq.start(stream.lm.tokenizer)
            stream.gen.admit()
            self._running[model_id], stream.group = stream, group
            try:
                stream.rid = group.submit(turn.payload, stream.on_message, stream.on_error)
            except ModelUnavailableError as exc:
                self._running[model_id] = None
                stream.gen.deliver([], exc)

    def _ended(self, model_id: str, stream: _Stream) -> None:
        """From the reader thread: the ranks are free again."""

        assert self._loop is not None

        def free() -> None:
            if self._running[model_id] is stream:
                self._running[model_id] = None
            self._dispatch(model_id)

        with contextlib.suppress(RuntimeError):  # the loop is gone at shutdown
            self._loop.call_soon_threadsafe(free)


def _describe(info: ModelInfo) -> LoadedModel:
    """The engine's description of the model (family, stop tokens, vocabulary) from its folder, without weights."""
    path = Path(info.path)
    eos = json.loads((path / "config.json").read_text()).get("eos_token_id")
    tokenizer: TokenizerWrapper = load_tokenizer(path, eos_token_ids=eos)
    return describe_loaded(info, nn.Module(), tokenizer, 0, time.perf_counter())


class _Stream:
    """Rank 0's tokens for one request as engine chunks, through the engine's Sequence (stop strings, output
    parser, finish reasons), on the supervisor's reader thread. A cancelled generation, or a stop string, tells
    rank 0, which stops every rank at the next step."""

    def __init__(self, models: DistributedModels, model_id: str, seq: Sequence, lm: LoadedModel) -> None:
        self.models, self.model_id, self.seq, self.lm, self.gen = models, model_id, seq, lm, seq.gen
        self.rid = ""
        self.group: RankGroup | None = None  # the ranks it runs on, once dispatched
        self.stop_ids = set() if seq.params.ignore_eos else set(lm.stop_token_ids)

    def on_message(self, msg: dict[str, Any]) -> None:
        stats = self.models.stats[self.model_id]
        if "done" in msg:
            reason = cast(FinishReason, msg["done"])
            if reason == "cancelled":
                stats["cancelled"] += 1
                reason = "aborted" if self.gen.aborted else "cancelled"
            else:
                stats["served"] += 1
            if not self.seq.finished:
                self.finish(reason)
            self.models._ended(self.model_id, self)
            return
        if self.seq.finished:
            return
        if self.gen.cancelled():
            if self.group is not None:
                self.group.cancel(self.rid)
            return
        token = int(msg["token"])
        chunks = self.seq.on_token(token, _NO_LOGPROBS, token in self.stop_ids)
        if self.seq.finished:
            self._count()
            if token not in self.stop_ids and self.group is not None:  # a stop string: rank 0 goes on otherwise
                self.group.cancel(self.rid)
        self.gen.deliver(chunks)

    def finish(self, reason: FinishReason) -> None:
        chunks = self.seq.finish(reason)
        self._count()
        self.gen.deliver(chunks)

    def _count(self) -> None:
        self.gen.usage.completion_tokens += self.seq.produced
        self.models.tokens[self.model_id] += self.seq.produced

    def on_error(self, error: BaseException) -> None:
        self.models.stats[self.model_id]["failed"] += 1
        self.models._ended(self.model_id, self)
        self.gen.deliver([], error)
