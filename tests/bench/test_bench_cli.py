"""`mlx-manager bench` measures a real server and writes its table, JSON and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlx_manager.bench.client import RequestResult
from mlx_manager.bench.report import percentile, summarize
from mlx_manager.testing.server import ServerProcess


def test_bench_sweeps_concurrency_and_writes_json_and_png(
    server: ServerProcess, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "mlx_manager", "bench",
            "--url", server.base_url, "--model", "tiny-llama", "--concurrency", "1,4",
            "--prompt-tokens", "32", "--output-tokens", "12", "--requests", "4", "--workload", "all",
            "--prefix-tokens", "200", "--tokenizer", str(tiny_models["tiny-llama"]), "--out", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "bench.json").read_text())
    rows = data["results"]
    assert [(r["workload"], r["concurrency"]) for r in rows] == [
        ("random", 1), ("random", 4), ("shared-prefix", 1), ("shared-prefix", 4)
    ]  # fmt: skip
    for row in rows:
        assert row["errors"] == 0
        assert row["mean_completion_tokens"] == 12
        assert row["output_tok_s"] > 0 and row["ttft_p50_ms"] > 0 and row["itl_p50_ms"] > 0
    assert (tmp_path / "bench.png").stat().st_size > 1000
    assert "out tok/s" in out.stdout


def test_percentiles_interpolate() -> None:
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([5], 0.99) == 5
    assert percentile([], 0.5) == 0.0


def test_summary_counts_completion_tokens_only_and_errors_apart() -> None:
    results = [
        RequestResult(ok=True, ttft=0.1, latency=1.1, itl=[0.1] * 9, completion_tokens=10),
        RequestResult(ok=True, ttft=0.2, latency=1.2, itl=[0.1] * 9, completion_tokens=10),
        RequestResult(ok=False, error="HTTP 429"),
    ]
    stats = summarize("x", "random", 2, results, wall=2.0)
    assert stats.errors == 1 and stats.output_tok_s == 10.0
    assert abs(stats.decode_tok_s - 9.0) < 1e-9
