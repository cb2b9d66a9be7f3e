"""One rank of a distributed model (a process the supervisor starts): joins the `mx.distributed` group, loads its
shard (tensor: mlx-lm's model.shard(); pipeline: only its own layers), then runs requests in lockstep with the
other ranks. Rank 0 also listens on a local socket for the supervisor, and decides each token and whether to go on.

    MLX_RANK=r MLX_HOSTFILE=hosts.json python -m mlx_manager.engine.distributed.worker MODEL STRATEGY PORT
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.cache import KVCache, make_prompt_cache
from mlx_lm.utils import load_model, load_tokenizer

from mlx_manager.engine import cpu_kernels
from mlx_manager.engine.reasoning_budget import ReasoningBudget
from mlx_manager.engine.sampling import LogitsProcessor, Sampler, make_logits_processors, make_sampler
from mlx_manager.engine.types import SamplingParams

Group = mx.distributed.Group


def _layer_range(n_layers: int, rank: int, size: int) -> tuple[int, int]:
    """Contiguous layers per rank, the first ranks taking one more when they do not divide evenly."""
    per, extra = divmod(n_layers, size)
    start = rank * per + min(rank, extra)
    return start, start + per + (1 if rank < extra else 0)


class Shard:
    """The model as this rank holds it, with one forward pass that all ranks run together."""

    def __init__(self, path: str, strategy: str, group: Group) -> None:
        self.group, self.strategy = group, strategy
        self.model, _ = load_model(Path(path), lazy=True, strict=False)
        inner = getattr(self.model, "model", None)
        if strategy == "tensor":
            if not hasattr(self.model, "shard"):
                raise ValueError("mlx-lm cannot shard this architecture by tensor; use strategy 'pipeline'")
            self.model.shard(group)
            self.bounds = (0, len(self.model.layers))
        else:
            if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "embed_tokens"):
                raise ValueError("pipeline parallel needs a decoder with model.embed_tokens and model.layers")
            self.bounds = _layer_range(len(inner.layers), group.rank(), group.size())
            lo, hi = self.bounds
            # Other ranks' layers are never read, so their lazy weights are never loaded.
            inner.layers = [layer if lo <= i < hi else None for i, layer in enumerate(inner.layers)]
        mx.eval(self.model.parameters())
        flat = cast(list[tuple[str, mx.array]], tree_flatten(self.model.parameters()))
        self.weight_bytes = sum(int(v.nbytes) for _, v in flat)

    def forward(self, tokens: mx.array, cache: list[Any]) -> mx.array:
        if self.strategy == "tensor":
            return self.model(tokens, cache=cache)[:, -1, :]
        inner, group = self.model.model, self.group
        rank, size = group.rank(), group.size()
        lo, hi = self.bounds
        h = inner.embed_tokens(tokens)
        mask = create_attention_mask(h, cache[lo])
        if rank > 0:
            h = mx.distributed.recv_like(h, rank - 1, group=group)
        for i in range(lo, hi):
            h = inner.layers[i](h, mask, cache=cache[i])
        if rank < size - 1:
            mx.eval(mx.distributed.send(h, rank + 1, group=group))
            h = mx.zeros_like(h)
        h = mx.distributed.all_sum(h[:, -1:, :], group=group)  # the last rank's output, to every rank
        h = inner.norm(h)
        if getattr(self.model, "args", None) is not None and getattr(self.model.args, "tie_word_embeddings", False):
            logits = inner.embed_tokens.as_linear(h)
        else:
            logits = self.model.lm_head(h)
        return logits[:, -1, :]


def _broadcast(values: list[int], group: Group, rank: int) -> list[int]:
    """Rank 0's integers to every rank (the others pass zeros of the same length)."""
    arr = mx.array(values if rank == 0 else [0] * len(values), dtype=mx.int32)
    out = mx.distributed.all_sum(arr, group=group, stream=mx.cpu)
    return [int(x) for x in cast(list[int], out.tolist())]


def _broadcast_json(obj: Any, group: Group, rank: int) -> Any:
    data = json.dumps(obj).encode() if rank == 0 else b""
    (n,) = _broadcast([len(data)], group, rank)
    body = _broadcast(list(data), group, rank) if rank == 0 else _broadcast([0] * n, group, rank)
    return json.loads(bytes(body).decode())


