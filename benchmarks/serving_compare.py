"""Our server against mlx-lm's server and vllm-mlx on the same model, in one run, plus in-process baselines.

    python benchmarks/serving_compare.py MODEL_DIR [--concurrency 1,2,4,8,16,32] [--peers mlx-lm,vllm-mlx]
        [--repeats 3] [--step-prefill-tokens 64,0]

Peers run from their own virtualenvs under .cache/bench-venvs (created on first use), never the project's.
Every level of every repeat gets prompts of its own (the same ones for every server), so no server answers from a
prefix cache filled by an earlier level. With --repeats the servers take turns, each restarted, and the summary
gives medians with their range. --step-prefill-tokens runs our server once per value of that setting.
Prints a table and the goal ratios, writes benchmarks/results/<model>/compare.json and compare.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from peers import ROOT, blas_env, ours_command, peer_command, running, served_model_id
from rich.console import Console
from rich.table import Table

from mlx_manager.bench.client import Target, one_request, run_level
from mlx_manager.bench.report import LevelStats, summarize, table, write_json, write_plot
from mlx_manager.bench.sweep import requests_for
from mlx_manager.bench.workloads import PromptMaker
from mlx_manager.testing.server import free_port, server_env

console = Console(width=170)
Prompts = dict[int, list[str]]  # concurrency level -> its prompts


def prefix_cache_ttft(target: Target, maker: PromptMaker, prefix_tokens: int, rounds: int = 3) -> dict[str, float]:
    """TTFT of a fresh long prompt (cold) and of the same prefix with a new suffix (hit), sequentially."""

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


def sweep(target: Target, label: str, warm_up: str, prompts: Prompts, output_tokens: int, tag: str) -> list[LevelStats]:
    """One warm-up request, then each level in turn (closed loop: `level` requests in flight)."""

    async def levels() -> list[LevelStats]:
        async with httpx.AsyncClient(timeout=target.timeout) as client:
            await one_request(client, target, warm_up, 4)
        rows = []
        for level, level_prompts in prompts.items():
            results, wall = await run_level(target, level_prompts, output_tokens, level, lambda: None)
            rows.append(summarize(label, tag, level, results, wall))
            row = rows[-1]
            console.print(
                f"  {label} {tag} @{level}: {row.output_tok_s:.1f} tok/s, ITL p50 {row.itl_p50_ms:.0f} ms"
                f" p99 {row.itl_p99_ms:.0f} ms, TTFT p50 {row.ttft_p50_ms:.0f} ms, errors {row.errors}"
            )
        return rows

    return asyncio.run(levels())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--prefix-tokens", type=int, default=2000, help="0: skip the prefix-cache TTFT check")
    parser.add_argument("--peers", default="mlx-lm,vllm-mlx")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--step-prefill-tokens", default="", help="our server once per value, e.g. 64,0")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = args.model.resolve()
    levels = [int(c) for c in args.concurrency.split(",")]
    out = args.out or ROOT / "benchmarks" / "results" / model.name
    maker = PromptMaker(model)
    rounds = [
        {c: [maker.text(args.prompt_tokens) for _ in range(requests_for(c, args.requests))] for c in levels}
        for _ in range(args.repeats)
    ]
    warm_ups = [maker.text(16) for _ in range(args.repeats)]

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
    servers = our_servers(model, args.step_prefill_tokens, out) + [
        (peer, peer_server(peer, model, out)) for peer in args.peers.split(",") if peer
    ]
    for rep in range(args.repeats):
        for label, serve in servers:
            try:
                with serve() as (base, model_id, ignore_eos):
                    target = Target(base, model_id, ignore_eos=ignore_eos)
                    tag = f"random r{rep + 1}" if args.repeats > 1 else "random"
                    rows += sweep(target, label, warm_ups[rep], rounds[rep], args.output_tokens, tag)
                    if rep == 0 and label == "mlx-manager" and args.prefix_tokens:
                        extra["prefix_cache"] = prefix_cache_ttft(target, maker, args.prefix_tokens)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                console.print(f"[yellow]{label} unavailable:[/yellow] {str(exc)[:500]}")
                extra[f"{label}_error"] = str(exc)[:2000]

    console.print(table(rows, f"{model.name}: prompt {args.prompt_tokens} tok, output {args.output_tokens} tok"))
    summary = medians(rows)
    if args.repeats > 1:
        console.print(summary_table(summary, args.repeats))
        extra["medians"] = summary
    goals = ratios(rows if args.repeats == 1 else median_rows(rows), baseline, extra)
    for line in goals:
        console.print(line)
    extra["goals"] = goals
    write_json(rows, out / "compare.json", {"model": str(model), **vars(args), **extra, "model_path": str(model)})
    write_plot(rows if args.repeats == 1 else median_rows(rows), out / "compare.png")
    console.print(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")


Server = Callable[[], contextlib.AbstractContextManager[tuple[str, str, bool]]]


def our_servers(model: Path, budgets: str, out: Path) -> list[tuple[str, Server]]:
    """Our server, once per step_prefill_tokens value asked for (its own default when none)."""
    values: list[str | None] = [v.strip() for v in budgets.split(",") if v.strip()] or [None]
    servers: list[tuple[str, Server]] = []
    for value in values:
        label = "mlx-manager" if value == values[0] else f"mlx-manager step_prefill_tokens={value}"
        env = {"MLX_MANAGER_STEP_PREFILL_TOKENS": value} if value is not None else {}

        @contextlib.contextmanager
        def serve(env: dict[str, str] = env, label: str = label) -> Iterator[tuple[str, str, bool]]:
            home = ROOT / ".cache" / "bench-home"
            port = free_port()
            log = out / f"{label.replace('=', '-')}.log"
            with running(ours_command(model, port), port, log, server_env(home, {**blas_env(), **env})) as base:
                yield base, model.name, True

        servers.append((label, serve))
    return servers


def peer_server(peer: str, model: Path, out: Path) -> Server:
    @contextlib.contextmanager
    def serve() -> Iterator[tuple[str, str, bool]]:
        port = free_port()
        with running(peer_command(peer, model, port), port, out / f"{peer}.log", blas_env()) as base:
            yield base, served_model_id(base, str(model)), False

    return serve


METRICS = ("output_tok_s", "itl_p50_ms", "itl_p99_ms", "ttft_p50_ms", "errors")


def medians(rows: list[LevelStats]) -> list[dict[str, object]]:
    """Per server and level, the median of each metric over the repeats, with its range."""
    groups: dict[tuple[str, int], list[LevelStats]] = {}
    for r in rows:
        groups.setdefault((r.label, r.concurrency), []).append(r)
    summary: list[dict[str, object]] = []
    for (label, level), runs in groups.items():
        entry: dict[str, object] = {"server": label, "concurrency": level, "repeats": len(runs)}
        for metric in METRICS:
            values = [float(getattr(r, metric)) for r in runs]
            entry[metric] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        ratios_ = [r.itl_p99_ms / r.itl_p50_ms for r in runs if r.itl_p50_ms]
        entry["itl_p99_over_p50"] = {"median": statistics.median(ratios_), "min": min(ratios_), "max": max(ratios_)}
        summary.append(entry)
    return summary


def median_rows(rows: list[LevelStats]) -> list[LevelStats]:
    """One row per server and level, each field the median over the repeats (for the goal ratios and the plot)."""
    groups: dict[tuple[str, int], list[LevelStats]] = {}
    for r in rows:
        groups.setdefault((r.label, r.concurrency), []).append(r)
    merged = []
    for runs in groups.values():
        fields = {
            k: statistics.median([getattr(r, k) for r in runs]) if isinstance(v, (int, float)) else v
            for k, v in vars(runs[0]).items()
        }
        merged.append(LevelStats(**{**fields, "workload": "random (median)", "concurrency": runs[0].concurrency}))
    return merged


def summary_table(summary: list[dict[str, object]], repeats: int) -> Table:
    t = Table(title=f"medians of {repeats} repeats [min-max]")
    for col in ("server", "conc", "out tok/s", "ITL p50 ms", "ITL p99 ms", "p99/p50", "TTFT p50 ms", "errors"):
        t.add_column(col, justify="left" if col == "server" else "right")

    def cell(entry: dict[str, object], key: str, fmt: str) -> str:
        m = entry[key]
        assert isinstance(m, dict)
        return f"{m['median']:{fmt}} [{m['min']:{fmt}}-{m['max']:{fmt}}]"

    for e in summary:
        t.add_row(
            str(e["server"]),
            str(e["concurrency"]),
            cell(e, "output_tok_s", ".1f"),
            cell(e, "itl_p50_ms", ".0f"),
            cell(e, "itl_p99_ms", ".0f"),
            cell(e, "itl_p99_over_p50", ".2f"),
            cell(e, "ttft_p50_ms", ".0f"),
            cell(e, "errors", ".0f"),
        )
    return t


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
