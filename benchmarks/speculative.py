"""Speculative decoding (engine/speculative), single stream: speculation off vs prompt lookup vs draft model.

Two tasks on SmolLM2-135M-Instruct imported as float32 (from the test-asset GGUF, offline), greedy:
- copy-heavy: rewrite a given ~1,000-token code file with one small change (the reply copies its context);
- free chat: a question whose answer does not copy the prompt.
Each configuration runs in the in-process engine (the scheduler the server uses), one request at a time, after one
warm-up request; decode tok/s is output tokens over the time from the first output token to the last. Greedy
output must be the same in every configuration (checked, printed). There is no smaller real model with SmolLM2's
tokenizer offline, so "draft" uses the GGUF's own Q4_1 weights (SmolLM2 imported quantized: the same size class,
not a smaller model) as the draft model: it shows the draft-model path works end to end, not what a real small
draft model would gain.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 .venv/bin/python benchmarks/speculative.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import mlx.core as mx

from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.scheduler import SchedulerConfig
from mlx_manager.engine.speculative import SpeculativeConfig
from mlx_manager.engine.types import ChatPrompt, SamplingParams

REPO = Path(__file__).resolve().parents[1]
GGUF = REPO / ".cache" / "test-assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CODE_FILE = REPO / "src" / "mlx_manager" / "engine" / "step_budget.py"

COPY_TASK = (
    "Here is a Python file:\n\n```python\n{code}```\n\n"
    "Rewrite the whole file with one change: rename the class `StepBudget` to `PrefillBudget`. "
    "Output the complete file in a code block."
)
CHAT_TASK = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def import_models(models_dir: Path) -> tuple[Path, Path]:
    from mlx_manager.manager.gguf_import import import_gguf

    f32 = models_dir / "SmolLM2-135M-Instruct-f32"
    if not (f32 / "config.json").exists():
        import_gguf(GGUF, models_dir, f32.name, dtype="float32")
    q4 = models_dir / "SmolLM2-135M-Instruct-q4"
    if not (q4 / "config.json").exists():
        import_gguf(GGUF, models_dir, q4.name)
    return f32, q4


async def run_one(engine: Engine, model: str, text: str, tokens: int) -> dict[str, Any]:
    prompt = ChatPrompt(messages=[{"role": "user", "content": text}])
    start = time.perf_counter()
    gen = await engine.generate(model, prompt, SamplingParams(temperature=0, max_tokens=tokens))
    ids: list[int] = []
    first = last = start
    async for chunk in gen:
        if chunk.token_ids and not ids:
            first = time.perf_counter()
        ids += chunk.token_ids
        last = time.perf_counter()
    decode = max(last - first, 1e-9)
    return {"ids": ids, "tokens": len(ids), "ttft_s": first - start, "decode_tok_s": (len(ids) - 1) / decode}


def bench(
    models_dir: Path, model: str, configs: dict[str, SpeculativeConfig], tasks: dict[str, tuple[str, int]], runs: int
) -> dict[str, dict[str, Any]]:
    """One engine per configuration, all loaded; each run of a task goes through every configuration in turn, so
    they share the machine's load (it is shared and noisy). Medians over `runs`."""

    def engine_for(spec: SpeculativeConfig) -> Engine:
        sched = SchedulerConfig(speculative=spec)
        pool = PoolConfig(max_models=1, memory_budget_bytes=1 << 33, scheduler=sched)
        return Engine(EngineConfig(model_dirs=[models_dir], hf_cache=None, pool=pool))

    async def main() -> dict[str, dict[str, Any]]:
        engines = {name: engine_for(spec) for name, spec in configs.items()}
        for engine in engines.values():
            await engine.start()
            await run_one(engine, model, "Hello!", 8)  # load and warm up
        try:
            out: dict[str, dict[str, Any]] = {name: {} for name in configs}
            for task, (text, tokens) in tasks.items():
                runs_by: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
                counted: dict[str, tuple[int, int]] = {}
                for name, engine in engines.items():
                    stats = _scheduler(engine).spec.stats
                    counted[name] = (stats.drafted, stats.accepted)
                for _ in range(runs):
                    for name, engine in engines.items():
                        runs_by[name].append(await run_one(engine, model, text, tokens))
                for name, engine in engines.items():
                    stats = _scheduler(engine).spec.stats
                    results = runs_by[name]
                    out[name][task] = {
                        "decode_tok_s": statistics.median(r["decode_tok_s"] for r in results),
                        "runs_tok_s": [r["decode_tok_s"] for r in results],
                        "tokens": results[0]["tokens"],
                        "ttft_s": statistics.median(r["ttft_s"] for r in results),
                        "drafted": stats.drafted - counted[name][0],
                        "accepted": stats.accepted - counted[name][1],
                        "ids": results[0]["ids"],
                    }
                print(f"done: {task}", flush=True)
            return out
        finally:
            for engine in engines.values():
                await engine.stop()

    return asyncio.run(main())


def _scheduler(engine: Engine) -> Any:
    sched = engine.pool.entries()[0].scheduler
    assert sched is not None
    return sched


