"""A distributed model (engine/distributed) at 1, 2 and 4 ranks on this machine's loopback: decode tok/s, and the
memory each rank holds (the weights of its shard as rank 0 reports them, MLX's active memory, the process RSS).

The model is the shaped Qwen2.5-0.5B transformer (testing/tiny_models.py --shape qwen2.5-0.5b, float32, ~1.44 GB):
24 layers, 14 query heads, 2 KV heads. mlx-lm's tensor sharding divides the KV heads, so tensor parallel runs at 2
ranks at most; pipeline parallel splits the 24 layers and runs at 2 and 4. Each setting starts its ranks, decodes
one greedy warm-up, then `--tokens` tokens timed from the first to the last token, and checks the tokens equal the
1-rank run's.

    python benchmarks/distributed.py [--tokens 32] [--out benchmarks/distributed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from mlx_manager.engine.distributed.supervisor import DistributedSpec, Host, RankGroup
from mlx_manager.testing.tiny_models import SHAPES, write_shaped_model

SETTINGS = [("tensor", 1), ("tensor", 2), ("pipeline", 2), ("pipeline", 4)]
PROMPT = list(range(10, 74))  # 64 prompt tokens


def run_once(group: RankGroup, tokens: int) -> tuple[list[int], float, float]:
    """Token ids, seconds to the first token, seconds from the first token to the last."""
    done, out, times = threading.Event(), [], []

    def on_message(msg: dict[str, Any]) -> None:
        if "token" in msg:
            out.append(int(msg["token"]))
            times.append(time.perf_counter())
        if "done" in msg:
            done.set()

    def on_error(exc: BaseException) -> None:
        raise SystemExit(f"failed: {exc}")

    start = time.perf_counter()
    group.submit({"tokens": PROMPT, "max_tokens": tokens, "temperature": 0.0, "eos": []}, on_message, on_error)
    if not done.wait(600):
        raise SystemExit("timed out")
    return out, times[0] - start, times[-1] - times[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--models", type=Path, default=Path(".cache/bench-models"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/distributed.json"))
    args = parser.parse_args()
    preset = SHAPES["qwen2.5-0.5b"]
    dims = {k: v for k, v in preset._asdict().items() if k != "tag"}
    path = write_shaped_model(args.models, "llama", f"shaped-llama-{preset.tag}", **dims)
    size = sum(p.stat().st_size for p in Path(path).glob("*.safetensors"))
    rows: list[dict[str, Any]] = []
    reference: list[int] | None = None
    for strategy, n in SETTINGS:
        spec = DistributedSpec(f"bench-{strategy}-{n}", str(path), (Host("localhost", ("127.0.0.1",)),) * n, strategy)
        group = RankGroup(spec, start_timeout=600)
        started = time.perf_counter()
        group.start()
        load_s = time.perf_counter() - started
        try:
            run_once(group, 4)  # warm-up
            ids, ttft, decode = run_once(group, args.tokens)
            rss = [psutil.Process(p.pid).memory_info().rss for p in group.procs]
        finally:
            group.stop()
        reference = reference or ids
        row = {
            "strategy": strategy,
            "ranks": n,
            "load_seconds": round(load_s, 1),
            "ttft_seconds": round(ttft, 3),
            "decode_tok_s": round((len(ids) - 1) / decode, 2),
            "weight_bytes_per_rank": [r["weight_bytes"] for r in group.ranks],
            "mlx_active_bytes_per_rank": [r["active_bytes"] for r in group.ranks],
            "rss_bytes_per_rank": rss,
            "same_tokens_as_1_rank": ids == reference,
        }
        rows.append(row)
        gb = ", ".join(f"{b / 1e9:.2f}" for b in row["weight_bytes_per_rank"])
        rss_gb = ", ".join(f"{b / 1e9:.2f}" for b in rss)
        print(
            f"{strategy:>8} x{n}: {row['decode_tok_s']:6.2f} tok/s, TTFT {ttft:.2f}s, weights/rank [{gb}] GB,"
            f" RSS/rank [{rss_gb}] GB, same tokens: {row['same_tokens_as_1_rank']}",
            flush=True,
        )
    result = {
        "model": str(path),
        "checkpoint_bytes": size,
        "tokens": args.tokens,
        "prompt_tokens": len(PROMPT),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared, noisy)",
        "mlx": version("mlx"),
        "mlx_lm": version("mlx-lm"),
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["same_tokens_as_1_rank"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
