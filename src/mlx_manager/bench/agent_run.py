"""Drive several agent sessions against one server, turn by turn, optionally restarting it between two turns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from mlx_manager.bench.agent import AgentSession
from mlx_manager.bench.agent_wire import TurnResult, request_body, send_turn


@dataclass
class TurnRecord:
    agent: str
    turn: int  # 1-based, as in "turn N"
    after_restart: bool
    result: TurnResult
    # Token counts taken from the server's log, where its responses leave them out.
    from_log: bool = False

    def as_dict(self) -> dict[str, Any]:
        head = {"agent": self.agent, "turn": self.turn, "after_restart": self.after_restart, "from_log": self.from_log}
        return {**head, **asdict(self.result)}


@dataclass
class AgentRun:
    label: str
    fmt: str
    records: list[TurnRecord] = field(default_factory=list)
    # Wall time of all turns, restart excluded, and the restart itself (stop, start, model warm-up).
    session_s: float = 0.0
    restart_s: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class AgentOptions:
    model: str
    fmt: str = "openai"
    max_tokens: int = 16
    volatile: bool = True
    api_key: str | None = None
    # Send every agent's turn N at once instead of one agent after another.
    parallel: bool = False
    timeout: float = 900.0


async def warm_up(client: httpx.AsyncClient, base_url: str, options: AgentOptions) -> None:
    """Load the model with an unrelated one-line prompt, so no turn pays for loading it."""
    if options.fmt == "openai":
        body: dict[str, Any] = {"messages": [{"role": "user", "content": "Hello"}]}
    else:
        body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]}
    body.update({"model": options.model, "max_tokens": 1, "temperature": 0, "stream": True})
    result = await send_turn(client, base_url, options.fmt, body, options.api_key)
    if not result.ok:
        raise RuntimeError(f"warm-up failed: {result.error}")


async def run_agents(
    label: str,
    base_url: str,
    sessions: list[AgentSession],
    options: AgentOptions,
    restart_before: int | None = None,
    restart: Callable[[], str] | None = None,
) -> AgentRun:
    """Turn 1 of every agent, then turn 2 of every agent, and so on; before turn `restart_before` (1-based) call
    `restart`, which returns the server's new base URL. Stops at the first failed request."""
    run = AgentRun(label, options.fmt)
    turns = min(len(s.turns) for s in sessions)
    limits = httpx.Limits(max_connections=len(sessions) + 2)
    async with httpx.AsyncClient(timeout=options.timeout, limits=limits) as client:
        await warm_up(client, base_url, options)
        restarted = False
        for turn in range(turns):
            if restart is not None and restart_before == turn + 1:
                began = time.perf_counter()
                base_url = await asyncio.to_thread(restart)
                await warm_up(client, base_url, options)
                run.restart_s, restarted = time.perf_counter() - began, True
            began = time.perf_counter()
            records = await _one_round(client, base_url, sessions, turn, options, restarted)
            run.session_s += time.perf_counter() - began
            run.records += records
            failed = [r for r in records if not r.result.ok]
            if failed:
                run.error = f"{failed[0].agent} turn {failed[0].turn}: {failed[0].result.error}"
                break
    return run


async def _one_round(
    client: httpx.AsyncClient,
    base_url: str,
    sessions: list[AgentSession],
    turn: int,
    options: AgentOptions,
    restarted: bool,
) -> list[TurnRecord]:
    async def one(session: AgentSession) -> TurnRecord:
        body = request_body(options.fmt, session, turn, options.model, options.max_tokens, options.volatile)
        result = await send_turn(client, base_url, options.fmt, body, options.api_key)
        return TurnRecord(session.name, turn + 1, restarted, result)

    if options.parallel:
        return list(await asyncio.gather(*(one(s) for s in sessions)))
    return [await one(s) for s in sessions]