def bench_concurrent(models_dir: Path, model: str, n: int, tokens: int, repeats: int) -> dict[str, Any]:
    """`n` chat requests at once (each its own prompt, half copy-heavy), speculation off vs lookup (default
    settings: off above 4 decoding), the two engines taking turns: aggregate output tok/s over the wall time."""
    configs = {"off": SpeculativeConfig(mode="off"), "lookup": SpeculativeConfig(mode="lookup")}
    code = CODE_FILE.read_text()
    chats = [f"{CHAT_TASK} Call the keeper {NAMES[i % len(NAMES)]}." for i in range(n)]
    texts = [COPY_TASK.format(code=code[: 600 + 40 * i]) if i % 2 else chats[i] for i in range(n)]

    async def main() -> dict[str, Any]:
        engines = {}
        for name, spec in configs.items():
            pool = PoolConfig(max_models=1, memory_budget_bytes=1 << 33, scheduler=SchedulerConfig(speculative=spec))
            engines[name] = Engine(EngineConfig(model_dirs=[models_dir], hf_cache=None, pool=pool))
            await engines[name].start()
            await run_one(engines[name], model, "Hello!", 8)
        try:
            rates: dict[str, list[float]] = {name: [] for name in configs}
            for r in range(repeats):
                for name, engine in engines.items():
                    run_texts = [f"{t} (take {r})" for t in texts]  # new prompts each repeat: no cache answers
                    start = time.perf_counter()
                    results = await asyncio.gather(*(run_one(engine, model, t, tokens) for t in run_texts))
                    rates[name].append(sum(x["tokens"] for x in results) / (time.perf_counter() - start))
            out: dict[str, Any] = {"concurrent": n, "repeats": repeats}
            for name, engine in engines.items():
                out[name] = {"tok_s": statistics.median(rates[name]), "runs_tok_s": rates[name]}
                out[name]["spec_steps"] = _scheduler(engine).spec.stats.steps
            out["ratio"] = out["lookup"]["tok_s"] / out["off"]["tok_s"]
            return out
        finally:
            for engine in engines.values():
                await engine.stop()

    return asyncio.run(main())


NAMES = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / ".cache" / "bench-models" / "speculative")
    parser.add_argument("--tokens", type=int, default=1200)
    parser.add_argument("--chat-tokens", type=int, default=400)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--no-draft", action="store_true", help="skip the draft-model configuration")
    parser.add_argument("--concurrent", type=int, nargs="*", default=[], help="also N requests at once, off vs lookup")
    parser.add_argument("--concurrent-only", action="store_true", help="only the concurrent runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "speculative.json")
    args = parser.parse_args()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    f32, q4 = import_models(args.models_dir)
    # Only the target in the engine's model folder: the draft model is named by path.
    engine_dir = args.models_dir / "target"
    engine_dir.mkdir(exist_ok=True)
    if not (engine_dir / f32.name).exists():
        (engine_dir / f32.name).symlink_to(f32)
    concurrent = []
    for n in args.concurrent:
        row = bench_concurrent(engine_dir, f32.name, n, args.chat_tokens, args.runs)
        concurrent.append(row)
        print(
            f"{n} concurrent: off {row['off']['tok_s']:.1f} tok/s, lookup {row['lookup']['tok_s']:.1f} tok/s"
            f" ({row['ratio']:.2f}x, {row['lookup']['spec_steps']} speculative steps)",
            flush=True,
        )
    if args.concurrent_only:
        out = args.out.with_name(args.out.stem + "-concurrent.json")
        out.write_text(json.dumps({"concurrent": concurrent}, indent=2) + "\n")
        print(f"wrote {out}")
        return
    tasks = {"copy-heavy": COPY_TASK.format(code=CODE_FILE.read_text()), "free chat": CHAT_TASK}
    configs = {
        "off": SpeculativeConfig(mode="off"),
        "prompt lookup": SpeculativeConfig(mode="lookup"),
    }
    if not args.no_draft:
        configs["draft model (Q4_1 self-draft)"] = SpeculativeConfig(mode="draft", draft_model=q4, max_draft=4)
    limits = {"copy-heavy": args.tokens, "free chat": args.chat_tokens}
    results = bench(engine_dir, f32.name, configs, {t: (text, limits[t]) for t, text in tasks.items()}, args.runs)
    base = results["off"]
    print(f"\n{'configuration':<32}{'task':<12}{'tokens':>7}{'tok/s':>9}{'speedup':>9}{'accept':>9}{'same':>6}")
    rows = []
    for name, per_task in results.items():
        for task, r in per_task.items():
            speedup = r["decode_tok_s"] / base[task]["decode_tok_s"]
            rate = r["accepted"] / r["drafted"] if r["drafted"] else 0.0
            same = r["ids"] == base[task]["ids"]
            print(
                f"{name:<32}{task:<12}{r['tokens']:>7}{r['decode_tok_s']:>9.1f}{speedup:>8.2f}x{rate:>8.0%}{same!s:>6}"
            )
            rows.append(
                {"config": name, "task": task, "speedup": speedup, "acceptance_rate": rate, "same_as_off": same}
                | {k: v for k, v in r.items() if k != "ids"}
            )
    meta: dict[str, Any] = {"mlx": str(getattr(mx, "__version__", "?")), "machine": platform.machine()}
    meta["device"] = str(mx.default_device())
    meta["load_average"] = os.getloadavg()
    meta["runs"] = args.runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": rows, "concurrent": concurrent}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
