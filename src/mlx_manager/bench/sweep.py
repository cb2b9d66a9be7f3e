"""Run workloads over a concurrency sweep with a progress bar."""

from __future__ import annotations

import asyncio
import itertools

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlx_manager.bench.client import Target, one_request, run_level
from mlx_manager.bench.report import LevelStats, summarize
from mlx_manager.bench.workloads import Workload


def requests_for(concurrency: int, minimum: int) -> int:
    return max(minimum, 2 * concurrency)


async def _warm_up(target: Target, prompt: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=target.timeout) as client:
        await one_request(client, target, prompt, 4)


async def sweep(
    target: Target, label: str, workloads: list[Workload], concurrencies: list[int], min_requests: int
) -> list[LevelStats]:
    rows: list[LevelStats] = []
    total = sum(requests_for(c, min_requests) for c in concurrencies) * len(workloads)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"{label}", total=total)
        for workload in workloads:
            await _warm_up(target, workload.prompts[0])
            for conc in concurrencies:
                count = requests_for(conc, min_requests)
                prompts = list(itertools.islice(itertools.cycle(workload.prompts), count))
                progress.update(task, description=f"{label} · {workload.name} · {conc} concurrent")
                results, wall = await run_level(
                    target, prompts, workload.output_tokens, conc, lambda: progress.advance(task)
                )
                rows.append(summarize(label, workload.name, conc, results, wall))
    return rows


def run_sweep(
    target: Target, label: str, workloads: list[Workload], concurrencies: list[int], min_requests: int
) -> list[LevelStats]:
    return asyncio.run(sweep(target, label, workloads, concurrencies, min_requests))
