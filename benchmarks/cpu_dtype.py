"""cpu_dtype keep vs float32 on MLX's CPU backend, driven in-process through the Engine (pool, scheduler, batching).

For each model and mode, repeated: load, TTFT and decode tok/s of one stream, then output tok/s of 8 concurrent
streams (prefill included, as a server sees it). Modes alternate within each repeat so both see the same machine.
Prints a table (median and min-max over the repeats) and writes JSON.

    python benchmarks/cpu_dtype.py            # re-executes itself with the system OpenBLAS preloaded
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlx.core as mx

from mlx_manager import blas
from mlx_manager.engine.cpu_dtype import CpuDtype, on_cpu
from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.scheduler import SchedulerConfig
from mlx_manager.engine.types import SamplingParams, TextPrompt
from mlx_manager.manager.embedded import DEFAULT_MODEL_NAME, ensure_default_model
from mlx_manager.testing.tiny_models import write_tiny_model

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / ".cache" / "test-assets"
MODES: tuple[CpuDtype, ...] = ("keep", "float32")


@dataclass
class Run:
    model: str
    mode: str
    repeat: int
    load_s: float
    memory_mb: float
    dtype: str
    ttft_s: float
    decode_tok_s: float
    concurrent_tok_s: float


def _prompts(rng: random.Random, count: int, length: int, token_range: range) -> list[TextPrompt]:
    # Random token ids, a fresh set per measurement: no prefix is shared, nothing is reused.
    return [TextPrompt(token_ids=tuple(rng.choice(token_range) for _ in range(length))) for _ in range(count)]


async def _stream(engine: Engine, model: str, prompt: TextPrompt, params: SamplingParams) -> tuple[float, float, int]:
    """Seconds to the first token, seconds from it to the last, completion tokens."""
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async for chunk in await engine.generate(model, prompt, params):
        if chunk.token_ids:
            last = time.perf_counter()
            first = first or last
            tokens += len(chunk.token_ids)
    return first - start, last - first, tokens


async def _measure(model: str, folder: Path, mode: CpuDtype, repeat: int, args: argparse.Namespace) -> Run:
    pool = PoolConfig(
        max_models=1,
        memory_budget_bytes=8 << 30,
        cpu_dtype=mode,
        scheduler=SchedulerConfig(max_num_seqs=8, prefill_batch_size=8, prefix_cache_bytes=0),
    )
    engine = Engine(EngineConfig(model_dirs=[folder.parent], hf_cache=None, pool=pool))
    await engine.start()
    try:
        start = time.perf_counter()
        entry = await engine.load(model)
        load_s = time.perf_counter() - start
        loaded = entry.loaded
        assert isinstance(loaded, LoadedModel)
        vocab = range(args.token_low, min(args.token_high, loaded.vocab_size))
        rng = random.Random(f"{model}-{repeat}")
        params = SamplingParams(temperature=0, max_tokens=args.output_tokens, ignore_eos=True)
        await _stream(engine, model, _prompts(rng, 1, 8, vocab)[0], SamplingParams(temperature=0, max_tokens=4))
        ttft, decode_s, tokens = await _stream(engine, model, _prompts(rng, 1, args.prompt_tokens, vocab)[0], params)
        prompts = _prompts(rng, args.concurrency, args.concurrent_prompt_tokens, vocab)
        start = time.perf_counter()
        results = await asyncio.gather(*(_stream(engine, model, p, params) for p in prompts))
        wall = time.perf_counter() - start
        return Run(
            model=model,
            mode=mode,
            repeat=repeat,
            load_s=load_s,
            memory_mb=loaded.memory_bytes / 1e6,
            dtype=f"{loaded.quantization_bits}-bit" if loaded.quantization_bits else loaded.dtype,
            ttft_s=ttft,
            decode_tok_s=(tokens - 1) / decode_s,
            concurrent_tok_s=sum(n for _, _, n in results) / wall,
        )
    finally:
        await engine.stop()
        mx.clear_cache()


def _models(names: list[str]) -> dict[str, Path]:
    found = {}
    if "smollm2" in names:
        found[DEFAULT_MODEL_NAME] = ensure_default_model(REPO / ".cache" / "bench-models" / "cpu-dtype", ASSETS)
    if "tiny" in names:
        found["tiny-llama-4bit"] = write_tiny_model(ASSETS / "tiny-models", "llama-4bit")
    return found


def _spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summarize(runs: list[Run], concurrency: int) -> tuple[str, dict[str, Any]]:
    lines = [
        "| model | cpu_dtype | weights | memory MB | load s | TTFT s | decode tok/s"
        f" | {concurrency} concurrent out tok/s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary: dict[str, Any] = {}
    for model in dict.fromkeys(r.model for r in runs):
        per_mode = {}
        for mode in MODES:
            rs = [r for r in runs if r.model == model and r.mode == mode]
            per_mode[mode] = {
                k: statistics.median(getattr(r, k) for r in rs)
                for k in ("load_s", "memory_mb", "ttft_s", "decode_tok_s", "concurrent_tok_s")
            }
            lines.append(
                f"| {model} | {mode} | {rs[0].dtype} | {rs[0].memory_mb:.1f} | {_spread([r.load_s for r in rs], 2)}"
                f" | {_spread([r.ttft_s for r in rs], 3)} | {_spread([r.decode_tok_s for r in rs])}"
                f" | {_spread([r.concurrent_tok_s for r in rs])} |"
            )
        keep, f32 = per_mode["keep"], per_mode["float32"]
        per_mode["float32_vs_keep"] = {
            "ttft_lower_x": keep["ttft_s"] / f32["ttft_s"],
            "decode_faster_x": f32["decode_tok_s"] / keep["decode_tok_s"],
            "concurrent_faster_x": f32["concurrent_tok_s"] / keep["concurrent_tok_s"],
        }
        summary[model] = per_mode
    lines.append("")
    for model, per_mode in summary.items():
        x = per_mode["float32_vs_keep"]
        lines.append(
            f"{model}: float32 vs keep (medians): TTFT {x['ttft_lower_x']:.1f}x lower, decode"
            f" {x['decode_faster_x']:.1f}x faster, {concurrency} concurrent {x['concurrent_faster_x']:.1f}x faster"
        )
    return "\n".join(lines), summary


def _with_openblas() -> None:
    """Re-run this script with the system OpenBLAS preloaded (Linux), as the server runs."""
    lib = blas.find_openblas()
    if sys.platform.startswith("linux") and lib and not blas.openblas_active():
        env = {**os.environ, "LD_PRELOAD": ":".join(p for p in (lib, os.environ.get("LD_PRELOAD", "")) if p)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models", default="smollm2,tiny", help="Comma-separated: smollm2, tiny.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=128, help="Prompt length of the single stream.")
    parser.add_argument("--concurrent-prompt-tokens", type=int, default=32)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--token-low", type=int, default=256, help="Prompt token ids are drawn from [low, high).")
    parser.add_argument("--token-high", type=int, default=900)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "cpu-dtype.json")
    args = parser.parse_args()
    _with_openblas()
    if not on_cpu():
        raise SystemExit("MLX runs on a GPU here: cpu_dtype changes nothing, there is nothing to compare.")
    models = _models(args.models.split(","))
    runs: list[Run] = []
    for repeat in range(args.repeats):
        for model, folder in models.items():
            # Alternate which mode goes first, so a slow patch of the machine does not favour one.
            for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                run = asyncio.run(_measure(model, folder, mode, repeat, args))
                runs.append(run)
                print(
                    f"[{repeat + 1}/{args.repeats}] {model} {mode}: TTFT {run.ttft_s:.3f}s, decode"
                    f" {run.decode_tok_s:.1f} tok/s, {args.concurrency} concurrent {run.concurrent_tok_s:.1f} tok/s",
                    flush=True,
                )
    table, summary = summarize(runs, args.concurrency)
    print()
    print(table)
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.system()}, {blas.describe()}",
                "mlx": version("mlx"),
                "settings": {k: v for k, v in vars(args).items() if k != "out"},
                "summary": summary,
                "runs": [asdict(r) for r in runs],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
