"""Drive several agent sessions against one server, turn by turn, optionally restarting it between two turns."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from mlx_manager.bench.agent import AgentSession, ToolCall
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
    # Send back the model's own reply text (with the scripted tool calls and results after it), as a real agent
    # client does, instead of the scripted text; each request's max_tokens then drawn from `reply_tokens`.
    real_replies: bool = False
    reply_tokens: tuple[int, int] = (100, 400)
    seed: int = 0

    def max_tokens_for(self, session: AgentSession, turn: int) -> int:
        """The same draw on every server, so every server is asked for the same reply lengths."""
        if not self.real_replies:
            return self.max_tokens
        return random.Random(f"{self.seed}/{session.name}/{turn}").randint(*self.reply_tokens)


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
    replies: dict[str, list[TurnResult]] = {s.name: [] for s in sessions}
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
            records = await _one_round(client, base_url, sessions, turn, options, restarted, replies)
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
    replies: dict[str, list[TurnResult]],
) -> list[TurnRecord]:
    async def one(session: AgentSession) -> TurnRecord:
        if options.real_replies:
            session = with_replies(session, replies[session.name])
        max_tokens = options.max_tokens_for(session, turn)
        body = request_body(options.fmt, session, turn, options.model, max_tokens, options.volatile)
        result = await send_turn(client, base_url, options.fmt, body, options.api_key)
        replies[session.name].append(result)
        return TurnRecord(session.name, turn + 1, restarted, result)

    if options.parallel:
        return list(await asyncio.gather(*(one(s) for s in sessions)))
    return [await one(s) for s in sessions]


def with_replies(session: AgentSession, replies: list[TurnResult]) -> AgentSession:
    """The session with the model's reply to request i as the assistant turn i + 1: its text, and its tool calls
    when the server parsed any (each answered with one of the scripted results), else the scripted calls."""
    turns = list(session.turns)
    for i, reply in enumerate(replies[: len(turns) - 1]):
        step = turns[i + 1]
        calls, results = step.calls, step.results
        if reply.calls:
            calls = tuple(
                ToolCall(c["id"] or f"call_{session.name}_{i}_{n}", c["name"], c["arguments"])
                for n, c in enumerate(reply.calls)
            )
            results = tuple(step.results[n % len(step.results)] for n in range(len(calls)))
        turns[i + 1] = dataclasses.replace(step, assistant=reply.text, calls=calls, results=results)
    return dataclasses.replace(session, turns=tuple(turns))