class Control:
    """Rank 0's side of the supervisor's socket: requests in, tokens out, cancellations noted between steps."""

    def __init__(self, port: int) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.cancelled: set[str] = set()
        self.conn: socket.socket | None = None
        self.lock = threading.Lock()

    def accept(self) -> None:
        self.conn, _ = self.server.accept()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.conn is not None
        for line in self.conn.makefile("r", encoding="utf-8"):
            msg = json.loads(line)
            if "cancel" in msg:
                self.cancelled.add(msg["cancel"])
            else:
                self.requests.put(msg)
        self.requests.put(None)  # the supervisor went away: stop every rank

    def send(self, msg: dict[str, Any]) -> None:
        assert self.conn is not None
        with self.lock:
            self.conn.sendall((json.dumps(msg) + "\n").encode())


def _sampling(req: dict[str, Any], path: str) -> tuple[Sampler, list[LogitsProcessor]]:
    """Rank 0's sampler and logits processors for a request: the local engine's own (engine/sampling.py), then
    the reasoning budget and the grammar the server prepared, so a distributed model samples as a local one."""
    values = dict(req["sampling"])
    values["logit_bias"] = {int(k): float(v) for k, v in values.get("logit_bias", [])}
    params = SamplingParams(**values)
    processors = make_logits_processors(params)
    if req.get("budget"):
        processors.append(ReasoningBudget(*req["budget"]))
    if req.get("grammar"):
        processors.append(_grammar_processor(path, req["grammar"]))
    return make_sampler(params), processors


_factories: dict[tuple[int, tuple[int, ...]], Any] = {}


def _grammar_processor(path: str, grammar: dict[str, Any]) -> LogitsProcessor:
    """The server compiled (and validated) the grammar; rank 0 only wraps its tokenizer once and follows it."""
    from mlx_manager.engine.constraints import ConstraintFactory  # llguidance: only where a grammar is asked for

    key = (int(grammar["vocab_size"]), tuple(int(t) for t in grammar["eos"]))
    factory = _factories.get(key)
    if factory is None:
        eos = json.loads((Path(path) / "config.json").read_text()).get("eos_token_id")
        tokenizer = load_tokenizer(Path(path), eos_token_ids=eos)
        factory = _factories[key] = ConstraintFactory(tokenizer, key[0], key[1])
    processor: LogitsProcessor = factory.processor_from_source(grammar["source"], grammar.get("key", ""))
    return processor


def _generate(shard: Shard, req: dict[str, Any], rank: int, control: Control | None, path: str) -> None:
    group = shard.group
    # A pipeline rank's model lacks the other ranks' layers, so it cannot make its cache itself.
    cache = make_prompt_cache(shard.model) if shard.strategy == "tensor" else [KVCache() for _ in shard.model.layers]
    sampler, processors = _sampling(req, path) if rank == 0 else (None, [])
    eos, max_tokens = set(req.get("eos", [])), int(req["max_tokens"])
    context = list(req["tokens"])  # what the processors see: the prompt, then each token sampled
    logits = shard.forward(mx.array(req["tokens"])[None], cache)
    for step in range(max_tokens):
        mx.eval(logits)  # every rank runs the forward's collectives before the next broadcast, in the same order
        token, go, reason = 0, 0, ""
        if rank == 0:
            assert sampler is not None
            if processors:
                tokens = mx.array(context)
                for processor in processors:
                    logits = processor(tokens, logits)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            token = int(cast(int, sampler(logprobs).item()))
            context.append(token)
            cancelled = control is not None and req["id"] in control.cancelled
            last = step + 1 >= max_tokens
            reason = "cancelled" if cancelled else "stop" if token in eos else "length" if last else ""
            go = 0 if reason else 1
        token, go = _broadcast([token, go], group, rank)  # every rank steps, or stops, together
        if rank == 0 and control is not None:
            if reason != "cancelled":
                control.send({"id": req["id"], "token": token})
            if reason:
                control.send({"id": req["id"], "done": reason})
        if not go:
            return
        logits = shard.forward(mx.array([[token]]), cache)


