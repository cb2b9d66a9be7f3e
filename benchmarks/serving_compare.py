"""Our server against mlx-lm's server and vllm-mlx on the same model, in one run, plus in-process baselines.

    python benchmarks/serving_compare.py MODEL_DIR [--concurrency 1,2,4,8,16,32] [--peers mlx-lm,vllm-mlx]

Peers run from their own virtualenvs under .cache/bench-venvs (created on first use), never the project's.
Prints a table and the goal ratios, writes benchmarks/results/<model>/compare.json and compare.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import httpx
from peers import ROOT, blas_env, ours_command, peer_command, running, served_model_id
from rich.console import Console

from mlx_manager.bench.client import Target, one_request
from mlx_manager.bench.report import LevelStats, table, write_json, write_plot
from mlx_manager.bench.sweep import run_sweep
from mlx_manager.bench.workloads import PromptMaker
from mlx_manager.testing.server import free_port, server_env

console = Console(width=170)


def prefix_cache_ttft(target: Target, maker: PromptMaker, prefix_tokens: int, rounds: int = 3) -> dict[str, float]:
    """TTFT of a fresh long prompt (cold) and of the same prefix with a new suffix (hit), sequentially."""
    import asyncio

    async def measure() -> tuple[list[float], list[float]]:
        cold, hit = [], []
        async with httpx.AsyncClient(timeout=target.timeout) as client:
            for _ in range(rounds):
                prefix = maker.text(prefix_tokens)
                first = await one_request(client, target, f"{prefix} {maker.text(16)}", 8)
                second = await one_request(client, target, f"{prefix} {maker.text(16)}", 8)
                cold.append(first.ttft)
                hit.append(second.ttft)
        return cold, hit

    cold, hit = asyncio.run(measure())
    c, h = sorted(cold)[len(cold) // 2], sorted(hit)[len(hit) // 2]
    return {"cold_ttft_ms": c * 1e3, "hit_ttft_ms": h * 1e3, "speedup": c / h if h else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--prefix-tokens", type=int, default=2000)
    parser.add_argument("--peers", default="mlx-lm,vllm-mlx")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = args.model.resolve()
    levels = [int(c) for c in args.concurrency.split(",")]
    out = args.out or ROOT / "benchmarks" / "results" / model.name
    maker = PromptMaker(model)
    workload = maker.random(max(levels) * 2, args.prompt_tokens, args.output_tokens)

    console.print(f"[bold]in-process baselines[/bold] ({model.name})")
    baseline = json.loads(
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "inprocess.py"),
                str(model),
                "--prompt-tokens",
                str(args.prompt_tokens),
                "--output-tokens",
                str(args.output_tokens),
            ],
            env=blas_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    console.print(baseline)

    rows: list[LevelStats] = []
    extra: dict[str, object] = {"baseline": baseline}
    home = ROOT / ".cache" / "bench-home"
    port = free_port()
    with running(ours_command(model, port), port, out / "mlx-manager.log", server_env(home, blas_env())) as base:
        target = Target(base, model.name, ignore_eos=True)
        rows += run_sweep(target, "mlx-manager", [workload], levels, args.requests)
        extra["prefix_cache"] = prefix_cache_ttft(target, maker, args.prefix_tokens)

    for peer in [p for p in args.peers.split(",") if p]:
        port = free_port()
        try:
            cmd = peer_command(peer, model, port)
            with running(cmd, port, out / f"{peer}.log", blas_env()) as base:
                target = Target(base, served_model_id(base, str(model)))
                rows += run_sweep(target, peer, [workload], levels, args.requests)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            console.print(f"[yellow]{peer} unavailable:[/yellow] {str(exc)[:500]}")
            extra[f"{peer}_error"] = str(exc)[:2000]

    console.print(table(rows, f"{model.name}: prompt {args.prompt_tokens} tok, output {args.output_tokens} tok"))
    goals = ratios(rows, baseline, extra)
    for line in goals:
        console.print(line)
    extra["goals"] = goals
    write_json(rows, out / "compare.json", {"model": str(model), **vars(args), **extra, "model_path": str(model)})
    write_plot(rows, out / "compare.png")
    console.print(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")


def ratios(rows: list[LevelStats], baseline: dict[str, float], extra: dict[str, object]) -> list[str]:
    ours = {r.concurrency: r for r in rows if r.label == "mlx-manager"}
    lines = []
    if 1 in ours:
        single = ours[1].decode_tok_s / baseline["single_stream_tok_s"]
        lines.append(f"single stream HTTP decode / in-process stream_generate: {single:.2f} (goal >= 0.95)")
    batch_key = f"batch{baseline.get('batch', 16)}_tok_s"
    if 16 in ours and batch_key in baseline:
        ratio = ours[16].output_tok_s / baseline[batch_key]
        lines.append(f"16 concurrent / in-process BatchGenerator@16: {ratio:.2f} (goal >= 0.90)")
    if 16 in ours and 1 in ours:
        lines.append(
            f"16 concurrent / our single stream: {ours[16].output_tok_s / ours[1].output_tok_s:.2f}x (goal >= 4)"
        )
    for peer in sorted({r.label for r in rows} - {"mlx-manager"}):
        theirs = {r.concurrency: r for r in rows if r.label == peer}
        for c in sorted(set(ours) & set(theirs)):
            tok = ours[c].output_tok_s / max(theirs[c].output_tok_s, 1e-9)
            ttft = theirs[c].ttft_p50_ms / max(ours[c].ttft_p50_ms, 1e-9)
            lines.append(f"vs {peer} @ {c}: output tok/s x{tok:.2f}, TTFT p50 {ttft:.2f}x lower (goals >= 1)")
    cache = extra.get("prefix_cache")
    if isinstance(cache, dict):
        lines.append(
            f"shared prefix TTFT cold {cache['cold_ttft_ms']:.0f} ms -> hit {cache['hit_ttft_ms']:.0f} ms:"
            f" {cache['speedup']:.1f}x (goal >= 5)"
        )
    return lines


if __name__ == "__main__":
    main()
