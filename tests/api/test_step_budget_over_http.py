"""The per-step prefill budget through real servers: prompts arriving while a stream decodes are prefilled in chunks
between its decode steps (no step makes it wait for a whole prompt), and the answers are the same as with whole
prefills. Steps are counted by the server (/metrics), never timed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server

ARRIVALS = 6
Run = tuple[list[str], float, list[str]]  # the arrivals' answers, the prefill peak, the answers one at a time
NO_REUSE = {"MLX_MANAGER_PREFIX_CACHE_BYTES": "0", "MLX_MANAGER_DISK_CACHE_BYTES": "0"}  # every prompt prefilled


def arriving(i: int) -> list[int]:
    """A distinct 200-token prompt."""
    return [300 + (7 * i + k) % 600 for k in range(200)]


def client_of(srv: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def arrivals_while_decoding(srv: ServerProcess) -> list[str]:
    """Six greedy answers to 200-token prompts sent while one long stream decodes."""
    client = client_of(srv)
    received: list[str] = []
    started, stop = threading.Event(), threading.Event()

    def long_stream() -> None:
        stream = client.completions.create(
            model="tiny-llama",
            prompt="Count slowly.",
            max_tokens=1500,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        with stream:
            for chunk in stream:
                received.append(chunk.choices[0].text if chunk.choices else "")
                if len(received) >= 2:
                    started.set()
                if stop.is_set():
                    return  # closing the stream cancels the request

    def answer(i: int) -> str:
        stream = client.completions.create(
            model="tiny-llama", prompt=arriving(i), max_tokens=8, temperature=0, stream=True
        )
        return "".join(chunk.choices[0].text for chunk in stream if chunk.choices)

    runner = threading.Thread(target=long_stream)
    runner.start()
    try:
        assert started.wait(60), "the long stream never started"
        with ThreadPoolExecutor(ARRIVALS) as pool:
            answers = list(pool.map(answer, range(ARRIVALS)))
    finally:
        stop.set()
        runner.join(60)
    assert len(received) > 2  # it decoded all along
    return answers


def prefill_peak(srv: ServerProcess) -> float:
    """The most prompt tokens one step prefilled while sequences decoded, as /metrics reports it."""
    metrics = httpx.get(f"{srv.base_url}/metrics", timeout=10).text
    prefix = 'mlx_manager_prefill_step_peak_tokens{model="tiny-llama"} '
    return float(next(line for line in metrics.splitlines() if line.startswith(prefix)).removeprefix(prefix))


def alone(srv: ServerProcess) -> list[str]:
    client = client_of(srv)
    return [
        client.completions.create(model="tiny-llama", prompt=arriving(i), max_tokens=8, temperature=0).choices[0].text
        for i in range(ARRIVALS)
    ]


@pytest.fixture(scope="module")
def runs(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Per step_prefill_tokens (16, and 0: whole prompts in one step): the arrivals' answers, the server's
    prefill peak after them, and the same prompts answered one at a time."""
    out = {}
    for budget in ("16", "0"):
        env = {**NO_REUSE, "MLX_MANAGER_STEP_PREFILL_TOKENS": budget}
        with run_server(tmp_path_factory.mktemp("budget"), ["--model-dir", str(tiny_models_dir)], env) as srv:
            answers = arrivals_while_decoding(srv)
            out[budget] = (answers, prefill_peak(srv), alone(srv))
    return out


def test_arrivals_prefill_in_chunks_while_a_stream_keeps_decoding(runs: dict[str, Run]) -> None:
    # Chunks of 16 tokens, at most 6 prompts' worth a step while 6 wait on 1 decoding sequence (step_budget's
    # crowd rule): never a whole 200-token prompt in a step the running stream waits for. Without the budget, the
    # arrivals' prefill holds the stream's step.
    assert 0 < runs["16"][1] <= ARRIVALS * 16
    assert runs["0"][1] >= 200


def test_chunked_prefill_answers_as_whole_prefill_and_as_each_alone(runs: dict[str, Run]) -> None:
    chunked, _, chunked_alone = runs["16"]
    whole, _, whole_alone = runs["0"]
    assert all(chunked) and chunked == whole == chunked_alone == whole_alone