def _heartbeat(where: str) -> None:
    """Touch the file `where` twice a second, so the supervisor can tell a stopped rank from one waiting on the
    others; "-" (a rank over ssh): write a byte to stdout instead, and exit once ssh is gone."""
    path = Path(where)
    if where != "-":
        path.touch()
    while True:
        if where != "-":
            os.utime(path)
        else:
            try:
                sys.stdout.buffer.write(b".")
                sys.stdout.buffer.flush()
            except OSError:
                os._exit(1)
        time.sleep(0.5)


class Wake:
    """Between requests the other ranks block on a socket from rank 0 instead of inside a collective, where the
    ring backend polls (about a third of a core per idle rank); rank 0 sends a byte before each request."""

    def __init__(self, address: str, rank: int, size: int) -> None:
        host, port = address.rsplit(":", 1)
        self.rank = rank
        self.peers: list[socket.socket] = []
        self.server = socket.create_server((host, int(port))) if rank == 0 else None
        self.address = (host, int(port))
        self.size = size
        self.conn: socket.socket | None = None

    def connect(self) -> None:
        """After loading: rank 0 takes one connection per other rank, the others connect."""
        if self.server is not None:
            self.peers = [self.server.accept()[0] for _ in range(self.size - 1)]
            return
        deadline = time.monotonic() + 60
        while True:
            try:
                self.conn = socket.create_connection(self.address, timeout=5)
                self.conn.settimeout(None)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def wait(self) -> bool:
        """Rank 0: wake the others; the others: block until woken (False: rank 0 is gone)."""
        if self.rank == 0:
            for peer in self.peers:
                peer.sendall(b"!")
            return True
        assert self.conn is not None
        return bool(self.conn.recv(1))


def main(argv: list[str]) -> int:
    beat = os.environ.get("MLX_MANAGER_HEARTBEAT")
    if beat:
        threading.Thread(target=_heartbeat, args=(beat,), daemon=True).start()
    hosts = os.environ.get("MLX_MANAGER_HOSTS")  # a rank over ssh gets the ring's hostfile as text
    if hosts:
        hostfile = Path(tempfile.mkdtemp(prefix="mlx-manager-rank-")) / "hosts.json"
        hostfile.write_text(hosts)
        os.environ["MLX_HOSTFILE"] = str(hostfile)
    path, strategy, port = argv[0], argv[1], int(argv[2])
    backend = os.environ.get("MLX_DISTRIBUTED_BACKEND", "ring")
    alone = not os.environ.get("MLX_HOSTFILE")  # one rank: no group to join
    group = mx.distributed.init() if alone else mx.distributed.init(strict=True, backend=backend)
    cpu_kernels.install(os.environ.get(cpu_kernels.KERNELS_VARIABLE, "numpy") == "numpy")
    rank, size = group.rank(), group.size()
    control = Control(port) if rank == 0 else None  # listen before loading: the supervisor connects early
    address = os.environ.get("MLX_MANAGER_WAKE")
    wake = Wake(address, rank, size) if address and size > 1 else None
    shard = Shard(path, strategy, group)
    per_rank = [0] * (2 * size)
    per_rank[2 * rank], per_rank[2 * rank + 1] = shard.weight_bytes, mx.get_active_memory()
    totals = mx.distributed.all_sum(mx.array(per_rank, dtype=mx.int64), group=group)
    sizes = [int(x) for x in cast(list[int], totals.tolist())]
    if wake is not None:
        wake.connect()
    if control is not None:
        control.accept()
        ranks = [{"rank": r, "weight_bytes": sizes[2 * r], "active_bytes": sizes[2 * r + 1]} for r in range(size)]
        control.send({"ready": True, "ranks": ranks, "bounds": list(shard.bounds)})
    while True:
        req = control.requests.get() if control is not None else None
        if wake is not None and not wake.wait():
            return 0
        req = _broadcast_json(req, group, rank)
        if req is None:
            return 0
        started = time.perf_counter()
        _generate(shard, req, rank, control, path)
        if control is not None:
            control.cancelled.discard(req["id"])
            print(f"request {req['id']} took {time.perf_counter() - started:.3f}s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
