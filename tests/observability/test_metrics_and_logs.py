"""/metrics speaks Prometheus with request, token, latency and engine gauges; logs are one line per request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlx_manager.testing.server import ServerProcess, run_server


def _samples(
    base_url: str, headers: dict[str, str] | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = httpx.get(f"{base_url}/metrics", headers=headers or {}, timeout=30)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, labels[k]) in ls for k in labels))


@pytest.fixture(scope="module")
def json_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("metrics")
    with run_server(home, ["--model-dir", str(tiny_models_dir)], env={"MLX_MANAGER_LOG_JSON": "true"}) as srv:
        yield srv


def test_metrics_count_requests_tokens_latency_and_engine_state(json_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{json_server.base_url}/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "Hi"}], max_tokens=7)
    stream = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "Hi"}], max_tokens=5, stream=True
    )
    assert len([c for c in stream if c.choices and c.choices[0].delta.content]) >= 1
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "Hi"}])
    s = _samples(json_server.base_url)
    chat = {"endpoint": "/v1/chat/completions", "model": "tiny-llama"}
    assert _value(s, "mlx_manager_requests_total", **chat, status="200") == 2
    assert _value(s, "mlx_manager_requests_total", endpoint="/v1/chat/completions", status="404") == 1
    assert _value(s, "mlx_manager_errors_total", type="model_not_found") == 1
    assert _value(s, "mlx_manager_completion_tokens_total", model="tiny-llama") == 12
    assert _value(s, "mlx_manager_prompt_tokens_total", model="tiny-llama") > 0
    assert _value(s, "mlx_manager_time_to_first_token_seconds_count", model="tiny-llama") == 2
    assert _value(s, "mlx_manager_inter_token_latency_seconds_count", model="tiny-llama") == 10
    assert _value(s, "mlx_manager_request_duration_seconds_count", **chat) == 2
    assert _value(s, "mlx_manager_generations_total", model="tiny-llama", reason="length") == 2
    assert _value(s, "mlx_manager_models_loaded") >= 1
    assert _value(s, "mlx_manager_model_memory_bytes", model="tiny-llama") > 0
    assert _value(s, "mlx_manager_model_load_seconds", model="tiny-llama") > 0
    assert ("mlx_manager_queue_depth", (("model", "tiny-llama"),)) in s
    assert ("mlx_manager_running_sequences", (("model", "tiny-llama"),)) in s
    assert ("mlx_manager_prefix_cache_hit_ratio", (("model", "tiny-llama"),)) in s


def test_json_logs_have_one_access_line_per_request_with_its_id(json_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{json_server.base_url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="tiny-gemma3", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    request_id = raw.headers["x-request-id"]
    # The access line is written once the response has gone out, so it can trail the client's read by a moment.
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in json_server.log().splitlines() if line.startswith("{")]
        access = [entry for entry in lines if entry.get("request_id") == request_id]
        if access or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # a second line for the same request would come right after the first
    lines = [json.loads(line) for line in json_server.log().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry.get("request_id") == request_id]
    assert len(access) == 1
    (entry,) = access
    assert entry["logger"] == "mlx_manager.access" and entry["status"] == 200 and entry["model"] == "tiny-gemma3"
    assert entry["completion_tokens"] == 3 and entry["prompt_tokens"] > 0 and entry["latency_ms"] > 0
    assert all(json.loads(line) for line in json_server.log().splitlines() if line.startswith("{"))
    log_file = Path(json_server.log_path).parent / "state" / "logs" / "server.log"
    assert request_id in log_file.read_text()
