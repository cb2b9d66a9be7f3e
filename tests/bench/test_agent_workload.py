"""The agent-loop workload: seeded sessions, both wire formats, and a short session against a real server."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from mlx_manager.bench.agent import AgentSession, AgentShape, make_sessions
from mlx_manager.bench.agent_run import AgentOptions, run_agents, with_replies
from mlx_manager.bench.agent_wire import anthropic_body, openai_body
from mlx_manager.bench.sse import sse_events
from mlx_manager.config import DEFAULT_VOLATILE_PATTERNS
from mlx_manager.testing.server import ServerProcess

SMALL = AgentShape(
    agents=2, turns=3, system_tokens=60, tool_description_tokens=8, task_tokens=20, result_tokens=(30, 60)
)


def test_sessions_are_seeded_and_share_system_prompt_and_tools() -> None:
    first, again = make_sessions(SMALL), make_sessions(SMALL)
    assert first == again
    a, b = first
    assert a.system == b.system and a.tools == b.tools
    assert a.turns[0].user != b.turns[0].user
    assert len(a.turns) == 3 and not a.turns[0].calls
    for turn in a.turns[1:]:
        assert turn.calls and len(turn.calls) == len(turn.results)
    # The billing line changes with every request and is what our server strips by default.
    lines = {s.volatile_line(t) for s in first for t in range(3)}
    assert len(lines) == 6
    pattern = re.compile(DEFAULT_VOLATILE_PATTERNS[0])
    assert all(pattern.fullmatch(line) for line in lines)
    assert make_sessions(AgentShape(turns=2, seed=1, system_tokens=60))[0].system != a.system


def test_openai_and_anthropic_bodies_carry_the_same_conversation() -> None:
    session = make_sessions(SMALL)[0]
    chat = openai_body(session, 2, "m", 16, volatile=True)
    roles = [m["role"] for m in chat["messages"]]
    calls = [c for t in session.turns[1:3] for c in t.calls]
    assert roles == ["system", "user", *_assistant_then_tools(session, 2)]
    assert chat["messages"][0]["content"].startswith("x-anthropic-billing-header:")
    assert [m["tool_call_id"] for m in chat["messages"] if m["role"] == "tool"] == [c.id for c in calls]
    assert len(chat["tools"]) == len(session.tools) and chat["max_tokens"] == 16

    messages = anthropic_body(session, 2, "m", 16, volatile=True)
    assert messages["system"][0]["text"].startswith("x-anthropic-billing-header:")
    assert messages["system"][-1]["text"] == session.system
    assert [m["role"] for m in messages["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    uses = [b["id"] for m in messages["messages"] for b in m["content"] if b["type"] == "tool_use"]
    results = [b["tool_use_id"] for m in messages["messages"] for b in m["content"] if b["type"] == "tool_result"]
    assert uses == results == [c.id for c in calls]
    assert len(anthropic_body(session, 2, "m", 16, volatile=False)["system"]) == 1


def _assistant_then_tools(session: AgentSession, upto: int) -> list[str]:
    roles: list[str] = []
    for turn in session.turns[1 : upto + 1]:
        roles += ["assistant"] + ["tool"] * len(turn.calls)
    return roles


def test_sse_events_reads_both_formats() -> None:
    body = (
        b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'
        b'event: message_delta\ndata: {"usage": {"output_tokens": 2}}\n\n'
        b"data: [DONE]\n\n"
        b'data: {"never": "read"}\n\n'
    )

    async def read() -> list[tuple[str, dict[str, object]]]:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
        async with httpx.AsyncClient(transport=transport) as client, client.stream("GET", "http://x/") as resp:
            return [event async for event in sse_events(resp)]

    events = asyncio.run(read())
    assert [name for name, _ in events] == ["", "message_delta"]
    assert events[1][1]["usage"] == {"output_tokens": 2}


def test_agent_session_against_a_real_server_in_both_formats(
    server: ServerProcess, tiny_models: dict[str, Path]
) -> None:
    """Two turns with a (pretend) restart before the second: usage read back, the second turn reuses the first."""
    shape = AgentShape(
        1, 2, system_tokens=40, tool_description_tokens=4, task_tokens=20, result_tokens=(30, 60), tools=3
    )
    sessions = make_sessions(shape, tiny_models["tiny-qwen2.5"])
    for fmt in ("openai", "anthropic"):
        options = AgentOptions("tiny-qwen2.5", fmt, max_tokens=4)
        run = asyncio.run(run_agents("ours", server.base_url, sessions, options, 2, lambda: server.base_url))
        assert not run.error, run.error
        first, second = run.records
        assert (first.turn, first.after_restart, second.turn, second.after_restart) == (1, False, 2, True)
        assert first.result.ttft > 0 and second.result.latency >= second.result.ttft
        assert 0 < first.result.prompt_tokens < second.result.prompt_tokens
        # The billing line differs between the turns; stripped, the first turn's prompt is a cached prefix.
        assert second.result.cached_tokens > 0
        assert run.session_s > 0


def test_real_replies_mode_sends_the_models_reply_back_and_the_server_reuses_it(
    server: ServerProcess, tiny_models: dict[str, Path]
) -> None:
    shape = AgentShape(
        1, 2, system_tokens=40, tool_description_tokens=4, task_tokens=20, result_tokens=(30, 60), tools=3
    )
    sessions = make_sessions(shape, tiny_models["tiny-qwen2.5"])
    options = AgentOptions("tiny-qwen2.5", "openai", real_replies=True, reply_tokens=(12, 12), volatile=False)
    run = asyncio.run(run_agents("ours", server.base_url, sessions, options))
    assert not run.error, run.error
    first, second = (r.result for r in run.records)
    assert first.output_tokens == 12 and first.text
    body = openai_body(with_replies(sessions[0], [first]), 1, "m", 12, volatile=False)
    assert body["messages"][2] == {**body["messages"][2], "role": "assistant", "content": first.text}
    # The second request carries the first reply re-templated: its KV, kept with the prompt's, is reused as far
    # as the re-tokenized text gives the same tokens (a random model's reply is not always tokenized canonically).
    assert first.prompt_tokens < second.cached_tokens <= first.prompt_tokens + first.output_tokens


def test_a_replys_own_tool_calls_go_back_with_scripted_results_in_both_formats() -> None:
    from mlx_manager.bench.agent_wire import TurnResult

    session = make_sessions(SMALL)[0]
    model_args = '{"command":  "ls -la"}'  # the model's own spacing, sent back as it came
    reply = TurnResult(ok=True, text="Listing.", calls=[{"id": "c1", "name": "Bash", "arguments": model_args}])
    chat = openai_body(with_replies(session, [reply]), 1, "m", 16, volatile=False)
    assistant, tool = chat["messages"][2], chat["messages"][3]
    assert assistant["content"] == "Listing."
    assert assistant["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "Bash", "arguments": model_args}}
    ]
    assert tool == {"role": "tool", "tool_call_id": "c1", "content": session.turns[1].results[0]}
    messages = anthropic_body(with_replies(session, [reply]), 1, "m", 16, volatile=False)["messages"]
    assert messages[1]["content"][1] == {"type": "tool_use", "id": "c1", "name": "Bash", "input": {"command": "ls -la"}}
    # Without calls of its own, the reply's text goes with the scripted calls.
    plain = with_replies(session, [TurnResult(ok=True, text="Done.")])
    assert plain.turns[1].assistant == "Done." and plain.turns[1].calls == session.turns[1].calls
