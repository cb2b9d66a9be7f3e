"""How much the disk tier's writer slows a prefill that runs beside it, at normal and at background priority.

In process on MLX's CPU backend with the CPU kernels: 440 new tokens prefilled over 3,000 cached, alone, then while
another thread writes the whole 3,440-token entry with kv_file.write in a loop (the worst case: an agent's turns
arriving while the previous turn's entry is written), at the writer's old priority and at BACKGROUND_NICE (what
the store's writer thread runs at now). Modes alternate within each repeat. Prints a table and writes JSON.

    python benchmarks/disk_writer.py .cache/bench-models/itl/SmolLM2-135M-Instruct-f32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODES = ("alone", "writer nice 0", "writer background")


def _with_openblas() -> None:
    from mlx_manager import blas

    lib = blas.find_openblas()
    if sys.platform.startswith("linux") and lib and not blas.openblas_active():
        env = {**os.environ, "LD_PRELOAD": ":".join(p for p in (lib, os.environ.get("LD_PRELOAD", "")) if p)}
        env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model", type=Path, help="A float32 model folder (e.g. SmolLM2-135M-Instruct-f32).")
    parser.add_argument("--cached", type=int, default=3000)
    parser.add_argument("--new", type=int, default=440)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4, help="Prefills per mode and repeat.")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "disk-writer.json")
    args = parser.parse_args()
    _with_openblas()

    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache

    from mlx_manager import blas
    from mlx_manager.engine import cpu_kernels, kv_file
    from mlx_manager.engine.disk_cache import BACKGROUND_NICE, lower_thread_priority

    model, tokenizer = load(str(args.model))[:2]
    cpu_kernels.install()
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 600)[: args.cached + args.new]

    def prefill(cache: list[Any], tokens: list[int]) -> None:
        for i in range(0, len(tokens), 512):
            model(mx.array([tokens[i : i + 512]]), cache=cache)
            mx.eval([c.state for c in cache])

    whole = make_prompt_cache(model)
    prefill(whole, ids)
    entry = kv_file.encode(tuple(ids), whole, True)
    folder = Path(tempfile.mkdtemp(prefix="disk-writer-", dir=Path.home()))
    rows: list[dict[str, Any]] = []

    for repeat in range(args.repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            stop, writes = threading.Event(), list[float]()

            def writer(background: bool, stop: threading.Event, writes: list[float]) -> None:
                if background:
                    lower_thread_priority()
                while not stop.is_set():
                    start = time.perf_counter()
                    kv_file.write(folder / "entry.safetensors", "bench", entry)
                    writes.append(time.perf_counter() - start)

            thread = None
            if mode != "alone":
                thread = threading.Thread(target=writer, args=(mode == "writer background", stop, writes))
                thread.start()
                time.sleep(0.2)
            for _ in range(args.trials):
                cache = make_prompt_cache(model)
                prefill(cache, ids[: args.cached])
                start = time.perf_counter()
                prefill(cache, ids[args.cached :])
                rows.append({"repeat": repeat, "mode": mode, "prefill_s": time.perf_counter() - start})
            stop.set()
            if thread is not None:
                thread.join()
            done = [r["prefill_s"] for r in rows if r["repeat"] == repeat and r["mode"] == mode]
            rate = f", writer {len(writes) / sum(writes):.2f} writes/s" if writes else ""
            print(f"[{repeat + 1}/{args.repeats}] {mode}: " + " ".join(f"{t:.2f}" for t in done) + rate, flush=True)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()

    summary = {}
    for mode in MODES:
        times = [r["prefill_s"] for r in rows if r["mode"] == mode]
        summary[mode] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
    alone = summary["alone"]["median_s"]
    print(f"\n{args.new} new over {args.cached} cached, entry {entry.nbytes / 1e6:.0f} MB, {len(rows)} prefills")
    print(f"{'mode':20s} {'median s':>9s} {'min-max s':>12s} {'vs alone':>9s}")
    for mode, s in summary.items():
        spread = f"{s['min_s']:.2f}-{s['max_s']:.2f}"
        print(f"{mode:20s} {s['median_s']:9.2f} {spread:>12s} {s['median_s'] / alone:8.2f}x")
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.system()}, {blas.describe()}",
                "mlx": version("mlx"),
                "model": args.model.name,
                "entry_bytes": entry.nbytes,
                "background_nice": BACKGROUND_NICE,
                "settings": {k: str(v) for k, v in vars(args).items() if k != "out"},
                "summary": summary,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
