"""Per-turn summaries of agent runs (over agents and repeats): TTFT, cached and prompt tokens, session time."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.table import Table

from mlx_manager.bench.agent_run import AgentRun


@dataclass
class TurnStats:
    label: str
    fmt: str
    turn: int
    samples: int
    after_restart: bool
    ttft_median_s: float
    ttft_min_s: float
    ttft_max_s: float
    cached_median: float
    cached_min: int
    cached_max: int
    prompt_median: float
    ttft_at_end: int  # samples whose reply had no output event (TTFT taken at the stream's end)


@dataclass
class SessionStats:
    label: str
    fmt: str
    repeats: int
    session_median_s: float
    session_min_s: float
    session_max_s: float
    restart_median_s: float
    errors: list[str]


def turn_stats(runs: list[AgentRun]) -> list[TurnStats]:
    """One row per (server, format, turn), over every agent of every repeat."""
    groups: dict[tuple[str, str, int], list[tuple[bool, float, int, int, bool]]] = {}
    for run in runs:
        for rec in run.records:
            if rec.result.ok:
                key = (run.label, run.fmt, rec.turn)
                r = rec.result
                groups.setdefault(key, []).append(
                    (rec.after_restart, r.ttft, r.cached_tokens, r.prompt_tokens, r.ttft_at_end)
                )
    rows = []
    for (label, fmt, turn), items in groups.items():
        ttfts = [i[1] for i in items]
        rows.append(
            TurnStats(
                label=label,
                fmt=fmt,
                turn=turn,
                samples=len(items),
                after_restart=any(i[0] for i in items),
                ttft_median_s=statistics.median(ttfts),
                ttft_min_s=min(ttfts),
                ttft_max_s=max(ttfts),
                cached_median=statistics.median(i[2] for i in items),
                cached_min=min(i[2] for i in items),
                cached_max=max(i[2] for i in items),
                prompt_median=statistics.median(i[3] for i in items),
                ttft_at_end=sum(i[4] for i in items),
            )
        )
    return rows


def session_stats(runs: list[AgentRun]) -> list[SessionStats]:
    groups: dict[tuple[str, str], list[AgentRun]] = {}
    for run in runs:
        groups.setdefault((run.label, run.fmt), []).append(run)
    rows = []
    for (label, fmt), group in groups.items():
        done = [r for r in group if not r.error] or group
        times = [r.session_s for r in done]
        rows.append(
            SessionStats(
                label=label,
                fmt=fmt,
                repeats=len(group),
                session_median_s=statistics.median(times),
                session_min_s=min(times),
                session_max_s=max(times),
                restart_median_s=statistics.median(r.restart_s for r in done),
                errors=[r.error for r in group if r.error],
            )
        )
    return rows


def turn_table(rows: list[TurnStats], title: str) -> Table:
    """Servers as rows, turns as columns: median TTFT (min-max) and median cached / prompt tokens."""
    t = Table(title=title)
    t.add_column("server")
    t.add_column("format")
    turns = sorted({r.turn for r in rows})
    marks = {r.turn for r in rows if r.after_restart}
    first_restart = min(marks) if marks else None
    for turn in turns:
        t.add_column(f"turn {turn}" + (" (after restart)" if turn == first_restart else ""), justify="right")
    for label, fmt in dict.fromkeys((r.label, r.fmt) for r in rows):
        by_turn = {r.turn: r for r in rows if (r.label, r.fmt) == (label, fmt)}
        cells = [cell(by_turn[turn]) if turn in by_turn else "-" for turn in turns]
        t.add_row(label, fmt, *cells)
    return t


def cell(row: TurnStats) -> str:
    flag = f" [{row.ttft_at_end} at end]" if row.ttft_at_end else ""
    return (
        f"{row.ttft_median_s:.2f} s ({row.ttft_min_s:.2f}-{row.ttft_max_s:.2f}){flag}\n"
        f"{_cached(row)}/{row.prompt_median:.0f} tok"
    )


def session_table(rows: list[SessionStats]) -> Table:
    t = Table(title="session time (all agents, all turns; restart excluded)")
    for col in ("server", "format", "repeats", "session s median (min-max)", "restart s", "errors"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            r.label,
            r.fmt,
            str(r.repeats),
            f"{r.session_median_s:.1f} ({r.session_min_s:.1f}-{r.session_max_s:.1f})",
            f"{r.restart_median_s:.1f}",
            "; ".join(r.errors)[:120],
        )
    return t


def markdown(rows: list[TurnStats], sessions: list[SessionStats], missing: dict[str, str]) -> str:
    """The per-turn table and session times as Markdown, for the benchmarks README."""
    turns = sorted({r.turn for r in rows})
    marks = {r.turn for r in rows if r.after_restart}
    first_restart = min(marks) if marks else None
    head = [f"turn {t}" + (" (after restart)" if t == first_restart else "") for t in turns]
    lines = [
        "| server | format | " + " | ".join(head) + " | session s |",
        "| --- | --- | " + " | ".join("---:" for _ in turns) + " | ---: |",
    ]
    times = {(s.label, s.fmt): s for s in sessions}
    for label, fmt in dict.fromkeys((r.label, r.fmt) for r in rows):
        by_turn = {r.turn: r for r in rows if (r.label, r.fmt) == (label, fmt)}
        cells = [_md_cell(by_turn[t]) if t in by_turn else "-" for t in turns]
        s = times.get((label, fmt))
        session = f"{s.session_median_s:.0f} ({s.session_min_s:.0f}-{s.session_max_s:.0f})" if s else "-"
        lines.append(f"| {label} | {fmt} | " + " | ".join(cells) + f" | {session} |")
    for key, why in missing.items():
        label, fmt = key.split("/")
        lines.append(f"| {label} | {fmt} | " + " | ".join(why for _ in turns) + " | - |")
    return "\n".join(lines)


def _md_cell(row: TurnStats) -> str:
    return (
        f"{row.ttft_median_s:.1f} ({row.ttft_min_s:.1f}-{row.ttft_max_s:.1f}) · {_cached(row)}/{row.prompt_median:.0f}"
    )


def _cached(row: TurnStats) -> str:
    """Cached tokens: one number when every sample agrees, else the range (e.g. first agent cold, others not)."""
    return f"{row.cached_min}" if row.cached_min == row.cached_max else f"{row.cached_min}-{row.cached_max}"
