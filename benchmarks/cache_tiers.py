"""Prefix-cache tiers through real servers on the embedded SmolLM2: time to first token of a ~1000-token
system prompt cold, from RAM, after a cancel at the first token, for two concurrent requests sharing a new
prefix, and from disk after a restart. Greedy, streamed; writes JSON and prints a table.

    python benchmarks/cache_tiers.py [--out benchmarks/cache-tiers.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai

from mlx_manager.manager.embedded import ensure_default_model
from mlx_manager.testing.server import ServerProcess, run_server

REPO = Path(__file__).resolve().parents[1]
RULES = (
    "You are a meticulous coding agent working in a large repository. Follow the tools' contracts, keep edits "
    "small, explain what you change and why, run the tests you touched, and never invent file contents. "
)


def system(tag: str) -> str:
    return f"{tag}. " + RULES * 24


def ttft(srv: ServerProcess, model: str, prompt: str, user: str, cancel: bool = False) -> dict[str, Any]:
    client = openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key="x", max_retries=0, timeout=600)
    start = time.perf_counter()
    first = None
    cached = prompt_tokens = None
    text = ""
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": prompt}, {"role": "user", "content": user}],
        max_tokens=200 if cancel else 8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - start
            text += chunk.choices[0].delta.content
            if cancel:
                stream.close()
                break
        if chunk.usage:
            prompt_tokens = chunk.usage.prompt_tokens
            details = chunk.usage.prompt_tokens_details
            cached = details.cached_tokens if details else None
    return {"ttft_s": round(first or 0.0, 2), "cached_tokens": cached, "prompt_tokens": prompt_tokens, "text": text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "cache-tiers.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cache-tiers-"))
    try:
        folder = ensure_default_model(work / "models", REPO / ".cache" / "test-assets")
        model, serve = folder.name, ["--model-dir", str(work / "models")]
        out: dict[str, Any] = {"model": model}
        with run_server(work / "home", serve, timeout=300) as srv:
            httpx.post(f"{srv.base_url}/admin/models/{model}/load", timeout=300)
            out["cold"] = ttft(srv, model, system("A"), "Summarise your rules.")
            out["ram_hit"] = ttft(srv, model, system("A"), "Summarise your rules.")
            out["cancelled_at_first_token"] = ttft(srv, model, system("B"), "List the files.", cancel=True)
            out["retry_after_cancel"] = ttft(srv, model, system("B"), "List the files.")
            with ThreadPoolExecutor(2) as pool:
                users = ("Read main.py.", "Run the tests.")
                out["concurrent_new_prefix"] = list(pool.map(lambda u: ttft(srv, model, system("C"), u), users))
        with run_server(work / "home", serve, timeout=300) as srv:
            httpx.post(f"{srv.base_url}/admin/models/{model}/load", timeout=300)
            out["disk_hit_after_restart"] = ttft(srv, model, system("A"), "Summarise your rules.")
            out["disk"] = httpx.get(f"{srv.base_url}/admin/models/{model}/cache", timeout=10).json()["disk"]
        out["greedy_equal"] = out["cold"]["text"] == out["ram_hit"]["text"] == out["disk_hit_after_restart"]["text"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for name, value in out.items():
        for run in value if isinstance(value, list) else [value]:
            if isinstance(run, dict) and "ttft_s" in run:
                print(f"{name:28} TTFT {run['ttft_s']:6.2f} s  cached {run['cached_tokens']}/{run['prompt_tokens']}")
    print(f"disk read {out['disk']['read_seconds']:.2f} s for {out['disk']['read_bytes'] / 1e6:.0f} MB;", end=" ")
    print(f"greedy output equal cold / RAM / disk: {out['greedy_equal']}")


if __name__ == "__main__":
    main()
