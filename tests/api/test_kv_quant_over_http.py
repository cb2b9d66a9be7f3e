"""KV-cache quantization through real servers: the server-wide kv_bits, a model's own via the admin load, eight
quantized sequences batched, a profile's kv_bits, and quantized prefixes reused from RAM and, after a restart, from
disk."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import assert_problem, register, signed_in

SYSTEM = "You are a careful assistant who answers questions about rivers, lakes and mountains. " * 20
EIGHT_BIT = {"MLX_MANAGER_KV_BITS": "8"}


def ask(srv: ServerProcess, question: str, model: str = "tiny-llama", max_tokens: int = 24) -> tuple[str, int]:
    """Greedy reply and cached prompt tokens."""
    client = openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    out = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
    )
    assert out.usage is not None and out.usage.prompt_tokens_details is not None
    return out.choices[0].message.content or "", out.usage.prompt_tokens_details.cached_tokens or 0


def loaded(srv: ServerProcess, model: str) -> dict[str, Any]:
    r = httpx.get(f"{srv.base_url}/admin/models", timeout=10)
    assert r.status_code == 200, r.text
    return next(m for m in r.json()["data"] if m["id"] == model)


def load(srv: ServerProcess, model: str, **query: Any) -> httpx.Response:
    return httpx.post(f"{srv.base_url}/admin/models/{model}/load", params=query, timeout=60)


@pytest.fixture(scope="module")
def kv8_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with run_server(tmp_path_factory.mktemp("kv8"), ["--model-dir", str(tiny_models_dir)], EIGHT_BIT) as srv:
        yield srv


def test_eight_concurrent_quantized_requests_answer_as_each_does_alone(kv8_server: ServerProcess) -> None:
    questions = [f"Question {i}: what is special about the number {i * 13}?" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda q: ask(kv8_server, q)[0], questions))
    alone = [ask(kv8_server, q)[0] for q in questions]
    assert together == alone
    # The server's kv_bits with the group size tiny-llama's heads of 32 take; 2 layers x K,V x 2 heads x (32
    # bytes + a float32 scale and bias).
    model = loaded(kv8_server, "tiny-llama")
    assert (model["kv_bits"], model["kv_group_size"], model["kv_bytes_per_token"]) == (8, 32, 320)


def test_a_quantized_prefix_hit_answers_as_the_cold_run(kv8_server: ServerProcess) -> None:
    cold, _ = ask(kv8_server, "Tell me about lakes.", model="tiny-mistral")
    again, cached = ask(kv8_server, "Tell me about lakes.", model="tiny-mistral")
    assert cached > 0 and again == cold
    stats = httpx.get(f"{kv8_server.base_url}/admin/models/tiny-mistral/cache", timeout=10).json()
    assert stats["layers"] == {"QuantizedKV": 2} and stats["hits_by_tier"]["ram"] >= 1


def test_a_models_own_kv_bits_hold_until_it_is_unloaded(kv8_server: ServerProcess) -> None:
    r = load(kv8_server, "tiny-qwen3", kv_bits=4)
    assert r.status_code == 200, r.text
    assert (r.json()["kv_bits"], r.json()["kv_group_size"]) == (4, 32)
    assert ask(kv8_server, "Rivers?", model="tiny-qwen3")[0]
    conflict = load(kv8_server, "tiny-qwen3", kv_bits=8)
    assert conflict.status_code == 409 and "4-bit" in conflict.text
    assert load(kv8_server, "tiny-qwen3").json()["kv_bits"] == 4  # a plain load keeps it
    assert load(kv8_server, "tiny-qwen3", kv_bits=3).status_code in (400, 422)
    assert httpx.post(f"{kv8_server.base_url}/admin/models/tiny-qwen3/unload", timeout=30).status_code == 200
    r = load(kv8_server, "tiny-qwen3", kv_bits=0)  # float KV on a server whose default is 8-bit
    assert r.status_code == 200, r.text
    assert (r.json()["kv_bits"], r.json()["kv_group_size"]) == (None, None)
    assert loaded(kv8_server, "tiny-qwen3")["kv_bytes_per_token"] == 1024


def test_quantized_prefixes_come_back_after_a_restart_and_never_feed_float_kv(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    args = ["--model-dir", str(tiny_models_dir)]
    with run_server(tmp_path, args, EIGHT_BIT) as srv:
        cold, _ = ask(srv, "Tell me about mountains.")
    with run_server(tmp_path, args, EIGHT_BIT) as srv:
        again, cached = ask(srv, "Tell me about mountains.")
        tiers = httpx.get(f"{srv.base_url}/admin/models/tiny-llama/cache", timeout=10).json()["hits_by_tier"]
    assert cached > 0 and tiers["disk"] == 1
    assert again == cold
    with run_server(tmp_path, args) as srv:  # float KV, same disk folder
        _, cached = ask(srv, "Tell me about mountains.")
    assert cached == 0


def test_a_profile_s_kv_bits_load_its_model_with_them(kv8_server: ServerProcess) -> None:
    # Registered here, last of the module's kv8_server tests: an account makes the admin routes ask for sign-in.
    register(kv8_server, "admin")
    admin = signed_in(kv8_server, "admin")

    def profile(name: str, model: str, **kv: Any) -> httpx.Response:
        return admin.post("/api/profiles", json={"name": name, "model": model, **kv})

    def kv_of(model: str) -> tuple[int | None, int | None]:
        m = next(m for m in admin.ok("GET", "/admin/models")["data"] if m["id"] == model)
        return m["kv_bits"], m["kv_group_size"]

    assert profile("four", "tiny-phi4", kv_bits=4, kv_group_size=32).status_code == 201
    assert profile("float", "tiny-glm4", kv_bits=0).status_code == 201
    assert profile("eight", "tiny-phi4", kv_bits=8).status_code == 201
    assert ask(kv8_server, "Rivers?", model="four")[0]
    assert kv_of("tiny-phi4") == (4, 32)  # not the server's 8-bit
    assert ask(kv8_server, "Lakes?", model="float")[0]
    assert kv_of("tiny-glm4") == (None, None)  # float KV on an 8-bit server
    assert ask(kv8_server, "Rivers?", model="eight")[0]
    assert kv_of("tiny-phi4") == (4, 32)  # a loaded model keeps its setting: no reload mid-flight
    assert_problem(profile("bad", "tiny-phi4", kv_bits=3), 400)
    assert_problem(profile("bad", "tiny-phi4", kv_group_size=48), 400)
    assert_problem(profile("bad", "tiny-phi4", kv_group_size=32), 400, "kv_group_size_without_bits")
    # An unloaded model comes back with the profile's setting; a plain request by the model's name gets the server's.
    assert admin.post("/admin/models/tiny-phi4/unload").status_code == 200
    assert ask(kv8_server, "Mountains?", model="eight")[0]
    assert kv_of("tiny-phi4") == (8, 32)  # 8-bit in groups of 64, fitted to tiny-phi4's heads of 32
    assert admin.post("/admin/models/tiny-glm4/unload").status_code == 200
    assert ask(kv8_server, "Lakes?", model="tiny-glm4")[0]
    assert kv_of("tiny-glm4") == (8, 32)
