"""Distributed models on a real server: tiny-llama sharded over 2 ranks on loopback (mx.distributed ring), by
tensor and by pipeline, served through the OpenAI API next to the same model in one process."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_models import write_shaped_model

LOOPBACK = [{"ssh": "localhost", "ips": ["127.0.0.1"]}] * 2
# Rank 1 on "another host", started over ssh (the shim below), its ring on loopback.
OVER_SSH = [{"ssh": "localhost", "ips": ["127.0.0.1"]}, {"ssh": "node-b", "ips": ["127.0.0.1"]}]
# A stand-in for ssh: checks the options we pass, logs the call, fails like ssh for gpu-node-2, and runs the
# command for any other host with no environment but PATH and HOME, as sshd would.
SSH_SHIM = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.path.join(os.path.dirname(__file__), "ssh.log"), "a") as log:
    log.write(json.dumps(args) + "\\n")
options = []
while args and args[0] == "-o":
    options.append(args[1])
    args = args[2:]
if "BatchMode=yes" not in options or len(args) != 2:
    sys.exit(f"ssh shim: unexpected arguments {{sys.argv[1:]}}")
host, command = args
if host == "gpu-node-2":
    sys.stderr.write("ssh: connect to host gpu-node-2 port 22: No route to host\\n")
    sys.exit(255)
os.execve("/bin/sh", ["sh", "-c", command], {{"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}})
"""
FAR = [{"ssh": "localhost", "ips": ["127.0.0.1"]}, {"ssh": "gpu-node-2", "ips": ["10.255.255.1"]}]


