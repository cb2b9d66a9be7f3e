"""Transcription real-time factor (#17) over HTTP: a real server, the openai SDK, a shaped Whisper.

The model is written offline with random weights in whisper-tiny's shape (4+4 layers, 384 wide, 6 heads, an
English-only 51864-token vocabulary: ~37M parameters, float32). RTF = wall time / audio duration (below 1 is faster
than real time). Random weights decode noise: each 30 s window runs to the decoder's length cap (224 tokens) and
Whisper's temperature fallback may decode a window again, so this is a pessimistic bound for a trained model.
Requests to one model run one at a time on its thread, so 4 concurrent requests measure queueing, not batching.

    python benchmarks/audio_rtf.py [--seconds 30] [--json benchmarks/audio-rtf.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai

from mlx_manager.testing.server import run_server
from mlx_manager.testing.tiny_audio import TINY_SHAPE, tone, wav_bytes, write_tiny_whisper

REPO = Path(__file__).resolve().parents[1]
MODEL = "shaped-whisper-tiny"
# 256 byte tokens + padding + 9 specials + 1501 timestamps = 51864, whisper-tiny.en's vocabulary size.
PADDING = 51864 - 256 - 9 - 1501


def _one(client: openai.OpenAI, audio: bytes) -> tuple[float, int]:
    start = time.perf_counter()
    reply = client.audio.transcriptions.create(model=MODEL, file=("clip.wav", audio), response_format="verbose_json")
    return time.perf_counter() - start, len(reply.segments or [])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder = write_tiny_whisper(
        REPO / ".cache" / "bench-audio" / MODEL, seed=1, shape=TINY_SHAPE, vocab_padding=PADDING
    )
    audio = wav_bytes(tone(args.seconds))
    results: dict[str, Any] = {"model": MODEL, "audio_seconds": args.seconds, "machine": platform.platform()}
    with run_server(REPO / ".cache" / "bench-audio" / "home", ["--model-dir", str(folder.parent)]) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=1800)
        _one(client, wav_bytes(tone(1.0)))  # load and warm up
        singles = [_one(client, audio) for _ in range(args.repeats)]
        results["single_seconds"] = [round(s, 2) for s, _ in singles]
        results["single_rtf"] = round(min(s for s, _ in singles) / args.seconds, 3)
        results["segments"] = singles[0][1]
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            concurrent = list(pool.map(lambda _: _one(client, audio), range(4)))
        wall = time.perf_counter() - start
        results["concurrent4_wall_seconds"] = round(wall, 2)
        results["concurrent4_request_seconds"] = [round(s, 2) for s, _ in concurrent]
        results["concurrent4_aggregate_rtf"] = round(wall / (4 * args.seconds), 3)
        results["concurrent4_worst_request_rtf"] = round(max(s for s, _ in concurrent) / args.seconds, 3)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
