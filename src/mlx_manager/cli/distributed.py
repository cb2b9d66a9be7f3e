"""`mlx-manager distributed ...`: checks for distributed models (engine/distributed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from mlx_manager.engine.distributed.check import check

app = typer.Typer(help="Distributed models: a model sharded over several machines.", no_args_is_help=True)
console = Console()


@app.command("check")
def check_cmd(
    hostfile: Annotated[Path, typer.Argument(help="mlx.launch's JSON hostfile: one {ssh, ips} per rank.")],
    backend: Annotated[Literal["ring", "jaccl"], typer.Option(help="The mx.distributed backend.")] = "ring",
) -> None:
    """Reachability, mlx / mlx-lm versions and the backend, for every host, before anything loads."""
    try:
        results, problems = check(hostfile, backend)
    except (OSError, ValueError, KeyError) as exc:
        console.print(f"[red]error:[/red] {hostfile}: {exc}")
        raise typer.Exit(2) from exc
    for r in results:
        mark = "[green]ok[/green]" if r.ok else "[red]FAIL[/red]"
        console.print(f"rank {r.rank}  {r.host:<20} {mark}  {r.detail}")
    for problem in problems:
        console.print(f"[red]FAIL[/red]  {problem}")
    ok = all(r.ok for r in results) and not problems
    console.print(f"{len(results)} ranks, backend {backend}: " + ("ready" if ok else "not ready"))
    raise typer.Exit(0 if ok else 1)