def _free_ports(n: int) -> int:
    """The first of `n` consecutive ports nothing listens on now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = int(s.getsockname()[1])
        if first + n < 65536 and all(_port_free(first + i) for i in range(1, n)):
            return first
    raise RuntimeError("no free ports")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="module")
def shim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ssh-shim")


@pytest.fixture(scope="module")
def server(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, shim_dir: Path
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("distributed")
    (home / "loopback.json").write_text(json.dumps(LOOPBACK))
    (home / "far.json").write_text(json.dumps(FAR))
    (home / "ssh.json").write_text(json.dumps(OVER_SSH))
    shim = shim_dir / "ssh"
    shim.write_text(SSH_SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    llama = str(tiny_models["tiny-llama"])
    # 4 layers and 4 KV heads: a shape 4 ranks can split by layer and by head.
    four = write_shaped_model(
        home / "models",
        "llama",
        "tiny-llama-4x4",
        hidden_size=128,
        num_layers=4,
        num_heads=4,
        num_kv_heads=4,
        intermediate_size=256,
    )
    (home / "four.json").write_text(json.dumps(LOOPBACK * 2))
    # tiny-qwen3 with its authors' sampling recommendation, which an unset value must follow; its tests for
    # tools and schemas set temperature 0, so one 2-rank model serves both (each start costs seconds).
    warm = home / "models" / "qwen3-warm"
    shutil.copytree(tiny_models["tiny-qwen3"], warm)
    generation = json.loads((warm / "generation_config.json").read_text())
    (warm / "generation_config.json").write_text(json.dumps(generation | {"temperature": 0.6, "top_k": 3}))
    config = [
        # step_timeout_seconds: the hung-worker test waits this long (a heartbeat is stale after 3s).
        {
            "id": "tiny-llama-tp2",
            "path": llama,
            "hostfile": str(home / "loopback.json"),
            "strategy": "tensor",
            "step_timeout_seconds": 6,
        },
        # The pipeline model starts rank 1 on "another host" over the ssh shim, so it proves that path too.
        {
            "id": "tiny-llama-pp2",
            "path": llama,
            "hostfile": str(home / "ssh.json"),
            "strategy": "pipeline",
            "python": sys.executable,
            "env": {"LD_PRELOAD": os.environ.get("LD_PRELOAD", "")},
            "ring_port": _free_ports(2),
        },
        {"id": "four-tp4", "path": str(four), "hostfile": str(home / "four.json"), "strategy": "tensor"},
        {"id": "four-pp4", "path": str(four), "hostfile": str(home / "four.json"), "strategy": "pipeline"},
        {"id": "qwen3-tp2", "path": str(warm), "hostfile": str(home / "loopback.json")},
        {"id": "tiny-llama-far", "path": llama, "hostfile": str(home / "far.json"), "strategy": "tensor"},
    ]
    (home / "distributed.json").write_text(json.dumps(config))
    env = {
        "MLX_MANAGER_DISTRIBUTED_CONFIG": str(home / "distributed.json"),
        "PATH": f"{shim.parent}:{os.environ['PATH']}",
    }
    args = ["--model-dir", str(Path(llama).parent), "--model-dir", str(home / "models")]
    with run_server(home, args, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", timeout=120, max_retries=0)


def chat(client: openai.OpenAI, model: str, text: str, max_tokens: int = 16) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens, temperature=0
    )
    return reply.choices[0].message.content or ""


def status(server: ServerProcess, model: str) -> dict[str, Any]:
    rows = httpx.get(f"{server.base_url}/admin/distributed", timeout=30).json()["data"]
    return dict(next(r for r in rows if r["id"] == model))


@pytest.mark.parametrize("model", ["tiny-llama-tp2", "tiny-llama-pp2"])
def test_greedy_output_matches_the_single_process_model(
    client: openai.OpenAI, server: ServerProcess, model: str
) -> None:
    for text in ("Once upon a time", "Tell me about the sea and the sky"):
        assert chat(client, model, text) == chat(client, "tiny-llama", text)
    one = client.completions.create(model="tiny-llama", prompt="The cat", max_tokens=16, temperature=0)
    two = client.completions.create(model=model, prompt="The cat", max_tokens=16, temperature=0)
    assert two.choices[0].text == one.choices[0].text and two.usage == one.usage
    ranks = status(server, model)["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["weight_bytes"] > 0 for r in ranks)
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=30).text
    assert f'mlx_manager_completion_tokens_total{{model="{model}"}}' in metrics


def test_unset_sampling_values_come_from_the_models_generation_config(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    card = httpx.get(f"{server.base_url}/v1/models/qwen3-tp2", timeout=30).json()["sampling_defaults"]
    assert card["temperature"] == {"value": 0.6, "source": "model"} and card["top_k"]["value"] == 3
    messages: Any = [{"role": "user", "content": "Once upon a time"}]
    replies, api_defaults = [], []
    for seed in (1, 2, 3):
        ask = {"messages": messages, "max_tokens": 16, "seed": seed}
        local = client.chat.completions.create(model="qwen3-warm", **ask).choices[0].message.content
        sharded = client.chat.completions.create(model="qwen3-tp2", **ask).choices[0].message.content
        assert sharded == local  # the same defaults and the engine's own seeded sampler, on rank 0
        replies.append(sharded)
        plain = (
            client.chat.completions.create(model="qwen3-tp2", temperature=1.0, extra_body={"top_k": 0}, **ask)
            .choices[0]
            .message.content
        )
        api_defaults.append(plain)
    assert replies != api_defaults  # temperature 1 without a filter, the old fallback, samples other text


TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer", "maximum": 99}, "b": {"type": "integer", "maximum": 99}},
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    }
]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}, "sunny": {"type": "boolean"}},
    "required": ["city", "sunny"],
    "additionalProperties": False,
}


def _tool_calls(client: openai.OpenAI, model: str, stream: bool) -> tuple[list[tuple[str, str]], str, str]:
    """The calls (name, arguments), the reasoning and the finish reason of a forced call, as one reply."""
    ask: Any = {
        "model": model,
        "messages": [{"role": "user", "content": "Add 2 and 3."}],
        "max_tokens": 80,
        "temperature": 0,
        "tools": TOOLS,
        "tool_choice": "required",
        "extra_body": {"max_reasoning_tokens": 6},  # a random model seldom closes its <think> block itself
    }
    if not stream:
        choice = client.chat.completions.create(**ask).choices[0]
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return calls, getattr(choice.message, "reasoning_content", "") or "", choice.finish_reason
    acc: dict[int, list[str]] = {}
    reasoning, finish = "", ""
    for chunk in client.chat.completions.create(**ask, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        assert not delta.content  # the call's markup never reaches content
        reasoning += getattr(delta, "reasoning_content", None) or ""
        for tc in delta.tool_calls or []:
            entry = acc.setdefault(tc.index, ["", ""])
            entry[0] += (tc.function.name if tc.function else None) or ""
            entry[1] += (tc.function.arguments if tc.function else None) or ""
        finish = chunk.choices[0].finish_reason or finish
    return [(n, a) for n, a in (v for _, v in sorted(acc.items()))], reasoning, finish


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_tool_call_is_parsed_and_follows_its_schema(client: openai.OpenAI, stream: bool) -> None:
    calls, reasoning, finish = _tool_calls(client, "qwen3-tp2", stream)
    assert finish == "tool_calls" and calls  # the call went to tool_calls, its markup nowhere in content
    for name, arguments in calls:
        args = json.loads(arguments)
        assert name == "add" and set(args) == {"a", "b"} and all(isinstance(v, int) for v in args.values())
    assert (calls, reasoning, finish) == _tool_calls(client, "qwen3-warm", stream)  # the local model's reply


def test_an_anthropic_tool_use_equals_the_local_models(server: ServerProcess) -> None:
    claude = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)
    tool = {"name": "add", "input_schema": TOOLS[0]["function"]["parameters"]}

    def use(model: str) -> list[tuple[str, Any]]:
        reply = claude.messages.create(
            model=model,
            max_tokens=80,
            messages=[{"role": "user", "content": "Add 2 and 3."}],
            tools=[tool],  # type: ignore[list-item]
            tool_choice={"type": "any"},
            extra_body={"temperature": 0},  # this SDK version has no temperature argument
        )
        assert reply.stop_reason == "tool_use"
        return [(b.name, b.input) for b in reply.content if b.type == "tool_use"]

    calls = use("qwen3-tp2")
    assert calls and all(name == "add" and set(args) == {"a", "b"} for name, args in calls)  # type: ignore[arg-type]
    assert calls == use("qwen3-warm")


def test_a_json_schema_reply_follows_the_schema(client: openai.OpenAI) -> None:
    ask: Any = {
        "messages": [{"role": "user", "content": "Weather in Paris as JSON."}],
        "max_tokens": 80,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA, "strict": True}},
        "extra_body": {"max_reasoning_tokens": 6},
    }
    out = client.chat.completions.create(model="qwen3-tp2", **ask).choices[0]
    reply = json.loads(out.message.content or "")
    assert out.finish_reason == "stop" and set(reply) == {"city", "sunny"} and isinstance(reply["sunny"], bool)
    assert out.message.content == client.chat.completions.create(model="qwen3-warm", **ask).choices[0].message.content
    with pytest.raises(openai.BadRequestError) as err:  # what the grammar cannot enforce: a 400 naming it
        bad: Any = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "string", "format": "x"}}}
        client.chat.completions.create(model="qwen3-tp2", messages=ask["messages"], response_format=bad)
    assert err.value.param == "response_format"


@pytest.mark.parametrize("model", ["four-tp4", "four-pp4"])
def test_four_ranks_give_the_single_process_output(client: openai.OpenAI, server: ServerProcess, model: str) -> None:
    try:  # 8 tokens: each step is a few collectives over four ranks polling on two cores
        assert chat(client, model, "Once upon a time", 8) == chat(client, "tiny-llama-4x4", "Once upon a time", 8)
        weights = [r["weight_bytes"] for r in status(server, model)["ranks"]]
        assert len(weights) == 4 and max(weights) < 0.5 * sum(weights)
    finally:  # four idle ranks would only slow the tests after this one
        httpx.post(f"{server.base_url}/admin/models/{model}/unload", timeout=60)


def test_each_pipeline_rank_holds_part_of_the_weights(
    client: openai.OpenAI, server: ServerProcess, tiny_models: dict[str, Path]
) -> None:
    chat(client, "tiny-llama-pp2", "hi", 2)
    weights = [r["weight_bytes"] for r in status(server, "tiny-llama-pp2")["ranks"]]
    full = sum(p.stat().st_size for p in tiny_models["tiny-llama"].glob("*.safetensors"))
    assert all(w < full * 0.9 for w in weights), (weights, full)


def test_a_started_distributed_model_is_in_the_admin_lists_and_loads_like_a_local_one(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    def admin(path: str, method: str = "GET") -> Any:
        reply = httpx.request(method, f"{server.base_url}/admin/models{path}", timeout=120)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def loaded(model: str) -> bool:
        return bool(next(m for m in admin("/local") if m["id"] == model)["loaded"])

    chat(client, "tiny-llama-pp2", "hi", 2)
    row = next(r for r in admin("")["data"] if r["id"] == "tiny-llama-pp2")
    ranks = row["distributed"]["ranks"]
    assert row["state"] == "loaded" and row["distributed"]["strategy"] == "pipeline" and loaded("tiny-llama-pp2")
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["weight_bytes"] > 0 for r in ranks)
    assert row["memory_bytes"] == sum(r["active_bytes"] for r in ranks) > 0 and row["tokens_generated"] >= 2
    assert admin("/tiny-llama-pp2/unload", "POST")["status"] == "unloaded" and not loaded("tiny-llama-pp2")
    assert "tiny-llama-pp2" not in {r["id"] for r in admin("")["data"]}
    assert admin("/tiny-llama-pp2/load", "POST")["state"] == "loaded" and loaded("tiny-llama-pp2")
    assert chat(client, "tiny-llama-pp2", "hi", 4) == chat(client, "tiny-llama", "hi", 4)


def test_distributed_models_are_listed_like_local_ones(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"tiny-llama", "tiny-llama-tp2", "tiny-llama-pp2"} <= ids
    assert client.models.retrieve("tiny-llama-pp2").id == "tiny-llama-pp2"


def test_streaming_joins_to_the_whole_reply(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Once upon a time"}]
    stream = client.chat.completions.create(
        model="tiny-llama-tp2",
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,  # type: ignore[arg-type]
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == chat(client, "tiny-llama", "Once upon a time") and len(pieces) > 2


def test_a_cancelled_stream_stops_every_rank(client: openai.OpenAI, server: ServerProcess) -> None:
    before = status(server, "tiny-llama-pp2")["cancelled"]
    messages = [{"role": "user", "content": "Once upon a time"}]
    stream = client.chat.completions.create(
        model="tiny-llama-pp2",
        messages=messages,
        max_tokens=1500,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},  # type: ignore[arg-type]
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while status(server, "tiny-llama-pp2")["cancelled"] == before:
        assert time.monotonic() < deadline, "rank 0 never reported the cancelled request as stopped"
        time.sleep(0.2)
    started = time.monotonic()
    chat(client, "tiny-llama-pp2", "hi", 4)  # runs at once: no rank is still busy with the cancelled one
    assert time.monotonic() - started < 10


def test_concurrent_requests_take_turns_by_priority_and_match_sequential_ones(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    prompts = ["Once upon a time", "The cat sat", "Tell me about the sea"]
    sequential = [chat(client, "tiny-llama-tp2", p) for p in prompts]
    finished: list[int] = []

    def ask(i: int, priority: int) -> str:
        reply = client.chat.completions.create(
            model="tiny-llama-tp2",
            messages=[{"role": "user", "content": prompts[i]}],
            max_tokens=16,
            temperature=0,
            extra_body={"priority": priority},
        )
        finished.append(i)
        return reply.choices[0].message.content or ""

    def until(what: str, n: int) -> None:
        deadline = time.monotonic() + 60
        while status(server, "tiny-llama-tp2")[what] != n:
            assert time.monotonic() < deadline, (what, n, status(server, "tiny-llama-tp2"))
            time.sleep(0.05)

    # A long stream holds the ranks until the three are queued, so their order is the queue's.
    hold = client.chat.completions.create(
        model="tiny-llama-tp2",
        messages=[{"role": "user", "content": "Once"}],
        max_tokens=1500,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    next(iter(hold))
    cancelled = status(server, "tiny-llama-tp2")["cancelled"]
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(ask, i, priority) for i, priority in enumerate([9, 3, 0])]
        until("waiting", 3)
        # One more, ahead of two of them, whose client gives up while it waits: it never reaches the ranks.
        with pytest.raises(httpx.TimeoutException):
            body = {"model": "tiny-llama-tp2", "prompt": "Gone", "max_tokens": 8}
            httpx.post(f"{server.base_url}/v1/completions", json=body, timeout=1.0)
        until("waiting", 4)
        time.sleep(1.5)  # the server polls for a client that left twice a second
        hold.close()
        replies = [f.result(timeout=120) for f in futures]
    assert replies == sequential and finished == [2, 1, 0]  # lower priority first, each as if alone
    assert status(server, "tiny-llama-tp2")["cancelled"] == cancelled + 1  # the hold only
    card = client.models.retrieve("tiny-llama-tp2").model_extra or {}
    assert card["distributed"]["concurrent_requests"] == 1 and card["distributed"]["ranks"] == 2


def test_a_prompt_past_the_context_is_a_400_and_the_ranks_keep_serving(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny-llama-tp2", prompt="The cat sat. " * 2000, max_tokens=8)
    assert err.value.code == "context_length_exceeded"
    assert chat(client, "tiny-llama-tp2", "hi", 4) == chat(client, "tiny-llama", "hi", 4)


def test_a_host_that_cannot_be_reached_is_named_with_the_ssh_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        chat(client, "tiny-llama-far", "hi", 2)
    assert err.value.status_code == 503
    assert "rank 1 on host 'gpu-node-2': ssh failed (exit 255)" in err.value.message
    assert "No route to host" in err.value.message


def test_a_rank_on_another_host_starts_over_ssh_and_gives_the_single_process_output(
    client: openai.OpenAI, server: ServerProcess, shim_dir: Path
) -> None:
    assert chat(client, "tiny-llama-pp2", "Once upon a time") == chat(client, "tiny-llama", "Once upon a time")
    calls = [json.loads(line) for line in (shim_dir / "ssh.log").read_text().splitlines()]
    call = next(c for c in calls if "node-b" in c)  # the first start (an admin restart may have added more)
    assert call[:5] == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "node-b"]
    command = shlex.split(call[5])
    assert (
        command[0] == "env" and "MLX_RANK=1" in command and f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')}" in command
    )
    assert sys.executable in command and "mlx_manager.engine.distributed.worker" in command
    ranks = status(server, "tiny-llama-pp2")["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["weight_bytes"] > 0 for r in ranks)


def test_a_killed_worker_fails_with_503_naming_it_and_restarts(client: openai.OpenAI, server: ServerProcess) -> None:
    chat(client, "tiny-llama-pp2", "hi", 2)
    pids = status(server, "tiny-llama-pp2")["pids"]
    os.kill(pids[1], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while status(server, "tiny-llama-pp2")["state"] != "unavailable":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with pytest.raises(openai.APIStatusError) as err:
        chat(client, "tiny-llama-pp2", "hi", 2)
    assert err.value.status_code == 503 and "rank 1" in err.value.message
    assert chat(client, "tiny-llama", "hi", 2) is not None  # other models still serve
    restarted = httpx.post(f"{server.base_url}/admin/distributed/tiny-llama-pp2/restart", timeout=120)
    assert restarted.status_code == 200 and restarted.json()["state"] == "ready"
    assert chat(client, "tiny-llama-pp2", "Once upon a time") == chat(client, "tiny-llama", "Once upon a time")


def test_a_hung_worker_fails_with_503_naming_it_and_restarts(client: openai.OpenAI, server: ServerProcess) -> None:
    chat(client, "tiny-llama-tp2", "hi", 2)
    pids = status(server, "tiny-llama-tp2")["pids"]
    os.kill(pids[1], signal.SIGSTOP)  # alive but frozen: no step can finish
    try:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            chat(client, "tiny-llama-tp2", "Once upon a time", 200)
        assert time.monotonic() - started < 60
        assert err.value.status_code == 503 and "rank 1 stopped responding" in err.value.message
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[1], signal.SIGCONT)
    assert status(server, "tiny-llama-tp2")["state"] == "unavailable"
    restarted = httpx.post(f"{server.base_url}/admin/distributed/tiny-llama-tp2/restart", timeout=120)
    assert restarted.status_code == 200 and restarted.json()["state"] == "ready"
    assert chat(client, "tiny-llama-tp2", "hi", 4) == chat(client, "tiny-llama", "hi", 4)
