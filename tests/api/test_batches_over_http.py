"""OpenAI's Files and Batch APIs through a real server with the official openai SDK: upload, run, read the output
and error files, validation failures, cancel, owners, and a batch that resumes after a restart without answering
any line twice."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types import Batch

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import register, signed_in


@pytest.fixture(scope="module")
def batch_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("batches"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


def _client(server: ServerProcess, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0, timeout=60)


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _chat(custom_id: str, model: str = "tiny-llama", max_tokens: int = 4) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": f"Say {custom_id}"}], "max_tokens": max_tokens}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _wait(client: openai.OpenAI, batch_id: str, done: tuple[str, ...], timeout: float = 120) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in done or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


def _results(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    lines = [json.loads(line) for line in client.files.content(file_id).text.splitlines()]
    assert len({r["custom_id"] for r in lines}) == len(lines), "a line was answered twice"
    return {r["custom_id"]: r for r in lines}


def test_a_chat_batch_runs_with_output_and_error_files(batch_server: ServerProcess) -> None:
    client = _client(batch_server)
    lines = [_chat("a"), _chat("b"), _chat("c", model="no-such-model"), _chat("d", max_tokens=3)]
    upload = client.files.create(file=("requests.jsonl", _jsonl(lines)), purpose="batch")
    assert upload.purpose == "batch" and upload.bytes == len(_jsonl(lines)) and upload.filename == "requests.jsonl"
    assert client.files.retrieve(upload.id).id == upload.id
    assert upload.id in [f.id for f in client.files.list()]

    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "t1"}
    )
    assert batch.status == "validating" and batch.metadata == {"job": "t1"}
    batch = _wait(client, batch.id, ("completed", "failed"))
    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (4, 3, 1)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at

    out = _results(client, batch.output_file_id)
    assert set(out) == {"a", "b", "d"}
    assert out["d"]["response"]["status_code"] == 200
    assert out["d"]["response"]["body"]["usage"]["completion_tokens"] == 3
    assert out["a"]["response"]["body"]["object"] == "chat.completion"
    errors = _results(client, batch.error_file_id)
    assert set(errors) == {"c"} and errors["c"]["response"]["status_code"] == 404
    assert errors["c"]["response"]["body"]["error"]["code"] == "model_not_found"
    assert batch.id in [b.id for b in client.batches.list()]

    assert client.files.delete(upload.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(upload.id)


def test_completions_embeddings_and_responses_batches(batch_server: ServerProcess) -> None:
    client = _client(batch_server)
    for endpoint, body, check in (
        ("/v1/completions", {"model": "tiny-llama", "prompt": "x", "max_tokens": 2}, "text_completion"),
        ("/v1/responses", {"model": "tiny-llama", "input": "hi", "max_output_tokens": 2}, "response"),
    ):
        line = {"custom_id": "one", "method": "POST", "url": endpoint, "body": body}
        upload = client.files.create(file=("in.jsonl", _jsonl([line])), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]
        batch = _wait(client, batch.id, ("completed", "failed"))
        assert batch.status == "completed", batch
        assert _results(client, batch.output_file_id)["one"]["response"]["body"]["object"] == check
    # A generation model asked for embeddings: the line fails as the route would (400), the batch completes.
    line = {"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"model": "tiny-llama", "input": "x"}}
    upload = client.files.create(file=("in.jsonl", _jsonl([line])), purpose="batch")
    batch = _wait(
        client,
        client.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h").id,
        ("completed",),
    )
    assert _results(client, batch.error_file_id)["e"]["response"]["status_code"] == 400


def test_an_invalid_input_file_fails_the_batch_with_line_errors(batch_server: ServerProcess) -> None:
    client = _client(batch_server)
    wrong_url = {**_chat("x"), "url": "/v1/completions"}
    data = _jsonl([_chat("a"), wrong_url, _chat("a")]) + b"not json\n"
    upload = client.files.create(file=("bad.jsonl", data), purpose="batch")
    batch = _wait(
        client,
        client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h").id,
        ("failed", "completed"),
    )
    assert batch.status == "failed" and batch.failed_at and batch.errors is not None and batch.errors.data
    assert [(e.code, e.line) for e in batch.errors.data] == [
        ("mismatched_endpoint", 2),
        ("duplicate_custom_id", 3),
        ("invalid_json_line", 4),
    ]
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")


def test_a_cancelled_batch_stops_and_keeps_what_it_answered(batch_server: ServerProcess) -> None:
    client = _client(batch_server)
    lines = [_chat(f"n{i}", max_tokens=400) for i in range(60)]
    upload = client.files.create(file=("long.jsonl", _jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 60
    while (client.batches.retrieve(batch.id).request_counts or batch.request_counts).completed < 2:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.batches.cancel(batch.id).status == "cancelling"
    batch = _wait(client, batch.id, ("cancelled",))
    assert batch.status == "cancelled" and batch.cancelled_at and batch.request_counts is not None
    answered = _results(client, batch.output_file_id)
    assert 2 <= len(answered) == batch.request_counts.completed < 60


def test_batches_and_files_belong_to_their_creator(batch_server: ServerProcess) -> None:
    register(batch_server, "owner")
    mine = _client(batch_server, signed_in(batch_server, "owner").token or "")
    anonymous = _client(batch_server)
    upload = mine.files.create(file=("in.jsonl", _jsonl([_chat("a")])), purpose="batch")
    batch = mine.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    for call in (
        lambda: anonymous.files.retrieve(upload.id),
        lambda: anonymous.files.content(upload.id),
        lambda: anonymous.files.delete(upload.id),
        lambda: anonymous.batches.retrieve(batch.id),
        lambda: anonymous.batches.cancel(batch.id),
        lambda: anonymous.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in [b.id for b in anonymous.batches.list()]
    assert _wait(mine, batch.id, ("completed",)).status == "completed"


def test_a_batch_resumes_after_a_restart_and_answers_each_line_once(tiny_models_dir: Path, tmp_path: Path) -> None:
    args = ["--model-dir", str(tiny_models_dir)]
    lines = [_chat(f"r{i}", max_tokens=300) for i in range(40)]
    with run_server(tmp_path, args) as first:
        client = _client(first)
        upload = client.files.create(file=("in.jsonl", _jsonl(lines)), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        deadline = time.monotonic() + 60
        while (client.batches.retrieve(batch.id).request_counts or batch.request_counts).completed < 3:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.1)
    before = batch.request_counts
    with run_server(tmp_path, args) as second:
        client = _client(second)
        stopped = client.batches.retrieve(batch.id)
        assert stopped.status == "in_progress" and stopped.request_counts is not None
        assert 3 <= stopped.request_counts.completed < 40
        batch = _wait(client, batch.id, ("completed", "failed"), timeout=300)
        assert batch.status == "completed" and batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (40, 0), before
        assert set(_results(client, batch.output_file_id)) == {f"r{i}" for i in range(40)}
        resumed = re.search(rf"Batch {batch.id}: (\d+) of 40 requests to run", second.log())
        assert resumed is not None and int(resumed.group(1)) == 40 - stopped.request_counts.completed
    assert "paused for the shutdown" in first.log()


def test_batch_lines_queue_behind_interactive_requests(tiny_models_dir: Path, tmp_path: Path) -> None:
    """One batch slot (max_num_seqs 1): the runner keeps 8 lines queued, yet a chat request sent meanwhile runs
    next, not after them."""
    env = {"MLX_MANAGER_MAX_NUM_SEQS": "1"}
    with run_server(tmp_path, ["--model-dir", str(tiny_models_dir)], env=env) as server:
        client = _client(server)
        lines = [_chat(f"p{i}", max_tokens=600) for i in range(30)]  # a line lasts longer than a client stall
        upload = client.files.create(file=("in.jsonl", _jsonl(lines)), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        deadline = time.monotonic() + 60
        while (client.batches.retrieve(batch.id).request_counts or batch.request_counts).completed < 2:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = client.batches.retrieve(batch.id).request_counts
        reply = client.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "now"}], max_tokens=5
        )
        after = client.batches.retrieve(batch.id).request_counts
        assert reply.choices[0].finish_reason == "length" and before is not None and after is not None
        assert after.completed - before.completed <= 2, (before, after)  # the line running, not the 7 queued
        client.batches.cancel(batch.id)


def test_a_batch_past_its_completion_window_expires_keeping_what_it_answered(batch_server: ServerProcess) -> None:
    client = _client(batch_server)
    lines = [_chat(f"x{i}", max_tokens=400) for i in range(60)]
    upload = client.files.create(file=("slow.jsonl", _jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 60
    while (client.batches.retrieve(batch.id).request_counts or batch.request_counts).completed < 1:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # The 24 hours are over (as if the server had been busy all day).
    with sqlite3.connect(batch_server.log_path.parent / "mlx-manager.db") as db:
        db.execute("UPDATE batches SET expires_at = ? WHERE id = ?", (int(time.time()) - 1, batch.id))
    batch = _wait(client, batch.id, ("expired", "completed"))
    assert batch.status == "expired" and batch.expired_at == batch.expires_at and batch.request_counts is not None
    answered = _results(client, batch.output_file_id)
    assert 1 <= len(answered) == batch.request_counts.completed < 60
