"""In-process mlx-lm baselines: single-stream decode tok/s (stream_generate) and BatchGenerator aggregate tok/s.

Run as a script so it gets its own process (and LD_PRELOAD): prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import mlx.core as mx
from mlx_lm import load, stream_generate
from mlx_lm.generate import BatchGenerator


def single_stream(model: object, tokenizer: object, prompt: list[int], tokens: int) -> float:
    """Decode tok/s as mlx-lm reports it (prompt time excluded)."""
    tps = 0.0
    for response in stream_generate(model, tokenizer, prompt, max_tokens=tokens):  # type: ignore[arg-type]
        tps = response.generation_tps
    return tps


def batched(model: object, prompts: list[list[int]], tokens: int) -> float:
    """Aggregate output tok/s of BatchGenerator over the whole run (prefill included, as a server sees it)."""
    gen = BatchGenerator(model, completion_batch_size=len(prompts), prefill_batch_size=len(prompts))  # type: ignore[arg-type]
    gen.insert(prompts, max_tokens=[tokens] * len(prompts))
    produced = 0
    start = time.perf_counter()
    while responses := gen.next_generated():
        produced += len(responses)
    elapsed = time.perf_counter() - start
    gen.close()
    return produced / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    model, tokenizer = load(args.model)[:2]
    vocab = min(len(tokenizer.get_vocab()), 900)
    prompts = [[(7 * i + 13 * j) % (vocab - 300) + 256 for j in range(args.prompt_tokens)] for i in range(args.batch)]
    single_stream(model, tokenizer, prompts[0], 8)  # warm-up
    single = single_stream(model, tokenizer, prompts[0], args.output_tokens)
    batch = batched(model, prompts, args.output_tokens)
    mx.clear_cache()
    print(json.dumps({"single_stream_tok_s": single, f"batch{args.batch}_tok_s": batch, "batch": args.batch}))


if __name__ == "__main__":
    main()
