"""Summaries of a sweep: percentiles, a table, JSON and a PNG plot."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

from mlx_manager.bench.client import RequestResult


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class LevelStats:
    label: str
    workload: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    output_tok_s: float
    requests_s: float
    ttft_p50_ms: float
    ttft_p90_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p90_ms: float
    itl_p99_ms: float
    latency_p50_s: float
    latency_p90_s: float
    latency_p99_s: float
    mean_completion_tokens: float
    # Per-request decode speed after the first token, comparable with mlx-lm's generation_tps.
    decode_tok_s: float


def summarize(label: str, workload: str, concurrency: int, results: list[RequestResult], wall: float) -> LevelStats:
    ok = [r for r in results if r.ok]
    ttft = [r.ttft for r in ok]
    itl = [x for r in ok for x in r.itl]
    lat = [r.latency for r in ok]
    tokens = sum(r.completion_tokens for r in ok)
    return LevelStats(
        label=label,
        workload=workload,
        concurrency=concurrency,
        requests=len(results),
        errors=len(results) - len(ok),
        wall_s=wall,
        output_tok_s=tokens / wall if wall else 0.0,
        requests_s=len(ok) / wall if wall else 0.0,
        ttft_p50_ms=percentile(ttft, 0.5) * 1e3,
        ttft_p90_ms=percentile(ttft, 0.9) * 1e3,
        ttft_p99_ms=percentile(ttft, 0.99) * 1e3,
        itl_p50_ms=percentile(itl, 0.5) * 1e3,
        itl_p90_ms=percentile(itl, 0.9) * 1e3,
        itl_p99_ms=percentile(itl, 0.99) * 1e3,
        latency_p50_s=percentile(lat, 0.5),
        latency_p90_s=percentile(lat, 0.9),
        latency_p99_s=percentile(lat, 0.99),
        mean_completion_tokens=statistics.fmean([r.completion_tokens for r in ok]) if ok else 0.0,
        decode_tok_s=statistics.fmean(decode) if (decode := _decode_rates(ok)) else 0.0,
    )


def _decode_rates(results: list[RequestResult]) -> list[float]:
    return [
        (r.completion_tokens - 1) / (r.latency - r.ttft)
        for r in results
        if r.completion_tokens > 1 and r.latency > r.ttft
    ]


def table(rows: list[LevelStats], title: str) -> Table:
    t = Table(title=title)
    for col in (
        "server",
        "workload",
        "conc",
        "reqs",
        "err",
        "out tok/s",
        "req/s",
        "TTFT p50/p90/p99 ms",
        "ITL p50/p90/p99 ms",
        "E2E p50/p99 s",
    ):
        t.add_column(col, justify="right" if col not in ("server", "workload") else "left")
    for r in rows:
        t.add_row(
            r.label,
            r.workload,
            str(r.concurrency),
            str(r.requests),
            str(r.errors),
            f"{r.output_tok_s:.1f}",
            f"{r.requests_s:.2f}",
            f"{r.ttft_p50_ms:.0f}/{r.ttft_p90_ms:.0f}/{r.ttft_p99_ms:.0f}",
            f"{r.itl_p50_ms:.1f}/{r.itl_p90_ms:.1f}/{r.itl_p99_ms:.1f}",
            f"{r.latency_p50_s:.2f}/{r.latency_p99_s:.2f}",
        )
    return t


def write_json(rows: list[LevelStats], path: Path, meta: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in rows]}, indent=2, default=str))


def write_plot(rows: list[LevelStats], path: Path) -> bool:
    """Output tok/s and TTFT p50 against concurrency, one line per server and workload."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[tuple[str, str], list[LevelStats]] = {}
    for r in rows:
        series.setdefault((r.label, r.workload), []).append(r)
    for (label, workload), points in series.items():
        xs = [p.concurrency for p in points]
        ax1.plot(xs, [p.output_tok_s for p in points], marker="o", label=f"{label} ({workload})")
        ax2.plot(xs, [p.ttft_p50_ms for p in points], marker="o", label=f"{label} ({workload})")
    for ax, ylabel in ((ax1, "output tok/s"), (ax2, "TTFT p50 (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
