"""Speculative decoding through a real server: same greedy replies as with it off, counters in /metrics and
/admin/models (engine/speculative)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from mlx_manager.testing.server import run_server

CODE = "def add(a, b):\n    return a + b\n\n" * 3 + "Repeat the code above."


@pytest.fixture(scope="module")
def servers(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One server drafting with the 4-bit copy of tiny-llama (after prompt lookup), one with speculation off."""
    args = ["--model-dir", str(tiny_models["tiny-llama"].parent)]
    draft = {
        "MLX_MANAGER_SPECULATIVE": "draft",
        "MLX_MANAGER_SPECULATIVE_DRAFT_MODEL": str(tiny_models["tiny-llama-4bit"]),
    }
    with (
        run_server(tmp_path_factory.mktemp("spec-home"), args, draft) as spec,
        run_server(tmp_path_factory.mktemp("off-home"), args, {"MLX_MANAGER_SPECULATIVE": "off"}) as off,
    ):
        yield {"spec": spec.base_url, "off": off.base_url}


def _replies(base_url: str) -> list[str]:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)
    chat = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": CODE}], temperature=0, max_tokens=120
    )
    stream = client.completions.create(model="tiny-llama", prompt=CODE, temperature=0, max_tokens=120, stream=True)
    streamed = "".join(c.choices[0].text for c in stream if c.choices)
    return [chat.choices[0].message.content or "", streamed]


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and 'model="tiny-llama"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for tiny-llama not in /metrics")


def test_replies_match_speculation_off_and_the_counters_show_drafts(servers: dict[str, str]) -> None:
    assert _replies(servers["spec"]) == _replies(servers["off"])
    metrics = httpx.get(f"{servers['spec']}/metrics").text
    drafted = _metric(metrics, "mlx_manager_speculative_draft_tokens_total")
    accepted = _metric(metrics, "mlx_manager_speculative_accepted_tokens_total")
    assert drafted > 0 and 0 < accepted <= drafted
    assert _metric(metrics, "mlx_manager_speculative_acceptance_rate") == pytest.approx(accepted / drafted)
    (model,) = [m for m in httpx.get(f"{servers['spec']}/admin/models").json()["data"] if m["id"] == "tiny-llama"]
    assert model["speculative"] == "draft"
    assert (model["draft_tokens"], model["accepted_draft_tokens"]) == (drafted, accepted)
    (plain,) = httpx.get(f"{servers['off']}/admin/models").json()["data"]
    assert plain["speculative"] == "off" and plain["draft_tokens"] == 0
